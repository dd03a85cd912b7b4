"""The node's de-dup store checkpoints its WAL from a second connection, not in commits."""

from __future__ import annotations

from pathlib import Path

from fraudnet.adapters.storage.dedup import DedupStore


def _rows(start: int, n: int) -> list[tuple[str, str, float, int, int, bytes, bytes]]:
    return [(f"tx-{i:09d}-{(i * 7919) % 100_003:06d}", "allow", 0.1, 1_700_000_000_000_000 + i,
             1_700_000_000_000_000 + i, b"c" * 16, b"t" * 16) for i in range(start, start + n)]  # fmt: skip


def _wal_frames(store: DedupStore) -> int:
    # a checkpoint that copies nothing reports the WAL's size in frames without blocking
    assert store._ckpt_db is not None
    return int(store._ckpt_db.execute("PRAGMA wal_checkpoint(NOOP)").fetchone()[1])


def test_commits_leave_the_wal_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    store = DedupStore(path)
    store.defer_checkpoints()
    for k in range(60):  # far beyond the 1,000 pages at which a commit would checkpoint
        store.add_many(_rows(k * 1000, 1000))
    frames = _wal_frames(store)
    assert frames > 2000  # with checkpoints in commits it stays under ~1,000 (820 here)
    log_frames, done = store.checkpoint()
    assert log_frames == done == frames  # everything copied, nothing waited for
    store.add_many(_rows(60_000, 10))  # the next writer starts the WAL over
    assert _wal_frames(store) < frames
    store.close()
    again = DedupStore(path)
    assert again.count() == 60_010
    assert again.seen_many(["tx-000059999-" + f"{(59999 * 7919) % 100_003:06d}"])
    again.close()


def test_checkpoint_without_deferring_is_a_no_op(tmp_path: Path) -> None:
    store = DedupStore(tmp_path / "d.sqlite")
    store.add_many(_rows(0, 10))
    assert store.checkpoint() == (0, 0)
    store.close()
