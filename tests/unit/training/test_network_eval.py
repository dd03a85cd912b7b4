"""``evaluate --mode network`` on the built-in generator: no look-ahead, the budget, metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from fraudnet.core.features.network import NET_COLS, NEUTRAL
from fraudnet.core.signals.codec import Signal
from fraudnet.errors import ConfigError
from fraudnet.replay.generator import GeneratorConfig, generate
from fraudnet.training.data import TxTable, from_generated
from fraudnet.training.evaluate import evaluate
from fraudnet.training.network import (
    NetworkOptions,
    emit_signals,
    network_matrix,
    pseudonym_of,
    with_network,
)
from fraudnet.training.protocol import day_of

START = "2024-04-01"
DAY = 86400.0


@pytest.fixture(scope="module")
def table() -> TxTable:
    cfg = GeneratorConfig(customers=400, terminals=300, days=36, seed=3, start=START,
                          compromised_customers_per_day=4)  # fmt: skip
    return from_generated(generate(cfg))


def _tiny(rows: list[tuple[float, int, int]]) -> TxTable:
    n = len(rows)
    a = np.array(rows, dtype=np.float64)
    return TxTable(
        tx_id=np.arange(n, dtype=np.int64), ts_s=a[:, 0], customer=a[:, 1].astype(np.int64),
        terminal=a[:, 2].astype(np.int64), amount=np.full(n, 10.0),
        fraud=np.zeros(n, dtype=np.int8),
    )  # fmt: skip


def _sig(card: int, at_s: float, score: int = 900) -> Signal:
    at = int(at_s * 1e6)
    return Signal("card", pseudonym_of(card), score, (), at, at + 3_600_000_000, (1, 0))


def test_signal_affects_only_transactions_after_its_arrival() -> None:
    t0 = 1_000_000.0
    sub = _tiny([(t0 - 10, 7, 1), (t0 + 5, 7, 1), (t0 + 6, 7, 1), (t0 + 7, 8, 1),
                 (t0 + 9000, 7, 1)])  # fmt: skip
    received = [(t0 + 6.0, "other", _sig(7, t0 + 5)), (t0 + 6.0, "me", _sig(8, t0 + 5))]
    net = network_matrix(sub, "me", received, from_s=t0)
    assert (net[0] == NEUTRAL).all()  # before from_s
    assert (net[1] == NEUTRAL).all()  # before the arrival
    assert (net[2] == NEUTRAL).all()  # arrival == transaction time: not yet
    assert (net[3] == NEUTRAL).all()  # own signals never count
    assert net[4][0] == 0.0  # expired after its time to live (1 h)
    net2 = network_matrix(sub, "me", [(t0 + 5.5, "other", _sig(7, t0 + 5))], from_s=t0)
    assert net2[2][:3].tolist() == [1.0, 0.9, 1.0]  # members, max score, secs since first
    x = with_network(np.zeros((5, 33)), net2)
    assert (x[:, NET_COLS] == net2).all()


def test_emit_signals_respects_budget_threshold_and_label_delay() -> None:
    t0 = 1_000_000.0
    rows = [(t0 + i * 60.0, i % 50, i % 7) for i in range(2000)]
    sub = _tiny(rows)
    sub.fraud[10] = 1
    scores = np.linspace(0, 1, len(sub))
    opts = NetworkOptions(threshold=0.2, budget=0.05, terminal_signals=True, label_signals=True)
    log = emit_signals(sub, scores, t0, 7.0, opts)
    assert len(log.signals) <= 0.05 * log.transactions + 5
    kinds = {s.kind for s in log.signals}
    assert kinds == {"card", "terminal"}
    assert all(s.score_milli >= 200 for s in log.signals)
    assert (np.diff(log.created_s) >= 0).all()
    sub2 = _tiny([*rows, (t0 + 8 * DAY, 1, 1)])
    sub2.fraud[10] = 1
    log2 = emit_signals(sub2, np.zeros(len(sub2)), t0, 7.0, opts)
    assert log2.by_origin["label_card"] == 1
    assert log2.created_s[0] == pytest.approx(t0 + 600 + 7 * DAY)
    off = emit_signals(sub2, np.zeros(len(sub2)), t0, 7.0,
                       NetworkOptions(label_signals=False))  # fmt: skip
    assert off.signals == []


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError):
        NetworkOptions(threshold=1.5)
    with pytest.raises(ConfigError):
        NetworkOptions(propagation_s=-1)
    with pytest.raises(ConfigError):
        NetworkOptions(signal_scores="bogus")


def _ts(day: int) -> int:
    base = day_of(START)
    return base + day


def test_network_mode_end_to_end_on_generated_data(table: TxTable) -> None:
    start = _ts(15)
    common: dict[str, Any] = dict(start_day=start, nodes=3, partition="terminal",
                                  candidates=["rf"], feature_set="all")  # fmt: skip
    res = evaluate(table, mode="network", **common)
    iso = evaluate(table, mode="isolated", **common)
    assert res["mode"] == "network" and res["partition"] == "terminal"
    assert res["test_rows"] == iso["test_rows"]
    for k in ("auc_roc", "average_precision", "card_precision_at_100"):
        assert 0.0 <= res[k] <= 1.0
        assert 0.0 <= res["without_network_evidence"][k] <= 1.0
    assert 0 < res["signals_per_transaction"] <= 0.05 + 3 * 5 / res["train_rows"]
    assert res["signals_per_transaction_max_node"] <= 0.06
    assert res["signals_sent"] == sum(res["signals_by_origin"].values())


def test_cli_network_mode_prints_signals(tmp_path: Any, table: TxTable) -> None:
    from fraudnet.cli.evaluate import cli

    path = tmp_path / "gen.csv"
    with path.open("w") as f:
        f.write("TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n")
        for i in range(len(table)):
            ts = datetime.fromtimestamp(float(table.ts_s[i]), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
            f.write(f"{i},{ts},{table.customer[i]},{table.terminal[i]},"
                    f"{table.amount[i]:.2f},{table.fraud[i]}\n")  # fmt: skip
    out = CliRunner().invoke(cli, ["--data", str(path), "--train-start", "2024-04-16",
                                   "--mode", "network", "--nodes", "3", "--model", "rf",
                                   "--features", "all", "--no-terminal-signals"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "signals sent" in out.output and "average precision" in out.output


def test_kernels_write_the_neutral_network_row(table: TxTable) -> None:
    from fraudnet.core.features import FeatureConfig
    from fraudnet.training.train import replay_features

    x = replay_features(table.take(np.arange(500)), FeatureConfig())
    assert (x[:, NET_COLS] == NEUTRAL).all()


def test_network_mode_without_data_before_training_is_a_clear_error(table: TxTable) -> None:
    from fraudnet.errors import InputError

    with pytest.raises(InputError, match="signal models"):
        evaluate(table, start_day=_ts(5), mode="network", nodes=2, candidates=["rf"])
