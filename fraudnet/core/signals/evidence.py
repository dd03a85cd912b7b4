"""Network evidence: what other members have signalled about an entity.

A bounded table ``(kind, canonical pseudonym) -> {member: (score_milli,
observed_at_us, expires_at_us)}`` fed by accepted signal envelopes. It
answers the network features of an entity at ``now``: how many *distinct
other* members flag it (a node's own signals, which GossipSub also delivers
to it, never count: evidence must stay independent), the highest score
among them, and when it was first flagged. Expired entries are ignored and
dropped lazily; beyond ``capacity`` entities the least recently updated is
evicted.

This table is the state of the model's network columns
(:mod:`fraudnet.core.features.network` reads it at decision time; ADR 0110).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from .codec import Signal

__all__ = ["EntityEvidence", "NetworkEvidence"]


@dataclass(frozen=True, slots=True)
class EntityEvidence:
    members: int
    max_score: float
    first_flag_us: int | None


NONE = EntityEvidence(0, 0.0, None)


@dataclass
class NetworkEvidence:
    own_member: str
    capacity: int = 1_000_000
    _table: OrderedDict[tuple[str, bytes], dict[str, tuple[int, int, int]]] = field(
        default_factory=OrderedDict
    )
    ignored_own: int = 0

    def __len__(self) -> int:
        return len(self._table)

    def add(self, signer: str, signal: Signal, canonical: bytes) -> None:
        """Record ``signal`` from ``signer`` (already validated) under ``canonical``."""
        if signer == self.own_member:
            self.ignored_own += 1
            return
        key = (signal.kind, canonical)
        entry = self._table.get(key)
        if entry is None:
            if len(self._table) >= self.capacity:
                self._table.popitem(last=False)
            entry = self._table[key] = {}
        else:
            self._table.move_to_end(key)
        prev = entry.get(signer)
        first = signal.observed_at_us if prev is None else min(prev[1], signal.observed_at_us)
        entry[signer] = (
            signal.score_milli,
            first,
            max(signal.expires_at_us, prev[2] if prev else 0),
        )

    def query(self, kind: str, canonical: bytes, now_us: int) -> EntityEvidence:
        entry = self._table.get((kind, canonical))
        if not entry:
            return NONE
        live = {m: v for m, v in entry.items() if v[2] > now_us}
        if len(live) != len(entry):
            if live:
                self._table[(kind, canonical)] = live
            else:
                del self._table[(kind, canonical)]
        if not live:
            return NONE
        return EntityEvidence(
            members=len(live),
            max_score=max(v[0] for v in live.values()) / 1000.0,
            first_flag_us=min(v[1] for v in live.values()),
        )
