"""Periodic, coalesced snapshots of the feature state (one file per shard) + journal replay.

Never one write per card per transaction: every ``interval_s / shards``
seconds one shard's state (the entities whose key mod ``shards`` equals the
shard; :meth:`ModelScorer.snapshot_shard`) is encoded on the event loop --
between two batches, so the core is never entered concurrently -- and
written to ``<dir>/shard-<i>.fnstate`` in a worker thread (temporary file,
fsync, atomic rename). The same bytes also go to the changelog-backed Faust
table when one is attached (:mod:`.state_table`).

Each file starts with a header naming the journal position it covers
(:mod:`fraudnet.adapters.storage.journal`): the seq of the last batch folded
before the encode, read in the same loop step. Once a shard is on disk the
journal drops the batches every shard covers.

Restore (at start, after the journal's unconfirmed intents are settled):
shards are taken in order of the position they cover; before restoring a
shard, the journal batches between the previous shard's position and this
one's are folded again (:meth:`ModelScorer.features_many`: fold only, no
decision, no drift counts); after the last shard, every newer batch. Each
entity ends as "its shard's snapshot, then every later batch, once" -- the
state a crash-free run would hold (entity state depends only on the
entity's own transactions; restoring a shard overwrites whatever earlier
replays did to its entities). Proved by ``tests/integration/test_crash_*``.

A damaged shard file is renamed ``*.corrupt`` and logged; that shard
starts from the journal alone (which reaches back only to the oldest
covered position): features degrade for a while, the node stays available.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fraudnet.adapters.storage import journal_faults
from fraudnet.errors import FraudnetError, InputError

__all__ = ["FeatureSnapshots", "ShardSnapshot", "decode_snapshot", "encode_snapshot"]

log = logging.getLogger("fraudnet.snapshots")

_MAGIC: Final = b"FNSN"
_LEGACY: Final = b"FNSS"  # a bare core shard blob (files written before the header existed)
_HEAD: Final = struct.Struct("<4sHHIIQQ32s")
_VERSION: Final = 1
#: refuse shard snapshots larger than this (a corrupt length must not allocate)
MAX_SNAPSHOT_BYTES: Final = 1 << 31
#: journal transactions kept at most; beyond, the oldest are dropped (and logged)
MAX_JOURNAL_TX: Final = 2_000_000


@dataclass(frozen=True, slots=True)
class ShardSnapshot:
    """One shard's state blob and the journal position it covers."""

    shard: int
    n_shards: int
    covered: int
    written_at_us: int
    blob: bytes


_FIELDS: Final = struct.Struct("<4sHHIIQQ")  # the header without its digest


def encode_snapshot(s: ShardSnapshot) -> bytes:
    """Header (magic, version, shard, shard count, covered position, write time) +
    SHA-256 over the header fields and the blob + the blob."""
    fields = _FIELDS.pack(_MAGIC, _VERSION, 0, s.shard, s.n_shards, s.covered, s.written_at_us)
    return fields + hashlib.sha256(fields + s.blob).digest() + s.blob


def decode_snapshot(data: bytes, where: str) -> ShardSnapshot:
    """Parse :func:`encode_snapshot` bytes; :class:`InputError` naming ``where`` on damage
    (any changed byte, header or blob). A legacy file (a bare core blob) covers
    journal position 0."""
    if data[:4] == _LEGACY:
        return ShardSnapshot(-1, -1, 0, 0, data)
    if len(data) < _HEAD.size:
        raise InputError(f"{where}: shorter than a snapshot header")
    magic, version, _r, shard, n_shards, covered, at_us, digest = _HEAD.unpack_from(data)
    if magic != _MAGIC or version != _VERSION:
        raise InputError(f"{where}: not a feature snapshot (magic {magic!r}, version {version})")
    blob = data[_HEAD.size :]
    if hashlib.sha256(data[: _FIELDS.size] + blob).digest() != digest:
        raise InputError(f"{where}: checksum mismatch (torn or altered)")
    return ShardSnapshot(shard, n_shards, covered, at_us, blob)


