"""QuorumTracker: one node's consensus state, fed bytes and ``now``, returning outputs.

This is the stateful shell around the pure :func:`~.verdict.derive_verdict`:
it verifies and stores statements, detects equivocation, bounds sizes and
rates, and recomputes an entity's verdict whenever its statements or the
clock change it. Invariant (tested): ``tracker.verdict(k, e, now)`` equals
``derive_verdict`` over ``tracker.attestations()`` and ``tracker.proofs()``.

Inputs raise :class:`~fraudnet.errors.ConsensusError`; a transport maps
``err.reason in IGNORE_REASONS`` to GossipSub IGNORE (drop, do not penalise)
and anything else to REJECT. Only newly accepted messages should be
forwarded. Outputs:

* :class:`Publish` -- bytes to gossip on a topic (equivocation proofs).
* :class:`VerdictChanged` -- an entity's verdict level changed.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.errors import ConsensusError

from .attestation import SignedAttestation, open_attestation
from .chain import RosterChain, decode_update
from .equivocation import (
    EquivocationProof,
    attestation_equivocation,
    open_proof,
    seal_proof,
    vote_equivocation,
)
from .verdict import Level, Verdict, VerdictPolicy, derive_verdict

__all__ = [
    "IGNORE_REASONS",
    "TOPIC_ATTESTATIONS",
    "TOPIC_PROOFS",
    "TOPIC_ROSTER",
    "Limits",
    "Publish",
    "QuorumTracker",
    "VerdictChanged",
]

TOPIC_ATTESTATIONS: Final = "fraudnet/attestations/1"
TOPIC_PROOFS: Final = "fraudnet/equivocation/1"
TOPIC_ROSTER: Final = "fraudnet/roster/1"
IGNORE_REASONS: Final = frozenset({"duplicate", "stale", "future", "rate-limited", "known"})

EntityKey = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-node bounds. Honest members stay far below them; flooders hit them."""

    rate_per_s: float = 500.0
    burst: float = 5_000.0
    max_statements_per_key: int = 16
    max_statements: int = 2_000_000


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    data: bytes


@dataclass(frozen=True, slots=True)
class VerdictChanged:
    old: Level
    verdict: Verdict


Output = Publish | VerdictChanged


