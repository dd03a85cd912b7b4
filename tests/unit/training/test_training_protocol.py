"""Loader, handbook protocol pieces, and the evaluate / model CLI end to end on a small file."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fraudnet.errors import ConfigError, InputError
from fraudnet.training.data import load_csv
from fraudnet.training.protocol import card_precision_at_k, day_of, split

HEADER = ("TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,"
          "TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO")  # fmt: skip
FDH = Path(
    os.environ.get("FRAUDNET_FDH_DIR", Path(__file__).resolve().parents[3] / "../shared/data/fdh")
)


def write_csv(path: Path, n: int = 6000, days: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    secs = np.sort(rng.integers(0, days * 86400, n))
    cust = rng.integers(0, 150, n)
    term = rng.integers(0, 300, n)
    amt = np.round(rng.gamma(2.0, 40.0, n), 2)
    fraud = ((amt > 220) | (term % 50 == 0) | (rng.random(n) < 0.005)).astype(int)
    base = np.datetime64("2018-04-01T00:00:00")
    lines = [HEADER]
    for i in range(n):
        dt = str(base + np.timedelta64(int(secs[i]), "s"))
        lines.append(f"{i},{dt},{cust[i]},{term[i]},{amt[i]:.2f},{secs[i]},{secs[i] // 86400},"
                     f"{fraud[i]},{int(fraud[i])}")  # fmt: skip
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_loader_sorts_and_types(tmp_path: Path) -> None:
    t = load_csv(write_csv(tmp_path / "a.csv.gz", n=500))
    assert len(t) == 500 and (np.diff(t.ts_s) >= 0).all()
    assert t.ts_s[0] >= day_of("2018-04-01") * 86400 and t.scenario is not None


@pytest.mark.parametrize(
    ("text", "match"),
    [("A,B\n1,2\n", "missing column"),
     (HEADER + "\n0,2018-04-01T00:00:01,1,2,abc,1,0,0,0\n", "a.csv"),
     (HEADER + "\n0,2018-04-01T00:00:01,1,2,5.0,1,0,3,0\n", "TX_FRAUD")],
)  # fmt: skip
def test_loader_bad_files_are_input_errors(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "a.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        load_csv(p)
    with pytest.raises(InputError, match="cannot read"):
        load_csv(tmp_path / "missing.csv")


def test_card_precision_drops_cards_caught_earlier() -> None:
    day = np.array([0, 0, 0, 1, 1, 1])
    card = np.array([1, 2, 3, 1, 2, 3])
    fraud = np.array([1, 0, 0, 1, 1, 0], dtype=np.int8)
    score = np.array([0.9, 0.1, 0.2, 0.9, 0.5, 0.1])
    # k=1: day 0 catches card 1; day 1 drops card 1, top is card 2 (fraud)
    assert card_precision_at_k(day, card, fraud, score, k=1) == 1.0
    assert card_precision_at_k(day, card, fraud, score, k=2) == pytest.approx((0.5 + 0.5) / 2)


def test_split_removes_known_compromised_cards(tmp_path: Path) -> None:
    t = load_csv(write_csv(tmp_path / "a.csv.gz"))
    start = day_of("2018-04-10")
    sp = split(t, start, 7, 7, 7)
    known = set(t.customer[sp.train & (t.fraud == 1)].tolist())
    assert not known & set(t.customer[sp.test].tolist())
    assert (t.day[sp.test] >= start + 14).all() and (t.day[sp.test] < start + 21).all()
    with pytest.raises(ConfigError):
        day_of("25/05/2018")


def test_evaluate_and_model_cli_end_to_end(tmp_path: Path) -> None:
    from fraudnet.cli.evaluate import cli as evaluate_cli
    from fraudnet.cli.model import cli as model_cli

    data = str(write_csv(tmp_path / "a.csv.gz"))
    r = CliRunner().invoke(
        evaluate_cli, ["--data", data, "--train-start", "2018-04-15", "--model", "logreg",
                       "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert {"auc_roc", "average_precision", "card_precision_at_100", "train_rows",
            "test_rows"} <= out.keys()  # fmt: skip
    assert 0.0 <= out["average_precision"] <= 1.0 and out["test_rows"] > 0
    r = CliRunner().invoke(
        evaluate_cli, ["--data", data, "--train-start", "2018-04-15", "--model", "logreg",
                       "--mode", "isolated", "--nodes", "3", "--partition", "customer",
                       "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["test_rows"] == out["test_rows"]
    model = tmp_path / "m.fnm"
    r = CliRunner().invoke(
        model_cli, ["train", "--data", data, "--train-start", "2018-04-15", "--model",
                    "logreg,rf_depth12", "--out", str(model), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    trained = json.loads(r.output)
    # candidates x feature sets, each scored on the validation folds only
    assert set(trained["validation"]) == {
        f"{m}@{fs}" for m in ("logreg", "rf_depth12") for fs in ("v1", "all")
    }
    r = CliRunner().invoke(model_cli, ["show", str(model), "--json"])
    shown = json.loads(r.output)
    assert shown["model_id"] == trained["model_id"]
    assert any(f["name"] == "CARD_AMOUNT_RATIO_30DAY" for f in shown["features"])


@pytest.mark.needs_fdh
@pytest.mark.slow
def test_fdh_handbook_logreg_baseline_is_reproduced() -> None:
    path = FDH / "transactions-2018-04-01_2018-06-30.csv.gz"
    if not path.exists():
        pytest.skip("FDH data not present")
    from fraudnet.training.evaluate import evaluate

    t = load_csv(path)
    r = evaluate(t, start_day=day_of("2018-05-25"), candidates=["logreg"], feature_set="handbook")
    assert (r["train_rows"], r["test_rows"], r["test_frauds"]) == (67008, 59176, 374)
    assert r["average_precision"] == pytest.approx(0.631, abs=0.005)
    assert r["auc_roc"] == pytest.approx(0.875, abs=0.005)


def test_model_selection_never_reads_labels_after_the_training_period(tmp_path: Path) -> None:
    """Scrambling every label from the end of the training period on changes neither the
    validation scores, nor the chosen (model, feature set), nor the fitted model."""
    from fraudnet.core.features import FeatureConfig
    from fraudnet.core.scoring import encode_model
    from fraudnet.training.train import replay_features, train

    table = load_csv(write_csv(tmp_path / "s.csv.gz", n=6000, days=40))
    start = day_of("2018-04-22")
    cfg = FeatureConfig()
    rng = np.random.default_rng(5)
    later = table.day >= start + 7
    scrambled = table.take(np.arange(len(table)))
    scrambled.fraud[later] = (rng.random(int(later.sum())) < 0.5).astype(np.int8)
    assert (scrambled.fraud != table.fraud).sum() > 100
    results = []
    for t in (table, scrambled):
        x = replay_features(t, cfg)
        results.append(train(t, x, start_day=start, candidates=["logreg", "rf_leaf20"],
                             feature_set="auto", config=cfg))  # fmt: skip
    a, b = results
    assert a.validation and a.validation == b.validation
    assert (a.candidate, a.model.meta["feature_set"]) == (b.candidate, b.model.meta["feature_set"])
    assert encode_model(a.model) == encode_model(b.model)
