"""``fraudnet bench score``: feature update + compiled scoring, next to scikit-learn.

Trains a 100-tree random forest (scikit-learn defaults, ``random_state=0``;
or ``--model NAME``, any training candidate, e.g. ``hgb``) on streaming
features of a seeded synthetic stream (or ``--data FILE``), then measures,
in the same process:

* ``single_ns`` -- one transaction through :meth:`ModelScorer.score_many`
  (feature update + model + reason codes + drift counts, one fused kernel
  call), median over ``--single`` calls;
* ``batch_ns_per_tx`` -- the same in batches of ``--batch`` (1,000);
* ``sklearn_single_ns`` / ``sklearn_batch_ns_per_tx`` -- scikit-learn's
  ``predict_proba`` on one row / on the batch (model only, no features);
* ``speedup_single`` / ``speedup_batch`` -- scikit-learn time over ours, in
  the same run (what to compare across runs on a shared machine);
* ``nodes_per_tx`` -- tree nodes visited per transaction (the work the
  traversal does), and the state's bytes per card / terminal;
* ``single_cpu_ns`` / ``batch_cpu_ns_per_tx`` -- the same as thread CPU
  time (on a shared machine wall time includes waiting for a core);
* ``load_avg_1m`` -- the 1-minute load average before and after the timed
  part, and ``cpus``: on a shared machine, read the times against them.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import click
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from fraudnet.core.features import FeatureConfig, default_model_features, feature_index
from fraudnet.core.records import TxColumns
from fraudnet.core.scoring.model_scorer import ModelScorer
from fraudnet.training.convert import compile_sklearn
from fraudnet.training.train import CANDIDATES, replay_features


def _synthetic(n: int, seed: int) -> Any:
    from fraudnet.training.data import TxTable

    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(0, 60 * 86400.0, n)) + 1.5e9
    card = rng.integers(0, max(n // 100, 10), n)
    term = rng.integers(0, max(n // 200, 10), n)
    amount = np.round(rng.gamma(2.0, 30.0, n), 2)
    fraud = ((amount > 220) | (rng.random(n) < 0.003) | (term % 997 == 0)).astype(np.int8)
    return TxTable(tx_id=np.arange(n), ts_s=ts, customer=card, terminal=term, amount=amount,
                   fraud=fraud)  # fmt: skip


_COLUMNS: dict[int, TxColumns] = {}


def _cols(table: Any, s: int, e: int) -> TxColumns:
    # the full columns are built once per table: rebuilding them (200k-row copies)
    # before every timed call would flush the caches and time a cold start instead
    c = _COLUMNS.get(id(table))
    if c is None:
        c = _COLUMNS[id(table)] = table.columns(with_labels=False)
    return TxColumns(
        card_key=c.card_key[s:e], terminal_key=c.terminal_key[s:e], ts_s=c.ts_s[s:e],
        amount=c.amount[s:e], mcc=c.mcc[s:e], channel=c.channel[s:e], label=c.label[s:e],
    )  # fmt: skip


def _visits(model: Any, x: Any) -> float:
    """Mean internal nodes visited per row (all trees), by a numpy traversal."""
    if model.kind == "linear":
        return 0.0
    nodes = model.nodes
    kid = nodes["kid"].astype(np.int64)
    leaf = kid[:, 0] == np.arange(nodes.shape[0])
    rows = np.arange(x.shape[0])
    xs = x.astype(nodes["thr"].dtype)  # float32 nodes compare float32 features
    total = 0
    for root in model.trees:
        node = np.full(x.shape[0], root, dtype=np.int64)
        while True:
            live = ~leaf[node]
            if not live.any():
                break
            total += int(live.sum())
            f = model.cols[nodes["feat"][node]]
            right = xs[rows, f] > nodes["thr"][node]
            node = kid[node, right.astype(np.int64)]
    return float(total / x.shape[0])


@click.command()
@click.option("--data", "data_path", default=None, help="FDH-format file instead of synthetic")
@click.option("--rows", default=200_000, show_default=True, help="synthetic rows")
@click.option("--batch", default=1000, show_default=True)
@click.option("--single", "n_single", default=2000, show_default=True)
@click.option(
    "--model", "model_name", default="rf", show_default=True,
    help="'rf' = 100 trees, scikit-learn defaults; or a training candidate (rf_leaf5, hgb, "
    "blend...)",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
def cli(
    data_path: str | None, rows: int, batch: int, n_single: int, model_name: str, as_json: bool
) -> None:
    """Features + compiled forest vs scikit-learn predict_proba (ns per transaction)."""
    from fraudnet.training.data import load_csv

    table = load_csv(data_path) if data_path else _synthetic(rows, 0)
    n = len(table)
    config = FeatureConfig()
    warm = n // 2
    x = replay_features(table.take(np.arange(warm)), config)
    names = default_model_features()
    cols = feature_index(list(names))
    train = slice(max(0, warm - 100_000), warm)
    if model_name == "rf":
        rf: Any = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    elif model_name in CANDIDATES:
        rf = CANDIDATES[model_name](1)
    else:
        from fraudnet.errors import ConfigError

        raise ConfigError(f"--model {model_name!r}: expected rf or one of {', '.join(CANDIDATES)}")
    rf.fit(x[train][:, cols], table.fraud[:warm][train])
    model = compile_sklearn(rf, names, config)
    # the scorer's state continues from the warm-up replay, like a running node
    scorer = ModelScorer(model)
    for s in range(0, warm, 65536):
        scorer.features_many(_cols(table, s, min(s + 65536, warm)))
    scorer.score_many(_cols(table, warm, warm + 1))  # compile / warm caches
    load0 = os.getloadavg()[0]
    pos = warm + 1
    singles, singles_cpu = [], []
    for _ in range(n_single):
        b = _cols(table, pos, pos + 1)
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        scorer.score_many(b)
        singles.append(time.perf_counter_ns() - t0)
        singles_cpu.append(time.thread_time_ns() - c0)
        pos += 1
    batches: list[float] = []
    batches_cpu: list[float] = []
    while pos + batch <= n and len(batches) < 50:
        b = _cols(table, pos, pos + batch)
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        scorer.score_many(b)
        batches.append((time.perf_counter_ns() - t0) / batch)
        batches_cpu.append((time.thread_time_ns() - c0) / batch)
        pos += batch
    xb = x[-batch:][:, cols]
    xb_all = x[-batch:]
    sk_single = []
    for i in range(min(200, n_single)):
        t0 = time.perf_counter_ns()
        rf.predict_proba(xb[i % batch : i % batch + 1])
        sk_single.append(time.perf_counter_ns() - t0)
    sk_batch = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        rf.predict_proba(xb)
        sk_batch.append((time.perf_counter_ns() - t0) / batch)
    load1 = os.getloadavg()[0]
    nodes = int(model.nodes.shape[0])
    single_ns = float(statistics.median(singles))
    batch_ns = float(statistics.median(batches)) if batches else None
    sk_single_ns = float(statistics.median(sk_single))
    sk_batch_ns = float(statistics.median(sk_batch))
    out = {
        "single_ns": single_ns,
        "single_p99_ns": float(np.percentile(singles, 99)),
        "batch_ns_per_tx": batch_ns,
        # CPU time of this thread: what the code costs when the machine is shared
        "single_cpu_ns": float(statistics.median(singles_cpu)),
        "batch_cpu_ns_per_tx": float(statistics.median(batches_cpu)) if batches_cpu else None,
        "sklearn_single_ns": sk_single_ns,
        "sklearn_batch_ns_per_tx": sk_batch_ns,
        # same-run ratios (robust to a loaded machine): how many times faster than
        # scikit-learn's predict_proba alone, although ours includes the feature update
        "speedup_single": sk_single_ns / single_ns,
        "speedup_batch": sk_batch_ns / batch_ns if batch_ns else None,
        "batch": batch,
        "model": model_name,
        "kind": model.kind,
        "trees": model.n_trees,
        "forest_nodes": nodes,
        "nodes_per_tx": _visits(model, xb_all),
        "bytes_per_card": config.bytes_per_card(),
        "bytes_per_terminal": config.bytes_per_terminal(),
        "rows": n,
        "data": data_path or f"synthetic:{rows}",
        "load_avg_1m": [round(load0, 2), round(load1, 2)],
        "cpus": os.cpu_count(),
    }
    if as_json:
        click.echo(json.dumps(out, sort_keys=True))
    else:
        for k, v in out.items():
            click.echo(f"{k:>24}: {v}")
