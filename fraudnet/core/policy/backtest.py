"""Backtest: replay labelled history through the feature engine and one or more policies.

:func:`backtest_many` takes the history as columns in event-time order
(the CLI loads files; this module never does IO), folds it batch by batch
through a :class:`~fraudnet.core.features.FeatureState` (labels travel
with their transactions and are read only ``delay`` later, as in
training), scores it with an optional compiled model (score 0 without),
folds every policy's velocity windows once per window key, and evaluates
every policy on the same batch. :class:`BacktestStats` accumulates, per
policy:

* per action: transactions, amount, frauds and fraud amount;
* overall: precision of the flagged set (review + step_up + block), frauds
  and fraud amount caught (flagged), recall;
* per rule / list / segment: transactions it matched (whether or not it
  decided), frauds among them (precision), fraud amount matched, and how
  many it decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..features.schema import FeatureConfig
from ..features.state import FeatureState
from ..scoring.compiled import CompiledModel
from .evaluate import ACTION_NAMES, BLOCK, Policy, PolicyResult
from .inputs import PolicyInput
from .velocity import VelocitySpec, VelocityStore

__all__ = ["BacktestStats", "backtest_many"]

F64 = npt.NDArray[np.float64]


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


@dataclass(slots=True)
class BacktestStats:
    """Counters of one policy over a backtest (see module docstring)."""

    policy: Policy
    role: str
    by_action: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((4, 4)))
    src: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 4)))
    decided: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2)))

    def __post_init__(self) -> None:
        n_src = len(self.policy.sources)
        self.src = np.zeros((n_src, 4))  # matched: tx, amount, fraud, fraud amount
        self.decided = np.zeros((n_src, 2))  # decided: tx, fraud

    def add(self, res: PolicyResult, amount: F64, fraud: npt.NDArray[np.bool_]) -> None:
        f = fraud.astype(np.float64)
        fa = amount * f
        for code in range(4):
            m = res.codes == code
            self.by_action[code] += (m.sum(), amount[m].sum(), f[m].sum(), fa[m].sum())
        n_lr = res.hits.shape[0]
        if n_lr:
            hf = res.hits.astype(np.float64)
            self.src[:n_lr] += np.stack([hf.sum(1), hf @ amount, hf @ f, hf @ fa], axis=1)
        seg = np.where(res.segment < 0, len(self.policy.bundle.segments), res.segment)
        for k in range(len(self.policy.bundle.segments) + 1):
            m = seg == k
            self.src[n_lr + k] += (m.sum(), amount[m].sum(), f[m].sum(), fa[m].sum())
        d = res.decisive
        ok = d >= 0
        np.add.at(self.decided[:, 0], d[ok], 1.0)
        np.add.at(self.decided[:, 1], d[ok], f[ok])

    def report(self) -> dict[str, Any]:
        b = self.policy.bundle
        ba = self.by_action
        flagged = ba[1:].sum(axis=0)
        total = ba.sum(axis=0)
        overall = {
            "transactions": int(total[0]),
            "frauds": int(total[2]),
            "fraud_amount": round(float(total[3]), 2),
            "flagged": int(flagged[0]),
            "flagged_frauds": int(flagged[2]),
            "precision": _ratio(flagged[2], flagged[0]),
            "recall": _ratio(flagged[2], total[2]),
            "fraud_amount_caught": round(float(flagged[3]), 2),
            "fraud_amount_caught_share": _ratio(flagged[3], total[3]),
            "block_precision": _ratio(ba[BLOCK, 2], ba[BLOCK, 0]),
        }
        actions = {
            ACTION_NAMES[c]: {
                "transactions": int(ba[c, 0]), "amount": round(float(ba[c, 1]), 2),
                "frauds": int(ba[c, 2]), "fraud_amount": round(float(ba[c, 3]), 2),
            }
            for c in range(4)
        }  # fmt: skip
        n_lists = len(self.policy.lists)
        n_rules = len(self.policy.rules)

        def row(k: int) -> dict[str, Any]:
            s, d = self.src[k], self.decided[k]
            return {
                "matched": int(s[0]), "matched_frauds": int(s[2]),
                "precision": _ratio(s[2], s[0]), "fraud_amount_matched": round(float(s[3]), 2),
                "decided": int(d[0]), "decided_frauds": int(d[1]),
            }  # fmt: skip

        rules = [
            {"id": r.id, "version": r.version, "action": r.action, "enabled": r.enabled,
             **row(n_lists + j)}
            for j, r in enumerate(self.policy.rules)
        ]  # fmt: skip
        lists = [
            {"id": cl.lst.id, "kind": cl.lst.kind, "action": cl.lst.action, **row(k)}
            for k, cl in enumerate(self.policy.lists)
        ]
        seg_ids = [s.id for s in b.segments] + ["default"]
        segments = [{"id": sid, **row(n_lists + n_rules + k)} for k, sid in enumerate(seg_ids)]
        return {
            "role": self.role, "policy_id": b.policy_id, "sha256": b.sha256, "source": b.source,
            "overall": overall, "by_action": actions, "rules": rules, "lists": lists,
            "segments": segments,
        }  # fmt: skip


def backtest_many(
    policies: Sequence[tuple[str, Policy]],
    *,
    ts_s: F64,
    amount: F64,
    card_key: npt.NDArray[np.uint64],
    terminal_key: npt.NDArray[np.uint64],
    fraud: npt.NDArray[np.int8],
    extra: dict[str, Any] | None = None,
    model: CompiledModel | None = None,
    feature_config: FeatureConfig | None = None,
    batch: int = 65536,
) -> list[BacktestStats]:
    """Replay the history (event-time order) through features, model and every policy.

    ``policies`` are ``(role, policy)`` pairs (e.g. ``("candidate", p), ("live", q)``).
    ``extra`` holds optional :meth:`PolicyInput.from_arrays` columns (mcc, channel,
    country, currency, bin, merchant_key, device_key) of the same length.
    """
    config = model.feature_config if model is not None else (feature_config or FeatureConfig())
    state = FeatureState(config)
    store = VelocityStore()
    stats = [BacktestStats(p, role) for role, p in policies]
    specs: dict[str, VelocitySpec] = {}
    for k, (_, p) in enumerate(policies):
        for sid, spec in p.bundle.velocities.items():
            specs[f"{k}:{sid}"] = spec
    n = int(ts_s.shape[0])
    ex = extra or {}
    for s in range(0, n, batch):
        e = min(s + batch, n)
        sl = slice(s, e)
        x = state.fold_arrays(card_key[sl], terminal_key[sl], ts_s[sl], amount[sl], fraud[sl])
        score = model.predict_many(x)[0] if model is not None else np.zeros(e - s)
        inp = PolicyInput.from_arrays(
            ts_s=ts_s[sl], amount=amount[sl], card_key=card_key[sl],
            terminal_key=terminal_key[sl], score=score, features=x,
            **{k: v[sl] for k, v in ex.items()},
        )  # fmt: skip
        folded = store.fold_many(specs, inp)
        is_fraud = fraud[sl] == 1
        for k, (_, p) in enumerate(policies):
            prefix = f"{k}:"
            vals = {sid[len(prefix) :]: v for sid, v in folded.items() if sid.startswith(prefix)}
            res = p.evaluate_many(inp, vals, inp.ts_s)
            stats[k].add(res, inp.amount, is_fraud)
    return stats
