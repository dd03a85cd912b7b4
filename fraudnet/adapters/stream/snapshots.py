"""Periodic, coalesced snapshots of the feature state (one file per shard).

Never one write per card per transaction: every ``interval_s / shards``
seconds one shard's state (the entities whose key mod ``shards`` equals the
shard; :meth:`ModelScorer.snapshot_shard`) is encoded on the event loop --
between two batches, so the core is never entered concurrently -- and
written to ``<dir>/shard-<i>.fnstate`` in a worker thread (temporary file,
fsync, atomic rename). At start every shard file is merged back
(:meth:`ModelScorer.restore_shard`).

Why files and not a Faust changelog table: the embedded broker keeps data in
memory only (a changelog there does not survive the process) and drops
records beyond ~5 MiB per partition, which one shard value can approach. On a
real cluster the same per-shard blobs could go to a compacted topic; see
docs/operations.md.

Staleness: after a crash the state lacks at most the last ``interval_s`` of
transactions (their decisions are in the audit log and the de-dup store, so
they are not decided again). A damaged shard file is renamed
``*.corrupt`` and logged, and the node starts with that shard empty:
features degrade for a while, the node stays available.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from fraudnet.errors import FraudnetError

__all__ = ["FeatureSnapshots"]

log = logging.getLogger("fraudnet.snapshots")


class FeatureSnapshots:
    """Snapshot/restore of a stateful scorer's features; a no-op for a stateless one."""

    def __init__(self, scorer: Any, directory: Path, shards: int, interval_s: float = 10.0) -> None:
        self.scorer = scorer
        self.dir = directory
        self.shards = shards
        self.interval_s = interval_s
        self.enabled = hasattr(scorer, "snapshot_shard") and hasattr(scorer, "restore_shard")
        self._next = 0
        self.written = 0

    def path(self, shard: int) -> Path:
        return self.dir / f"shard-{shard}.fnstate"

    def restore(self) -> dict[str, int]:
        """Merge every shard file present; returns counts (cards, terminals, shards, corrupt)."""
        out = {"shards": 0, "cards": 0, "terminals": 0, "corrupt": 0}
        if not self.enabled:
            return out
        for shard in range(self.shards):
            p = self.path(shard)
            if not p.exists():
                continue
            try:
                cards, terms = self.scorer.restore_shard(p.read_bytes())
            except (FraudnetError, OSError, ValueError) as e:
                out["corrupt"] += 1
                bad = p.with_suffix(".corrupt")
                p.replace(bad)
                log.error("feature snapshot %s unusable (%s); moved to %s, shard starts empty",
                          p, e, bad.name)  # fmt: skip
                continue
            out["shards"] += 1
            out["cards"] += cards
            out["terminals"] += terms
        return out

    async def snapshot_next(self) -> None:
        """Encode the next shard (on the loop) and write it (in a thread)."""
        if not self.enabled:
            return
        shard = self._next
        self._next = (self._next + 1) % self.shards
        blob: bytes = self.scorer.snapshot_shard(shard, self.shards)
        await asyncio.to_thread(_write_atomic, self.path(shard), blob)
        self.written += 1

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
    tmp.replace(path)
