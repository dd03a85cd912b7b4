"""Evaluate a compiled bundle over a batch: fixed order, vectorised.

Evaluation order (fixed; the first stage that matches decides):

1. **allow** -- the entity is on an allow list (lists in bundle order), or an
   ``allow`` rule matches. An explicit allow wins over everything below.
2. **block** -- the entity is on a deny list, or a ``block`` rule matches.
3. **score block** -- the score is at or above the transaction's segment
   ``block_at`` (first matching segment, else ``[thresholds]``).
4. **step_up** -- a ``step_up`` rule matches (e.g. ask for 3-D Secure).
5. **review** -- a ``review`` rule matches, or the score is at or above the
   segment's ``review_at``.
6. otherwise **allow**.

Every rule and list is evaluated on the whole batch (one numpy operation
per condition node), so per-rule hit counts are exact for shadow
comparisons and backtests, not only for the decisive rule.

Reason codes of a transaction decided by a rule or list: every source that
matched in the deciding stage, decisive one first (at most
:data:`MAX_POLICY_REASONS`), ``rule:<id>@v<version>: <description>`` or
``list:<id>`` or ``threshold:<segment id>``, followed by the model's
reasons. A transaction allowed by default keeps the model's reasons only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from fraudnet.errors import PolicyError

from ..records import Outcome
from .bundle import Bundle, EntityList
from .compile import EvalContext
from .inputs import PolicyInput

__all__ = [
    "ACTION_CODES",
    "ACTION_NAMES",
    "ALLOW",
    "BLOCK",
    "MAX_POLICY_REASONS",
    "REVIEW",
    "STEP_UP",
    "Policy",
    "PolicyResult",
    "outcome_of",
]

ALLOW: Final = 0
REVIEW: Final = 1
STEP_UP: Final = 2
BLOCK: Final = 3
ACTION_NAMES: Final = ("allow", "review", "step_up", "block")
ACTION_CODES: Final = {n: i for i, n in enumerate(ACTION_NAMES)}
MAX_POLICY_REASONS: Final = 4
B = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]


def outcome_of(code: int) -> Outcome:
    """The node :data:`~fraudnet.core.records.Outcome` of an action code.

    ``Decision.outcome`` has three values today; ``step_up`` maps to
    ``review`` (its reasons start with ``action:step_up``), until the
    outcome type gains a fourth value.
    """
    outcomes: tuple[Outcome, ...] = ("allow", "review", "review", "block")
    return outcomes[code]


@dataclass(frozen=True, slots=True)
class _CompiledList:
    lst: EntityList
    keys: npt.NDArray[np.uint64] | npt.NDArray[np.int64]
    expires: F64


def _compile_list(lst: EntityList) -> _CompiledList:
    best: dict[int, float] = {}
    for e in lst.entries:
        best[e.key] = max(best.get(e.key, -np.inf), e.expires_s)
    ordered = sorted(best)
    keys: npt.NDArray[np.uint64] | npt.NDArray[np.int64]
    if lst.kind in ("card", "terminal", "merchant", "device"):
        keys = np.array(ordered, dtype=np.uint64)
    else:
        keys = np.array(ordered, dtype=np.int64)
    expires = np.array([best[k] for k in ordered], dtype=np.float64)
    return _CompiledList(lst, keys, expires)


def _list_hits(cl: _CompiledList, inp: PolicyInput, now_s: F64 | float) -> B:
    n = len(inp)
    if cl.keys.shape[0] == 0:
        return np.zeros(n, dtype=np.bool_)
    kind = cl.lst.kind
    present: B | None = None
    if kind == "card":
        col: npt.NDArray[np.uint64] | npt.NDArray[np.int64] = inp.card_key
    elif kind == "terminal":
        col = inp.terminal_key
    elif kind == "merchant":
        col, present = inp.merchant_key, inp.has_merchant
    elif kind == "device":
        col, present = inp.device_key, inp.has_device
    elif kind == "bin":
        col = inp.bin
    else:
        col = inp.country
    idx = np.searchsorted(cl.keys, col)
    idx = np.minimum(idx, cl.keys.shape[0] - 1)
    hit = (cl.keys[idx] == col) & (cl.expires[idx] > now_s)
    if present is not None:
        hit &= present
    return np.asarray(hit, dtype=np.bool_)


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """Outcome of a batch. Arrays have one row per transaction, in input order.

    * ``codes`` -- action code (:data:`ACTION_NAMES`);
    * ``decisive`` -- index into ``sources`` of the deciding list/rule/segment, -1 default;
    * ``hits`` -- every list, then every rule, that matched (sources x n; source-major
      so that each condition writes one contiguous row);
    * ``segment`` -- index of the transaction's segment, -1 for ``[thresholds]``.
    """

    policy_id: str
    sha256: str
    version: int
    codes: npt.NDArray[np.int8]
    decisive: npt.NDArray[np.int32]
    hits: B
    n_lists: int
    segment: npt.NDArray[np.int32]
    sources: tuple[str, ...]
    stage_members: tuple[npt.NDArray[np.int32], ...]  # per code: source indices of its stage

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def list_hits(self) -> B:
        """Lists x transactions."""
        return self.hits[: self.n_lists]

    @property
    def rule_hits(self) -> B:
        """Rules x transactions."""
        return self.hits[self.n_lists :]

    def action(self, i: int) -> str:
        return ACTION_NAMES[int(self.codes[i])]

    def policy_reasons(self, i: int) -> tuple[str, ...]:
        """The policy's reason codes of transaction ``i`` (empty when allowed by default)."""
        return self.reasons_many([()] * len(self), only=np.array([i]))[i]

    def reasons_many(
        self, model_reasons: Sequence[tuple[str, ...]], only: npt.NDArray[np.intp] | None = None
    ) -> list[tuple[str, ...]]:
        """Final reason codes per transaction: the policy's, then the model's.

        Vectorised: the matching sources of every rule-decided transaction are
        found with one pass per stage, not a Python loop over rules.
        """
        out = list(model_reasons)
        decided = np.flatnonzero(self.decisive >= 0) if only is None else only
        decided = decided[self.decisive[decided] >= 0]
        if decided.shape[0] == 0:
            return out
        src = self.sources
        extra: dict[int, list[int]] = {}
        for code, members in enumerate(self.stage_members):
            if members.shape[0] < 2:
                continue
            sel = decided[self.codes[decided] == code]
            if sel.shape[0] == 0:
                continue
            sub = self.hits[members][:, sel]  # members x txs
            keep = sub & (np.cumsum(sub, axis=0) <= MAX_POLICY_REASONS)
            t_pos, m_pos = np.nonzero(keep.T)  # ordered by tx, then member
            for tp, mp in zip(t_pos.tolist(), m_pos.tolist(), strict=True):
                extra.setdefault(int(sel[tp]), []).append(int(members[mp]))
        for i in decided.tolist():
            d = int(self.decisive[i])
            first = src[d]
            parts = [first]
            for s in extra.get(i, ()):
                if s != d and len(parts) < MAX_POLICY_REASONS:
                    parts.append(src[s])
            if self.codes[i] == STEP_UP:
                parts.insert(0, "action:step_up")
            out[i] = (*parts, *model_reasons[i])
        return out


