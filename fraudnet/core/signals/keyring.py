"""Network pseudonyms: the epoch-rotated network keyring and local linking.

An identifier leaves a node only as its network pseudonym::

    HMAC-SHA256(network_key[epoch], kind || 0x00 || canonical_id(kind, value))

(:func:`fraudnet.core.ids.pseudonym`). Rules of the keyring:

1. Epoch ``e`` is *current* from ``starts_at_us[e]`` until the next epoch
   starts; a node signs and pseudonymises with the current epoch only.
2. During the *grace period* (``grace_us`` after epoch ``e+1`` starts) both
   ``e`` and ``e+1`` are accepted on receipt; afterwards only ``e+1``.
3. Epochs whose start lies in the future are known but not yet accepted.

Because an entity has two pseudonyms during a grace period, a node links them
locally (:class:`PseudonymLinks`): when ingest sees the raw identifier it
records every accepted pseudonym under one stable *canonical* key (the first
one it linked), so per-entity windows built from received signals do not split
at a rotation. Links are node-local and never sent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fraudnet.core.ids import pseudonym as _pseudonym
from fraudnet.errors import ConfigError

__all__ = ["EpochKey", "NetworkKeyring", "PseudonymLinks"]

KEY_LEN = 32


@dataclass(frozen=True, slots=True)
class EpochKey:
    """The network key of one epoch and the time (µs since epoch) it becomes current."""

    epoch: int
    starts_at_us: int
    key: bytes

    def __repr__(self) -> str:  # never print key material
        return f"EpochKey(epoch={self.epoch}, starts_at_us={self.starts_at_us}, key=<redacted>)"


class NetworkKeyring:
    """Epoch keys plus the grace rule (see module docstring). Immutable after construction."""

    def __init__(
        self, keys: Sequence[EpochKey], grace_us: int, *, where: str = "network key"
    ) -> None:
        if not keys:
            raise ConfigError(f"{where}: no epoch keys")
        if grace_us < 0:
            raise ConfigError(f"{where}: grace period must be >= 0")
        ordered = sorted(keys, key=lambda k: k.epoch)
        for prev, nxt in itertools.pairwise(ordered):
            if prev.epoch == nxt.epoch:
                raise ConfigError(f"{where}: epoch {nxt.epoch} appears twice")
            if nxt.starts_at_us <= prev.starts_at_us:
                raise ConfigError(f"{where}: epoch {nxt.epoch} must start after epoch {prev.epoch}")
        for k in ordered:
            if len(k.key) != KEY_LEN:
                raise ConfigError(f"{where}: epoch {k.epoch} key must be {KEY_LEN} bytes")
            if k.epoch < 0:
                raise ConfigError(f"{where}: epoch numbers must be >= 0")
        self._keys = tuple(ordered)
        self._by_epoch = {k.epoch: k for k in ordered}
        self.grace_us = grace_us

    @property
    def epochs(self) -> tuple[int, ...]:
        return tuple(k.epoch for k in self._keys)

    def current(self, now_us: int) -> EpochKey:
        """The current epoch key; :class:`ConfigError` if no epoch has started yet."""
        cur = None
        for k in self._keys:
            if k.starts_at_us <= now_us:
                cur = k
        if cur is None:
            raise ConfigError("network key: no epoch has started yet (check the key file)")
        return cur

    def accepted_epochs(self, now_us: int) -> frozenset[int]:
        """Epochs a received signal may carry at ``now_us`` (rules 1-3)."""
        started = [k for k in self._keys if k.starts_at_us <= now_us]
        if not started:
            return frozenset()
        cur = started[-1]
        out = {cur.epoch}
        if len(started) >= 2 and now_us < cur.starts_at_us + self.grace_us:
            out.add(started[-2].epoch)
        return frozenset(out)

    def pseudonym(self, kind: str, value: str, now_us: int) -> tuple[int, bytes]:
        """``(epoch, 32-byte pseudonym)`` under the current epoch (what a node sends)."""
        k = self.current(now_us)
        return k.epoch, _pseudonym(k.key, kind, value)

    def pseudonyms(self, kind: str, value: str, now_us: int) -> tuple[tuple[int, bytes], ...]:
        """Pseudonyms under every accepted epoch, newest epoch first."""
        epochs = sorted(self.accepted_epochs(now_us), reverse=True)
        return tuple((e, _pseudonym(self._by_epoch[e].key, kind, value)) for e in epochs)


class PseudonymLinks:
    """Bounded local map ``(epoch, pseudonym) -> canonical key`` (see module docstring).

    When full, the oldest link is evicted (insertion order); an evicted
    pseudonym simply resolves to itself again.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        if capacity < 1:
            raise ConfigError("pseudonym links: capacity must be >= 1")
        self.capacity = capacity
        self._map: dict[tuple[int, bytes], bytes] = {}

    def __len__(self) -> int:
        return len(self._map)

    def link(self, pairs: Iterable[tuple[int, bytes]]) -> bytes:
        """Link the pseudonyms of one entity; return its canonical key."""
        items = list(pairs)
        if not items:
            raise ValueError("link needs at least one pseudonym")
        canonical = next((self._map[p] for p in items if p in self._map), items[-1][1])
        for p in items:
            if p not in self._map:
                if len(self._map) >= self.capacity:
                    del self._map[next(iter(self._map))]
                self._map[p] = canonical
        return canonical

    def resolve(self, epoch: int, pseudonym: bytes) -> bytes:
        """Canonical key of a received pseudonym (itself when never linked)."""
        return self._map.get((epoch, pseudonym), pseudonym)

    def snapshot(self) -> list[list[object]]:
        return [[e, p, c] for (e, p), c in self._map.items()]

    @classmethod
    def restore(cls, data: object, capacity: int = 1_000_000) -> PseudonymLinks:
        out = cls(capacity)
        if not isinstance(data, list):
            raise ValueError("pseudonym links snapshot must be a list")
        for row in data[-capacity:]:
            e, p, c = row
            if not (isinstance(e, int) and isinstance(p, bytes) and isinstance(c, bytes)):
                raise ValueError("pseudonym links snapshot: bad row")
            out._map[(e, p)] = c
        return out