class QuorumTracker:
    """See module docstring."""

    def __init__(
        self,
        chain: RosterChain,
        policy: VerdictPolicy | None = None,
        limits: Limits | None = None,
        *,
        reporter: tuple[str, Ed25519PrivateKey] | None = None,
    ) -> None:
        self.chain = chain
        self.policy = policy or VerdictPolicy()
        self.limits = limits or Limits()
        self.counters: Counter[str] = Counter()
        self._reporter = reporter
        self._by_entity: dict[EntityKey, list[SignedAttestation]] = {}
        self._by_id: dict[tuple[str, str, bytes, int, int], SignedAttestation] = {}
        self._per_key: Counter[tuple[str, str, bytes, int]] = Counter()
        self._member_entities: dict[str, set[EntityKey]] = {}
        self._proofs: dict[str, EquivocationProof] = {}
        self._current: dict[EntityKey, Verdict] = {}
        self._wakeups: list[tuple[int, str, bytes]] = []
        self._buckets: dict[str, tuple[float, int]] = {}
        self._votes: dict[tuple[int, str], tuple[bytes, bytes]] = {}
        self._n = 0
        for raw, votes in chain.updates():
            self._note_votes(raw, votes)

    # -- queries ---------------------------------------------------------

    def attestations(self) -> Iterator[SignedAttestation]:
        for atts in self._by_entity.values():
            yield from atts

    def proofs(self) -> tuple[EquivocationProof, ...]:
        return tuple(self._proofs.values())

    def equivocators(self) -> frozenset[str]:
        return frozenset(self._proofs)

    def verdict(self, entity_kind: str, entity: bytes, now_us: int) -> Verdict:
        """The verdict at ``now_us`` (pure recomputation over this entity's statements)."""
        return self._derive((entity_kind, entity), now_us)

    def current(self) -> dict[EntityKey, Verdict]:
        """Verdicts as of the last input or :meth:`tick` (levels other than ``none``)."""
        return {k: v for k, v in self._current.items() if v.level != "none"}

    # -- inputs ----------------------------------------------------------

    def receive_attestation(self, data: bytes, now_us: int) -> list[Output]:
        """A gossiped attestation envelope (verified against the roster tip)."""
        try:
            sa = open_attestation(data, self.chain.tip)
        except ConsensusError as e:
            self.counters[f"rejected:{e.reason}"] += 1
            raise
        return self.add_attestation(sa, now_us)

    def add_attestation(self, sa: SignedAttestation, now_us: int) -> list[Output]:
        """Store a verified statement (own statements enter here too)."""
        b = sa.body
        prev = self._by_id.get(b.key)
        if prev is not None and prev.raw == sa.raw:
            self.counters["duplicate"] += 1
            raise ConsensusError("duplicate", "statement already held")
        if self.policy.expires_at(b.window) <= now_us:
            self.counters["stale"] += 1
            raise ConsensusError("stale", f"window {b.window} has expired")
        if b.window > self.policy.window_of(now_us) + 1:
            self.counters["future"] += 1
            raise ConsensusError("future", f"window {b.window} is too far ahead")
        if b.member_id in self._proofs:
            self.counters["equivocator"] += 1
            raise ConsensusError("known", f"{b.member_id!r} is a proven equivocator")
        if prev is not None:  # same identity, different bytes: equivocation
            proof = attestation_equivocation(prev, sa)
            assert proof is not None
            return self._add_proof(proof, now_us)
        pk = (b.member_id, b.entity_kind, b.entity, b.window)
        if (
            self._per_key[pk] >= self.limits.max_statements_per_key
            or self._n >= self.limits.max_statements
        ):
            self.counters["rate-limited"] += 1
            raise ConsensusError("rate-limited", f"too many statements of {b.member_id!r}")
        self._take_token(b.member_id, now_us)
        self._per_key[pk] += 1
        self._n += 1
        self._by_id[b.key] = sa
        ek = (b.entity_kind, b.entity)
        self._by_entity.setdefault(ek, []).append(sa)
        self._member_entities.setdefault(b.member_id, set()).add(ek)
        self.counters["accepted"] += 1
        return self._refresh(ek, now_us)

    def receive_proof(self, data: bytes, now_us: int) -> list[Output]:
        """A gossiped equivocation proof envelope."""
        try:
            _, proof = open_proof(data, self.chain)
        except ConsensusError as e:
            self.counters[f"rejected:{e.reason}"] += 1
            raise
        if proof.member_id in self._proofs:
            raise ConsensusError("known", f"{proof.member_id!r} already proven")
        return self._add_proof(proof, now_us, republish=False)

    def receive_roster_update(self, data: bytes, now_us: int) -> list[Output]:
        """A gossiped roster update: adopt it if it extends the tip with 2f+1 votes."""
        raw, votes = decode_update(data)
        base = self.chain.base_of(raw)
        if base is None:
            raise ConsensusError("future", "roster update does not build on a known version")
        counted = {
            m: s for m, s in votes.items() if (mem := base.member(m)) is not None
            and _vote_ok(mem.public_key, base.network, raw, s)
        }  # fmt: skip
        out: list[Output] = []
        for member_id, sig in counted.items():
            out += self._note_votes(raw, {member_id: sig}, base.version, now_us)
        if base.hash != self.chain.tip.hash:
            if not out:
                raise ConsensusError("known", "roster update for a superseded version")
            return out
        self.chain.extend(raw, votes)
        out.append(Publish(TOPIC_ROSTER, data))
        for ek in list(self._by_entity):
            out += self._refresh(ek, now_us)
        return out

    def tick(self, now_us: int) -> list[Output]:
        """Apply the passage of time: expiries, windows opening, pruning."""
        out: list[Output] = []
        while self._wakeups and self._wakeups[0][0] <= now_us:
            _, kind, entity = heapq.heappop(self._wakeups)
            ek = (kind, entity)
            if ek in self._by_entity:
                out += self._refresh(ek, now_us)
        return out

    # -- internals -------------------------------------------------------

    def _derive(self, ek: EntityKey, now_us: int) -> Verdict:
        atts = self._by_entity.get(ek, [])
        members = {a.body.member_id for a in atts}
        proofs = [p for m, p in self._proofs.items() if m in members]
        return derive_verdict(ek[0], ek[1], atts, self.chain, proofs, now_us, self.policy)

    def _refresh(self, ek: EntityKey, now_us: int) -> list[Output]:
        p = self.policy
        atts = [a for a in self._by_entity[ek] if p.expires_at(a.body.window) > now_us]
        if not atts:  # prune everything expired about this entity
            for a in self._by_entity.pop(ek):
                b = a.body
                self._by_id.pop(b.key, None)
                self._per_key.pop((b.member_id, b.entity_kind, b.entity, b.window), None)
                self._n -= 1
            old = self._current.pop(ek, None)
            if old is not None and old.level != "none":
                return [VerdictChanged(old.level, self._derive(ek, now_us))]
            return []
        v = self._derive(ek, now_us)
        nxt = min(
            p.starts_at(a.body.window) if p.starts_at(a.body.window) > now_us
            else p.expires_at(a.body.window)
            for a in atts
        )  # fmt: skip
        heapq.heappush(self._wakeups, (nxt, ek[0], ek[1]))
        old = self._current.get(ek)
        self._current[ek] = v
        old_level: Level = "none" if old is None else old.level
        if old_level != v.level or (
            old is not None and old.window != v.window and v.level != "none"
        ):
            return [VerdictChanged(old_level, v)]
        return []

    def _add_proof(
        self, proof: EquivocationProof, now_us: int, *, republish: bool = True
    ) -> list[Output]:
        member = proof.member_id
        if member in self._proofs:
            return []
        self._proofs[member] = proof
        self.counters["equivocation"] += 1
        out: list[Output] = []
        if self._reporter is not None and republish:
            out.append(Publish(TOPIC_PROOFS, seal_proof(proof, *self._reporter)))
        for ek in list(self._member_entities.get(member, ())):
            if ek in self._by_entity:
                out += self._refresh(ek, now_us)
        return out

    def _note_votes(
        self, raw: bytes, votes: dict[str, bytes], base_version: int | None = None, now_us: int = 0
    ) -> list[Output]:
        if base_version is None:
            base = self.chain.base_of(raw)
            if base is None:
                return []
            base_version = base.version
        out: list[Output] = []
        for member_id, sig in votes.items():
            prev = self._votes.setdefault((base_version, member_id), (raw, sig))
            proof = vote_equivocation(self.chain.tip.network, member_id, prev, (raw, sig))
            if proof is not None:
                out += self._add_proof(proof, now_us)
        return out

    def _take_token(self, member_id: str, now_us: int) -> None:
        lim = self.limits
        tokens, last = self._buckets.get(member_id, (lim.burst, now_us))
        tokens = min(lim.burst, tokens + (now_us - last) * lim.rate_per_s / 1e6)
        if tokens < 1.0:
            self.counters["rate-limited"] += 1
            self._buckets[member_id] = (tokens, now_us)
            raise ConsensusError("rate-limited", f"{member_id!r} exceeds {lim.rate_per_s}/s")
        self._buckets[member_id] = (tokens - 1.0, now_us)


def _vote_ok(public_key: bytes, network: str, raw: bytes, sig: bytes) -> bool:
    from .attestation import verify_cached

    return verify_cached(public_key, sig, b"roster-vote", network, raw)