class Policy:
    """A bundle ready to evaluate (immutable; safe to share between threads)."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.lists = tuple(_compile_list(lst) for lst in bundle.lists)
        self.rules = tuple(r for r in bundle.rules)
        n_lists = len(self.lists)
        self.sources: tuple[str, ...] = (
            *(f"list:{cl.lst.id}" for cl in self.lists),
            *(r.reason for r in self.rules),
            *(f"threshold:{s.id}" for s in bundle.segments),
            "threshold:default",
        )
        self._seg_base = n_lists + len(self.rules)
        stage: dict[int, list[int]] = {ALLOW: [], REVIEW: [], STEP_UP: [], BLOCK: []}
        for k, cl in enumerate(self.lists):
            if cl.lst.action == "allow":
                stage[ALLOW].append(k)
            elif cl.lst.action == "deny":
                stage[BLOCK].append(k)
        for j, r in enumerate(self.rules):
            if r.enabled:
                stage[ACTION_CODES[r.action]].append(n_lists + j)
        self.stages = {c: np.array(v, dtype=np.int32) for c, v in stage.items()}
        self.seg_review = np.array([s.review_at for s in bundle.segments] + [bundle.review_at])
        self.seg_block = np.array([s.block_at for s in bundle.segments] + [bundle.block_at])
        self.needs_features = bundle.needs_features()

    @property
    def velocity_specs(self) -> dict[str, object]:
        return dict(self.bundle.velocities)

    def evaluate_many(
        self, inp: PolicyInput, velocity: Mapping[str, F64], now_s: F64 | float
    ) -> PolicyResult:
        """Decide a batch. ``velocity`` holds the values of every velocity the bundle
        declares (from :meth:`VelocityStore.fold_many`); ``now_s`` is the decision time
        for list expiry (a scalar, or per transaction in backtests)."""
        n = len(inp)
        if self.needs_features and inp.features is None:
            raise PolicyError(
                f"policy {self.bundle.policy_id} reads feature.* but the batch has no features"
            )
        missing = [v for v in self.bundle.velocities if v not in velocity]
        if missing:
            raise PolicyError(f"policy {self.bundle.policy_id}: velocity values missing: {missing}")
        n_lists = len(self.lists)
        hits = np.zeros((n_lists + len(self.rules), n), dtype=np.bool_)
        lists_by_id: dict[str, B] = {}
        for k, cl in enumerate(self.lists):
            hits[k] = _list_hits(cl, inp, now_s)
            lists_by_id[cl.lst.id] = hits[k]
        ctx = EvalContext(inp=inp, velocity=velocity, lists=lists_by_id)
        for j, r in enumerate(self.rules):
            if r.enabled:
                hits[n_lists + j] = r.condition.mask(ctx)
        # segment thresholds: first matching segment, else the default row
        n_seg = len(self.bundle.segments)
        segment = np.full(n, n_seg, dtype=np.int32)
        for k, s in enumerate(self.bundle.segments):
            segment[(segment == n_seg) & s.condition.mask(ctx)] = k
        review_at = self.seg_review[segment]
        block_at = self.seg_block[segment]
        codes = np.zeros(n, dtype=np.int8)
        decisive = np.full(n, -1, dtype=np.int32)
        undecided = np.ones(n, dtype=np.bool_)

        def stage(code: int) -> None:
            members = self.stages[code]
            if members.shape[0] == 0:
                return
            sub = hits[members]
            fired = undecided & sub.any(axis=0)
            if fired.any():
                codes[fired] = code
                decisive[fired] = members[np.argmax(sub[:, fired], axis=0)]
                undecided[fired] = False

        def by_score(at: F64, code: int) -> None:
            m = undecided & (inp.score >= at)
            codes[m] = code
            decisive[m] = self._seg_base + segment[m]
            undecided[m] = False

        stage(ALLOW)
        stage(BLOCK)
        by_score(block_at, BLOCK)
        stage(STEP_UP)
        stage(REVIEW)
        by_score(review_at, REVIEW)
        b = self.bundle
        return PolicyResult(
            policy_id=b.policy_id, sha256=b.sha256, version=b.version, codes=codes,
            decisive=decisive, hits=hits, n_lists=n_lists,
            segment=np.where(segment == n_seg, -1, segment).astype(np.int32),
            sources=self.sources,
            stage_members=tuple(self.stages[c] for c in range(4)),
        )  # fmt: skip
