"""``fraudnet evaluate``: replay, train, score the test period, apply the handbook protocol.

Modes:

* ``central`` -- one node sees every transaction.
* ``isolated`` -- ``nodes`` nodes, each seeing only the transactions whose
  ``TERMINAL_ID`` (acquirers) or ``CUSTOMER_ID`` (issuers) modulo ``nodes``
  is its index; each has its own feature state and its own model of the
  same class (the class with the best summed validation AP across nodes
  when several candidates are given). Scores are gathered and evaluated on
  the same test set as central mode, CP@100 ranking all cards together.

Test scores come from the *compiled* model (the code the node runs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fraudnet.core.features import FeatureConfig
from fraudnet.errors import ConfigError

from .data import TxTable
from .protocol import metrics, split
from .train import choose, combo_key, feature_sets_of, replay_features, train, validate_combos

__all__ = ["evaluate"]


def evaluate(
    table: TxTable,
    *,
    start_day: int,
    train_days: int = 7,
    delay_days: int = 7,
    test_days: int = 7,
    mode: str = "central",
    nodes: int = 5,
    partition: str = "terminal",
    candidates: list[str] | None = None,
    feature_set: str = "all",
    jobs: int = 1,
) -> dict[str, Any]:
    if mode not in ("central", "isolated"):
        raise ConfigError(f"--mode {mode!r}: expected central or isolated")
    if partition not in ("terminal", "customer"):
        raise ConfigError(f"--partition {partition!r}: expected terminal or customer")
    if mode == "isolated" and not 1 <= nodes <= 64:
        raise ConfigError(f"--nodes {nodes}: expected 1..64")
    config = FeatureConfig(delay_days=float(delay_days))
    sp = split(table, start_day, train_days, delay_days, test_days)
    cands = candidates or ["rf"]
    score = np.full(len(table), np.nan)
    chosen: list[str] = []
    if mode == "central":
        parts = [np.arange(len(table))]
    else:
        key = table.terminal if partition == "terminal" else table.customer
        parts = [np.flatnonzero(key % nodes == k) for k in range(nodes)]
    subs = [table.take(p) for p in parts]
    xs = [replay_features(sub, config) for sub in subs]
    fss = feature_sets_of(feature_set)
    cls, fs = cands[0], fss[0]
    val_total: dict[str, float] = {}
    if len(cands) * len(fss) > 1:
        # one choice for all nodes: the best summed validation AP (validation folds only)
        for sub, x in zip(subs, xs, strict=True):
            val = validate_combos(sub, x, start_day, train_days, delay_days, cands, fss, jobs)
            for n, m in val.items():
                val_total[n] = val_total.get(n, 0.0) + m["average_precision"]
        best = choose({n: {"average_precision": v, "card_precision_at_100": 0.0}
                       for n, v in val_total.items()}, combo_key(cls, fs))  # fmt: skip
        cls, fs = best.split("@", 1)
    train_rows = 0
    for p, sub, x in zip(parts, subs, xs, strict=True):
        res = train(
            sub, x, start_day=start_day, train_days=train_days, delay_days=delay_days,
            candidates=[cls], feature_set=fs, config=config, jobs=jobs,
        )  # fmt: skip
        train_rows += res.train_rows
        chosen.append(res.candidate)
        test_local = sp.test[p]
        s, _ = res.model.predict_many(x[test_local])
        score[p[test_local]] = s
    test_scores = score[sp.test]
    out: dict[str, Any] = metrics(table, sp.test, test_scores)
    out.update(
        train_rows=train_rows,
        test_rows=int(sp.test.sum()),
        test_frauds=int(table.fraud[sp.test].sum()),
        mode=mode,
        nodes=1 if mode == "central" else nodes,
        partition=partition if mode == "isolated" else None,
        model=cls,
        validation_ap=val_total,
        feature_set=fs,
        selected_by="validation folds before the training period" if val_total else "given",
    )
    return out
