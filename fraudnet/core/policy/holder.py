"""Hot reload and shadow mode: :class:`PolicyHolder`, :class:`PolicyEngine`, :class:`ShadowStats`.

Theory of operation.

* :class:`PolicyHolder` owns the running policy as one immutable
  :class:`Installed` value (policy + holder version). A reader takes
  :attr:`PolicyHolder.current` **once per batch** (a single attribute read,
  atomic in CPython) and evaluates the whole batch with it, so every
  transaction is decided by exactly one policy version and a concurrent
  replace can neither lose a transaction nor decide one twice. A writer
  validates and compiles the new bundle *before* taking the lock (a bad
  bundle changes nothing), then swaps under the lock and bumps the version.
  The lock is injected (the adapter passes a ``threading.Lock``), since
  core never imports threading.
* Every change returns an audit record (``policy_change`` with the
  bundle's SHA-256, the previous one and the holder version) that the
  adapter appends to the audit log.
* :class:`PolicyEngine` is what the node calls per batch: it folds the
  velocity windows once for the union of the live and shadow policies,
  evaluates the live policy, and, when a shadow candidate is installed,
  evaluates it beside the live one and records the comparison
  (:class:`ShadowStats`), without touching the live result.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..audit.schema import AuditRecord, event_record
from .bundle import Bundle, load_bundle
from .evaluate import ACTION_NAMES, Policy, PolicyResult
from .inputs import PolicyInput
from .velocity import VelocityKey, VelocitySpec, VelocityStore

__all__ = ["EngineResult", "Installed", "PolicyEngine", "PolicyHolder", "ShadowStats"]

MAX_SHADOW_SAMPLES: Final = 10_000
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Installed:
    """A policy as installed in a holder: ``version`` counts installs (1, 2, ...)."""

    version: int
    policy: Policy
    installed_at_us: int

    @property
    def bundle(self) -> Bundle:
        return self.policy.bundle


class PolicyHolder:
    """The running policy and the shadow candidate, swapped atomically (see module doc)."""

    def __init__(
        self,
        initial: Bundle,
        *,
        now_us: int,
        lock: AbstractContextManager[Any] | None = None,
        actor: str = "node",
    ) -> None:
        self._lock: AbstractContextManager[Any] = (
            lock if lock is not None else contextlib.nullcontext()
        )
        self._current = Installed(1, Policy(initial), now_us)
        self._shadow: Installed | None = None
        self._shadow_version = 0
        self.actor = actor

    @property
    def current(self) -> Installed:
        """The live policy; read once per batch."""
        return self._current

    @property
    def shadow(self) -> Installed | None:
        """The shadow candidate, if any; read once per batch."""
        return self._shadow

    def _record(self, action: str, new: Bundle | None, old: Bundle | None, version: int,
                now_us: int, actor: str) -> AuditRecord:  # fmt: skip
        return event_record(
            "policy_change", at_us=now_us, actor=actor, action=action,
            resource=f"policy:{new.name if new else (old.name if old else '')}",
            policy_id=new.policy_id if new else "", sha256=new.sha256 if new else "",
            previous_sha256=old.sha256 if old else "", holder_version=version,
            bundle_version=new.version if new else 0,
        )  # fmt: skip

    def replace(
        self, data: bytes, *, source: str, now_us: int, actor: str | None = None
    ) -> tuple[Installed, AuditRecord]:
        """Validate ``data`` and make it the live policy.

        Raises :class:`~fraudnet.errors.PolicyError` (nothing changes) when
        the bundle is invalid. Returns the installed policy and the audit
        record to append.
        """
        return self.install(load_bundle(data, source), now_us=now_us, actor=actor)

    def install(
        self, bundle: Bundle, *, now_us: int, actor: str | None = None
    ) -> tuple[Installed, AuditRecord]:
        """Install an already validated bundle as the live policy (see :meth:`replace`)."""
        policy = Policy(bundle)  # compile outside the lock
        with self._lock:
            old = self._current
            new = Installed(old.version + 1, policy, now_us)
            self._current = new
        rec = self._record("deploy", bundle, old.bundle, new.version, now_us, actor or self.actor)
        return new, rec

    def set_shadow(
        self, bundle: Bundle | None, *, now_us: int, actor: str | None = None
    ) -> AuditRecord:
        """Install (or with ``None`` remove) the shadow candidate."""
        policy = None if bundle is None else Policy(bundle)
        with self._lock:
            old = self._shadow
            self._shadow_version += 1
            self._shadow = (
                None if policy is None else Installed(self._shadow_version, policy, now_us)
            )
        action = "shadow_remove" if bundle is None else "shadow_start"
        return self._record(action, bundle, old.bundle if old else None, self._shadow_version,
                            now_us, actor or self.actor)  # fmt: skip


@dataclass(slots=True)
class ShadowStats:
    """Live-vs-candidate comparison counters and a bounded log of differing outcomes.

    ``matrix[live][candidate]`` counts transactions by (live action,
    candidate action); ``samples`` keeps the last :data:`MAX_SHADOW_SAMPLES`
    transactions whose outcomes differ, as ``(tx_id, live, candidate,
    candidate reasons)``.
    """

    candidate_id: str = ""
    live_id: str = ""
    matrix: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((4, 4), np.int64))
    rule_hits: dict[str, int] = field(default_factory=dict)
    samples: deque[tuple[str, str, str, tuple[str, ...]]] = field(
        default_factory=lambda: deque(maxlen=MAX_SHADOW_SAMPLES)
    )

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    @property
    def differing(self) -> int:
        return self.total - int(np.trace(self.matrix))

    def add(self, tx_ids: Sequence[str], live: PolicyResult, cand: PolicyResult,
            rule_ids: Sequence[str]) -> None:  # fmt: skip
        np.add.at(self.matrix, (live.codes.astype(np.intp), cand.codes.astype(np.intp)), 1)
        counts = cand.rule_hits.sum(axis=1)
        for rid, c in zip(rule_ids, counts, strict=True):
            if c:
                self.rule_hits[rid] = self.rule_hits.get(rid, 0) + int(c)
        for i in np.flatnonzero(live.codes != cand.codes):
            k = int(i)
            self.samples.append((tx_ids[k], live.action(k), cand.action(k), cand.policy_reasons(k)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "live": self.live_id,
            "candidate": self.candidate_id,
            "total": self.total,
            "differing": self.differing,
            "matrix": {
                lv: {cv: int(self.matrix[i, j]) for j, cv in enumerate(ACTION_NAMES)}
                for i, lv in enumerate(ACTION_NAMES)
            },
            "candidate_rule_hits": dict(self.rule_hits),
        }


@dataclass(frozen=True, slots=True)
class EngineResult:
    """One batch through the engine: the live result, the shadow result if any."""

    live: PolicyResult
    live_version: int
    shadow: PolicyResult | None
    #: the live policy's velocity values by velocity id (for review history summaries)
    velocity: dict[str, F64]


class PolicyEngine:
    """The per-batch entry point the node calls (single decide thread)."""

    def __init__(self, holder: PolicyHolder, velocity: VelocityStore | None = None) -> None:
        self.holder = holder
        self.velocity = velocity or VelocityStore()
        self.shadow_stats: ShadowStats | None = None
        self._shadow_seen: tuple[int, int] = (0, 0)

    def evaluate_many(
        self, tx_ids: Sequence[str], inp: PolicyInput, now_s: F64 | float
    ) -> EngineResult:
        """Fold velocities once, evaluate live (and shadow), record the comparison."""
        live = self.holder.current
        shadow = self.holder.shadow
        specs: dict[str, VelocitySpec] = {}
        for tag, inst in (("L", live), ("S", shadow)):
            if inst is not None:
                for sid, spec in inst.bundle.velocities.items():
                    specs[f"{tag}:{sid}"] = spec
        folded = self.velocity.fold_many(specs, inp)
        lvals = _values_of(folded, "L")
        lres = live.policy.evaluate_many(inp, lvals, now_s)
        sres = None
        if shadow is not None:
            seen = (live.version, shadow.version)
            if self.shadow_stats is None or self._shadow_seen != seen:
                # a new comparison whenever either side changes: counts never mix versions
                self.shadow_stats = ShadowStats(
                    candidate_id=shadow.bundle.policy_id, live_id=live.bundle.policy_id
                )
                self._shadow_seen = seen
            sres = shadow.policy.evaluate_many(inp, _values_of(folded, "S"), now_s)
            self.shadow_stats.add(tx_ids, lres, sres, [r.id for r in shadow.policy.rules])
        return EngineResult(lres, live.version, sres, lvals)

    def prune_velocity(self) -> None:
        """Drop velocity states neither the live nor the shadow policy uses (after a swap)."""
        keys: set[VelocityKey] = set()
        for inst in (self.holder.current, self.holder.shadow):
            if inst is not None:
                keys.update(s.key for s in inst.bundle.velocities.values())
        self.velocity.retain(keys)


def _values_of(folded: dict[str, F64], tag: str) -> dict[str, F64]:
    prefix = f"{tag}:"
    return {k[len(prefix) :]: v for k, v in folded.items() if k.startswith(prefix)}