class FeatureSnapshots:
    """Snapshot/restore of a stateful scorer's features; a no-op for a stateless one.

    ``store`` is the :class:`~fraudnet.adapters.storage.dedup.DedupStore` holding
    the journal (None: no journal, restore merges the shard files only).
    ``table`` is an optional :class:`~.state_table.StateTable`.
    """

    def __init__(
        self,
        scorer: Any,
        directory: Path,
        shards: int,
        interval_s: float = 10.0,
        *,
        store: Any = None,
        table: Any = None,
        max_journal_tx: int = MAX_JOURNAL_TX,
    ) -> None:
        self.scorer = scorer
        self.dir = directory
        self.shards = shards
        self.interval_s = interval_s
        self.store = store
        self.table = table
        self.max_journal_tx = max_journal_tx
        self.enabled = hasattr(scorer, "snapshot_shard") and hasattr(scorer, "restore_shard")
        self._next = 0
        self.written = 0
        #: journal position each shard's newest snapshot covers (0: none)
        self.covered = [0] * shards
        self._lock: asyncio.Lock | None = None

    def path(self, shard: int) -> Path:
        return self.dir / f"shard-{shard}.fnstate"

    # -- restore -----------------------------------------------------------------------
    def read_files(self) -> tuple[dict[int, ShardSnapshot], int]:
        """Usable shard files by shard, and how many were unusable (renamed ``*.corrupt``)."""
        found: dict[int, ShardSnapshot] = {}
        bad = 0
        for shard in range(self.shards):
            p = self.path(shard)
            try:
                if not p.exists():
                    continue
                if p.stat().st_size > MAX_SNAPSHOT_BYTES:
                    raise InputError(f"{p}: larger than {MAX_SNAPSHOT_BYTES} bytes")
                snap = decode_snapshot(p.read_bytes(), str(p))
                if snap.shard == -1:  # legacy: trust its name
                    snap = ShardSnapshot(shard, self.shards, 0, 0, snap.blob)
                if (snap.shard, snap.n_shards) != (shard, self.shards):
                    raise InputError(f"{p}: holds shard {snap.shard} of {snap.n_shards}, "
                                     f"this node uses {self.shards} shards")  # fmt: skip
            except (InputError, OSError) as e:
                bad += 1
                self._quarantine(p, str(e))
                continue
            found[shard] = snap
        return found, bad

    def _quarantine(self, p: Path, why: str) -> None:
        bad = p.with_suffix(".corrupt")
        with contextlib.suppress(OSError):
            p.replace(bad)
        log.error("feature snapshot %s unusable (%s); moved to %s, the shard starts from "
                  "the journal", p, why, bad.name)  # fmt: skip

    def restore(
        self, newer: Mapping[int, ShardSnapshot] | None = None, *, prefer_newer: bool = False
    ) -> dict[str, int]:
        """Restore every shard and re-fold the journal after it (see module docstring).

        ``newer``: snapshots from elsewhere (the Faust table) used instead of a
        shard's file when they cover a later position (always, with
        ``prefer_newer``). Returns counts.
        """
        out = {"shards": 0, "cards": 0, "terminals": 0, "corrupt": 0, "replayed_batches": 0,
               "replayed_tx": 0, "from_table": 0}  # fmt: skip
        if not self.enabled:
            return out
        snaps, out["corrupt"] = self.read_files()
        for shard, s in (newer or {}).items():
            if (
                0 <= shard < self.shards
                and s.n_shards == self.shards
                and (prefer_newer or shard not in snaps or s.covered > snaps[shard].covered)
            ):
                snaps[shard] = s
                out["from_table"] += 1
        journal = self.store.journal if self.store is not None else None
        order = sorted(range(self.shards), key=lambda i: snaps[i].covered if i in snaps else 0)
        done = 0
        for shard in order:
            snap = snaps.get(shard)
            upto = snap.covered if snap is not None else 0
            if journal is not None and upto > done:
                self._refold(journal, done, upto, out)
                done = upto
            if snap is None:
                continue
            try:
                cards, terms = self.scorer.restore_shard(snap.blob)
            except (FraudnetError, ValueError) as e:
                out["corrupt"] += 1
                self._quarantine(self.path(shard), str(e))
                continue
            self.covered[shard] = snap.covered
            out["shards"] += 1
            out["cards"] += cards
            out["terminals"] += terms
        if journal is not None:
            self._refold(journal, done, None, out)
        return out

    def adopt(self, newer: Mapping[int, ShardSnapshot]) -> dict[str, int] | None:
        """Rebuild the state when ``newer`` (the Faust table after recovery) has shards
        covering a later journal position than those restored; None if none is newer.

        Runs on the event loop (no decision interleaves); every batch decided since
        start is in the journal, so the rebuilt state is exact. A snapshot covering a
        position beyond this journal's newest comes from another journal (a lost or
        replaced disk): it counts as covering nothing here, so every local batch is
        re-folded after it.
        """
        if not self.enabled:
            return None
        journal = self.store.journal if self.store is not None else None
        last = journal.last_seq if journal is not None else 0
        better: dict[int, ShardSnapshot] = {}
        for shard, s in newer.items():
            if not (0 <= shard < self.shards and s.n_shards == self.shards):
                continue
            if s.covered > last:
                s = ShardSnapshot(s.shard, s.n_shards, 0, s.written_at_us, s.blob)
            if s.covered > self.covered[shard] or (s.covered == 0 and self.covered[shard] == 0):
                better[shard] = s
        if not better:
            return None
        state = self.scorer.state
        self.scorer.state = type(state)(state.config)  # rebuilt from scratch below
        self.covered = [0] * self.shards
        out = self.restore(newer=better, prefer_newer=True)
        log.warning("feature state rebuilt from the state table (newer than the files): %s", out)
        return out

    def _refold(self, journal: Any, after: int, upto: int | None, out: dict[str, int]) -> None:
        fold = getattr(self.scorer, "features_many", None)
        if fold is None:
            return
        for _seq, cols in journal.batches_between(after, upto):
            journal_faults.hit("restore.replay")
            fold(cols)
            out["replayed_batches"] += 1
            out["replayed_tx"] += len(cols)

    # -- snapshot ----------------------------------------------------------------------
    async def snapshot_next(self) -> None:
        """Encode the next shard (on the loop) and write it (in a thread)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # the timer and the final snapshot on stop never overlap
            await self._snapshot_next()

    async def _snapshot_next(self) -> None:
        journal = self.store.journal if self.store is not None else None
        if not self.enabled:
            if journal is not None:  # nothing to replay into: keep the journal short
                await asyncio.to_thread(self.store.truncate_journal, journal.last_seq)
            return
        shard = self._next
        self._next = (self._next + 1) % self.shards
        # the encode and the position it covers are read in the same loop step
        covered = journal.last_seq if journal is not None else 0
        blob: bytes = self.scorer.snapshot_shard(shard, self.shards)
        snap = ShardSnapshot(shard, self.shards, covered, time.time_ns() // 1000, blob)
        data = encode_snapshot(snap)
        await asyncio.to_thread(_write_atomic, self.path(shard), data)
        self.covered[shard] = covered
        self.written += 1
        if self.table is not None:
            try:
                self.table.publish(snap)
            except Exception as e:  # the file is the durable copy in every mode
                log.error("feature state table: publishing shard %d failed: %r", shard, e)
        if journal is not None:
            if journal.tx > self.max_journal_tx:
                log.error("journal bound reached (%d transactions): snapshots lag; the oldest "
                          "are dropped and a crash now loses them from the window state",
                          journal.tx)  # fmt: skip
            await asyncio.to_thread(self.store.truncate_journal, min(self.covered),
                                    self.max_journal_tx)  # fmt: skip

    async def snapshot_all(self) -> None:
        for _ in range(self.shards):
            await self.snapshot_next()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    journal_faults.hit("snapshot.write")
    tmp.replace(path)
    journal_faults.hit("snapshot.written")
