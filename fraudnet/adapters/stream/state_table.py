"""Feature-state shard snapshots as values of a changelog-backed Faust table.

The numpy arrays of :class:`~fraudnet.core.features.state.FeatureState` stay
the working form; what is durable is one value per *shard* of entities,
written once per snapshot tick (:mod:`.snapshots`), never one write per card
per transaction. Each value is the snapshot file's bytes
(:func:`~.snapshots.encode_snapshot`: header with the journal position it
covers + core shard blob + SHA-256), split into chunks of at most
``chunk_bytes`` (512 KiB: the embedded broker drops records beyond ~5 MiB
per partition, and a real cluster caps ``message.max.bytes`` at ~1 MiB by
default).

Keys (raw bytes):

* ``s/<shard>`` -- the manifest: JSON ``{"gen", "chunks", "size", "sha256"}``;
* ``c/<shard>/<gen>/<i>`` -- chunk ``i`` of generation ``gen``.

A generation's chunks are written before its manifest, and the previous
generation's chunks are deleted (tombstones) after it, so a compacted
changelog converges to one generation per shard and a reader that sees a
manifest finds its chunks (checked by size and digest; anything else is
ignored and the node keeps its file snapshot).

On a real Kafka cluster the table is recovered from its changelog when the
worker starts (Faust recovery); :class:`StateTable` then hands the shards to
:meth:`~.snapshots.FeatureSnapshots.adopt`, which rebuilds the state from
them when they cover a later journal position than the local files (a lost
or older disk). Against the embedded broker the changelog lives as long as
the process: the node does not attach the table there (see
docs/adr/0100-feature-state-design.md).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Callable
from typing import Any, Final

import faust

from fraudnet.errors import InputError

from .snapshots import ShardSnapshot, decode_snapshot, encode_snapshot

__all__ = ["CHUNK_BYTES", "MAX_CHUNKS", "StateTable"]

log = logging.getLogger("fraudnet.snapshots")

CHUNK_BYTES: Final = 512 * 1024
#: a manifest naming more chunks than this is refused (4 GiB at the default size)
MAX_CHUNKS: Final = 8192


class StateTable:
    """One Faust table ``<name>`` holding every shard's newest snapshot (see module doc)."""

    def __init__(
        self,
        app: Any,
        shards: int,
        *,
        name: str = "feature-state",
        chunk_bytes: int = CHUNK_BYTES,
        partitions: int | None = None,
    ) -> None:
        if not 1024 <= chunk_bytes <= 8 * 1024 * 1024:
            raise InputError(f"state table: chunk size {chunk_bytes} outside 1 KiB..8 MiB")
        self.shards = shards
        self.chunk_bytes = chunk_bytes
        n_parts = partitions or int(app.conf.topic_partitions)
        # bytes keys and values: Faust picks the "raw" codec for the changelog
        self.table = app.tables.add(
            _ShardTable(app, name=name, default=None, partitions=n_parts, key_type=bytes,
                        value_type=bytes, beacon=app.tables.beacon,
                        help="feature-state shard snapshots")
        )  # fmt: skip
        #: called with the recovered shards after each Faust recovery
        self.on_recovered: Callable[[dict[int, ShardSnapshot]], object] | None = None
        self.published = 0
        self.recoveries = 0
        self._gens: dict[int, tuple[int, int]] = {}  # shard -> (gen, chunks) last written
        self.table.on_recover(self._recovered)

    # -- write ---------------------------------------------------------------------
    def publish(self, snap: ShardSnapshot) -> int:
        """Write one shard snapshot (chunks, then manifest, then drop the previous
        generation's chunks). Returns the number of chunks. Runs on the event loop:
        every write is a changelog send through the app's producer."""
        data = encode_snapshot(snap)
        prev = self._gens.get(snap.shard)
        gen = snap.written_at_us
        if prev is not None and gen <= prev[0]:
            gen = prev[0] + 1
        n = max(1, -(-len(data) // self.chunk_bytes))
        if n > MAX_CHUNKS:
            raise InputError(f"state table: shard {snap.shard} needs {n} chunks (> {MAX_CHUNKS})")
        t = self.table
        size = self.chunk_bytes
        for i in range(n):
            t[_chunk_key(snap.shard, gen, i)] = data[i * size : (i + 1) * size]
        manifest = {"gen": gen, "chunks": n, "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip
        t[_manifest_key(snap.shard)] = json.dumps(manifest).encode()
        if prev is not None and prev[0] != gen:
            for i in range(prev[1]):
                key = _chunk_key(snap.shard, prev[0], i)
                if key in t:
                    del t[key]
        self._gens[snap.shard] = (gen, n)
        self.published += 1
        return n

    # -- read ----------------------------------------------------------------------
    def read(self) -> dict[int, ShardSnapshot]:
        """Every complete, intact shard snapshot in the table (damage is logged, skipped)."""
        out: dict[int, ShardSnapshot] = {}
        for shard in range(self.shards):
            raw = self.table.get(_manifest_key(shard))
            if raw is None:
                continue
            where = f"state table {self.table.name} shard {shard}"
            try:
                snap, gen, n = self._assemble(shard, bytes(raw), where)
            except InputError as e:
                log.error("%s unusable (%s); the node keeps its file snapshot", where, e)
                continue
            out[shard] = snap
            self._gens[shard] = (gen, n)
        return out

    def _assemble(self, shard: int, raw: bytes, where: str) -> tuple[ShardSnapshot, int, int]:
        try:
            m = json.loads(raw)
            gen, n, size, digest = int(m["gen"]), int(m["chunks"]), int(m["size"]), m["sha256"]
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{where}: bad manifest ({e})") from None
        if not 1 <= n <= MAX_CHUNKS or not 0 < size <= n * self.chunk_bytes:
            raise InputError(f"{where}: manifest of {n} chunks / {size} bytes out of range")
        parts = []
        for i in range(n):
            c = self.table.get(_chunk_key(shard, gen, i))
            if c is None:
                raise InputError(f"{where}: chunk {i} of generation {gen} missing")
            parts.append(bytes(c))
        data = b"".join(parts)
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise InputError(f"{where}: chunks do not match the manifest (size or digest)")
        snap = decode_snapshot(data, where)
        if snap.shard != shard:
            raise InputError(f"{where}: holds shard {snap.shard}")
        return snap, gen, n

    async def _recovered(self) -> None:
        self.recoveries += 1
        snaps = self.read()
        if snaps:
            log.info("feature state table recovered %d shard snapshot(s)", len(snaps))
        if self.on_recovered is not None:
            r = self.on_recovered(snaps)
            if inspect.isawaitable(r):
                await r


def _shard_of(key: bytes) -> int:
    """The shard a key belongs to (``s/<shard>`` or ``c/<shard>/...``)."""
    try:
        return int(key.split(b"/", 2)[1])
    except (IndexError, ValueError):
        return 0


class _ShardTable(faust.Table[bytes, bytes]):
    """A table whose changelog partition is ``shard mod partitions``, chosen here:
    writes happen outside any stream event (a snapshot timer), and the producer's own
    partitioner needs topic metadata the embedded broker has not created yet."""

    def partition_for_key(self, key: Any) -> int | None:
        return _shard_of(bytes(key)) % int(self.partitions or 1)


def _manifest_key(shard: int) -> bytes:
    return f"s/{shard}".encode()


def _chunk_key(shard: int, gen: int, i: int) -> bytes:
    return f"c/{shard}/{gen}/{i}".encode()
