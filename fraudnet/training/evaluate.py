"""``fraudnet evaluate``: replay, train, score the test period, apply the handbook protocol.

Modes:

* ``central`` -- one node sees every transaction.
* ``isolated`` -- ``nodes`` nodes, each seeing only the transactions whose
  ``TERMINAL_ID`` (acquirers) or ``CUSTOMER_ID`` (issuers) modulo ``nodes``
  is its index; each has its own feature state and its own model of the
  same class (the class with the best summed validation AP across nodes
  when several candidates are given). Scores are gathered and evaluated on
  the same test set as central mode, CP@100 ranking all cards together.
* ``network`` -- the isolated partitions exchanging risk signals under the
  node's signal policy; each decides with a model that also reads the
  network features (see :mod:`fraudnet.training.network`).

Test scores come from the *compiled* model (the code the node runs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fraudnet.core.features import FeatureConfig
from fraudnet.core.features.network import NEUTRAL
from fraudnet.errors import ConfigError

from .combine import combine
from .data import TxTable
from .network import NetworkOptions, fit_members, with_network
from .protocol import DAY_S, metrics, split
from .train import choose, combo_key, feature_sets_of, replay_features, train, validate_combos

__all__ = ["evaluate"]

MODES = ("central", "isolated", "network")
_SUMMED = ("average_precision", "auc_roc", "card_precision_at_100")


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
    network: NetworkOptions | None = None,
) -> dict[str, Any]:
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    if partition not in ("terminal", "customer"):
        raise ConfigError(f"--partition {partition!r}: expected terminal or customer")
    if mode != "central" and not 1 <= nodes <= 64:
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
        # one choice for all nodes: train.choose over the validation metrics summed across
        # nodes (ranks of sums = ranks of means; central mode: one node's means)
        val_sum: dict[str, dict[str, float]] = {}
        for sub, x in zip(subs, xs, strict=True):
            val = validate_combos(sub, x, start_day, train_days, delay_days, cands, fss, jobs)
            for n, m in val.items():
                acc = val_sum.setdefault(n, dict.fromkeys(_SUMMED, 0.0))
                for metric in _SUMMED:
                    acc[metric] += m[metric]
        val_total = {n: m["average_precision"] for n, m in val_sum.items()}
        best = choose(val_sum, combo_key(cls, fs))
        cls, fs = best.split("@", 1)
    extra: dict[str, Any] = {}
    train_rows = 0
    if mode == "network":
        opts = network or NetworkOptions()
        train_rows, extra = _network(
            table, sp.test, parts, subs, xs, score, start_day=start_day, train_days=train_days,
            delay_days=delay_days, cls=cls, fs=fs, config=config, jobs=jobs, opts=opts,
        )  # fmt: skip
        chosen = [cls] * len(parts)
    else:
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
        partition=partition if mode != "central" else None,
        model=cls,
        validation_ap=val_total,
        feature_set=fs,
        selected_by="validation folds before the training period" if val_total else "given",
        **extra,
    )
    return out


def _network(
    table: TxTable, test: np.ndarray[Any, Any], parts: list[Any], subs: list[TxTable],
    xs: list[Any], score: np.ndarray[Any, Any], *, start_day: int, train_days: int,
    delay_days: int, cls: str, fs: str, config: FeatureConfig, jobs: int, opts: NetworkOptions,
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """Network mode (see fraudnet.training.network); fills ``score`` on test rows."""
    members = [f"member-{k}" for k in range(len(subs))]
    fitted = fit_members(
        members, subs, xs, start_day=start_day, train_days=train_days, delay_days=delay_days,
        cls=cls, fs=fs, config=config, jobs=jobs, opts=opts,
    )  # fmt: skip
    logs = [f.log for f in fitted]
    train_rows = sum(
        int(((sub.day >= start_day) & (sub.day < start_day + train_days)).sum()) for sub in subs
    )
    neutral_score = np.full(len(table), np.nan)
    own_score = np.full(len(table), np.nan)
    tests = []
    for p, f in zip(parts, fitted, strict=True):
        tl = test[p]
        own_score[p[tl]], _ = f.decision.predict_many(f.x[tl])
        tests.append((p[tl], f.x[tl]))
    # the consortium model: every member's decision model, equal weights (the models
    # are fitted before the test period, so sharing them adds no look-ahead)
    models = [f.decision for f in fitted]
    deciders = [combine(models)] * len(models) if opts.model_exchange else models
    for decider, (rows, xt) in zip(deciders, tests, strict=True):
        score[rows], _ = decider.predict_many(xt)
        # ablation: the same model with no network evidence (every network column neutral)
        neutral_score[rows], _ = decider.predict_many(
            with_network(xt, np.tile(NEUTRAL, (len(rows), 1)))
        )
    test_first = float(start_day + train_days + delay_days) * DAY_S
    sent = [len(lg.signals) for lg in logs]
    seen = [lg.transactions for lg in logs]
    test_sent = [int((lg.created_s >= test_first).sum()) for lg in logs]
    test_seen = [int((sub.ts_s >= test_first).sum()) for sub in subs]
    origin: dict[str, int] = {}
    for lg in logs:
        for o, v in lg.by_origin.items():
            origin[o] = origin.get(o, 0) + v
    ablation = metrics(table, test, neutral_score[test])
    return train_rows, {
        "signals_sent": int(sum(sent)),
        "signals_per_transaction": sum(sent) / max(sum(seen), 1),
        "signals_per_transaction_max_node": max(s / max(n, 1) for s, n in zip(sent, seen,
                                                                              strict=True)),
        "signals_per_transaction_test": sum(test_sent) / max(sum(test_seen), 1),
        "signals_by_origin": origin,
        "signal_model": "same candidate, local features, fitted on the train_days ending "
        "delay_days before the training period (out of sample from the training period on)",
        "network_options": {
            "propagation_s": opts.propagation_s, "threshold": opts.threshold,
            "budget": opts.budget, "ttl_s": opts.ttl_s, "label_signals": opts.label_signals,
            "terminal_signals": opts.terminal_signals, "signal_scores": opts.signal_scores,
            "model_exchange": opts.model_exchange,
        },
        "without_network_evidence": ablation,
        "model_exchange": opts.model_exchange,
        "without_model_exchange": metrics(table, test, own_score[test]),
    }  # fmt: skip
