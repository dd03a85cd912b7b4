"""The decision journal: what the feature state folded since its snapshots.

Theory of operation (see docs/adr/0510-crash-recovery.md):

1. When the runtime decides a batch it folds it into the feature state and,
   in the same step of the event loop (no ``await`` in between), appends one
   *intent* row here: the batch's fold inputs (pseudonymised keys, event
   time, amount, label), its decisions and the audit log position before
   them. Rows are numbered ``seq`` in fold order.
2. Once the audit log has the decisions on disk, the de-dup rows are
   inserted and the intent is *confirmed*, in one SQLite transaction
   (:meth:`~fraudnet.adapters.storage.dedup.DedupStore.add_many`).
3. A feature snapshot of a shard records the journal ``seq`` it covers
   (every batch folded before the snapshot has a ``seq <=`` it). Confirmed
   rows at or below the lowest covered ``seq`` of all shards are deleted.
4. At start, unconfirmed intents are settled first
   (:mod:`.journal_recovery`): their decisions are written to the audit log
   unless it already has them, then they are confirmed. So a transaction
   folded into the state before a crash is decided exactly once, even
   though nobody was told.
5. Then each shard is restored from its snapshot and the batches after its
   covered ``seq`` are folded again (never decided again), in ``seq`` order.

The journal lives in the de-dup database (same file, same transactions):
a transaction is in the de-dup table iff its journal intent is confirmed.
Rows hold keyed pseudonyms only (8-byte state keys, 16-byte references),
never a card number. Size: the batches of about one snapshot interval;
:meth:`Journal.truncate` enforces a hard bound.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fraudnet.core.ids import key64
from fraudnet.core.records import (
    REF_LEN,
    Decision,
    TxColumns,
    TxRecord,
    decode_decisions,
    encode_decisions,
)
from fraudnet.errors import InputError

__all__ = ["MAX_BATCH_TX", "Intent", "Journal", "decode_columns", "encode_columns"]

_MAGIC: Final = b"FNJ1"
_HEAD: Final = struct.Struct("<4sI")
#: a journal batch holds at most this many transactions (a decoder refuses more)
MAX_BATCH_TX: Final = 200_000
#: bytes per transaction of the fold columns: card key, terminal key, ts, amount, label
_ROW: Final = 8 + 8 + 8 + 8 + 1

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS journal ("
    " seq INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, path TEXT NOT NULL,"
    " audit_from INTEGER NOT NULL, n INTEGER NOT NULL, confirmed INTEGER NOT NULL,"
    " cols BLOB NOT NULL, decisions BLOB, trefs BLOB)"
)


def encode_columns(records: Sequence[TxRecord]) -> bytes:
    """The fold inputs of ``records`` (what :func:`~fraudnet.core.records.columns`
    gives the feature kernels), as little-endian arrays."""
    n = len(records)
    ck = np.fromiter((key64(r.card_ref) for r in records), dtype="<u8", count=n)
    tk = np.fromiter((key64(r.terminal_ref) for r in records), dtype="<u8", count=n)
    ts = np.fromiter((r.ts_us / 1e6 for r in records), dtype="<f8", count=n)
    amt = np.fromiter((r.amount for r in records), dtype="<f8", count=n)
    lab = np.fromiter((-1 if r.label is None else r.label for r in records), dtype="i1", count=n)
    return b"".join((_HEAD.pack(_MAGIC, n), ck.tobytes(), tk.tobytes(), ts.tobytes(),
                     amt.tobytes(), lab.tobytes()))  # fmt: skip


def decode_columns(blob: bytes, where: str) -> TxColumns:
    """Inverse of :func:`encode_columns`; :class:`InputError` naming ``where`` on damage."""
    if len(blob) < _HEAD.size:
        raise InputError(f"{where}: journal batch shorter than its header")
    magic, n = _HEAD.unpack_from(blob)
    if magic != _MAGIC:
        raise InputError(f"{where}: not a journal batch (magic {magic!r})")
    if n > MAX_BATCH_TX or len(blob) != _HEAD.size + n * _ROW:
        raise InputError(f"{where}: journal batch of {n} rows has {len(blob)} bytes")
    off = _HEAD.size

    def take(dtype: str, native: type[np.generic]) -> npt.NDArray[Any]:
        nonlocal off
        a = np.frombuffer(blob, dtype=dtype, count=n, offset=off).astype(native)
        off += n * np.dtype(dtype).itemsize
        return a

    ck, tk = take("<u8", np.uint64), take("<u8", np.uint64)
    ts, amt = take("<f8", np.float64), take("<f8", np.float64)
    lab = take("i1", np.int8)
    return TxColumns(
        card_key=ck, terminal_key=tk, ts_s=ts, amount=amt,
        mcc=np.full(n, -1, dtype=np.int32), channel=np.full(n, -1, dtype=np.int8), label=lab,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Intent:
    """An unconfirmed journal batch: decided and folded, not known to be audited."""

    seq: int
    path: str
    audit_from: int
    decisions: list[Decision]
    terminal_refs: list[bytes]


class Journal:
    """The ``journal`` table of the de-dup database (one connection, one thread)."""

    def __init__(self, db: sqlite3.Connection, where: str) -> None:
        self._db = db
        self.where = where
        db.execute(_SCHEMA)
        row = db.execute("SELECT max(seq), count(*), coalesce(sum(n), 0) FROM journal").fetchone()
        #: seq of the newest batch (0 = none yet); survives truncation through a
        #: sqlite_sequence-free rule: truncation always keeps the newest row
        self.last_seq = int(row[0] or 0)
        self.batches = int(row[1])
        self.tx = int(row[2])

    # -- writes (the caller owns the SQLite transaction) ------------------------------
    def insert_intent(
        self,
        decisions: Sequence[Decision],
        records: Sequence[TxRecord],
        path: str,
        audit_from: int,
    ) -> int:
        """Append one intent row; returns its seq."""
        if len(decisions) != len(records):
            raise InputError("journal: decisions and records differ in length")
        self.last_seq += 1
        self._db.execute(
            "INSERT INTO journal VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (self.last_seq, decisions[0].decided_at_us if decisions else 0, path, audit_from,
             len(records), encode_columns(records), encode_decisions(decisions),
             b"".join(r.terminal_ref for r in records)),
        )  # fmt: skip
        self.batches += 1
        self.tx += len(records)
        return self.last_seq

    def confirm(self, seq: int) -> None:
        """Mark ``seq`` audited (drops the decisions, keeps the fold inputs)."""
        self._db.execute(
            "UPDATE journal SET confirmed = 1, decisions = NULL, trefs = NULL WHERE seq = ?",
            (seq,),
        )

    # -- reads -------------------------------------------------------------------------
    def unconfirmed(self) -> list[Intent]:
        """Intents not confirmed (left by a crash), oldest first."""
        out = []
        for seq, path, audit_from, n, dec, trefs in self._db.execute(
            "SELECT seq, path, audit_from, n, decisions, trefs FROM journal"
            " WHERE confirmed = 0 ORDER BY seq"
        ):
            where = f"{self.where}: journal seq {seq}"
            decisions = decode_decisions(bytes(dec or b""))
            refs = bytes(trefs or b"")
            if len(decisions) != n or len(refs) != n * REF_LEN:
                raise InputError(f"{where}: intent of {n} has {len(decisions)} decisions")
            out.append(Intent(int(seq), str(path), int(audit_from), decisions,
                              [refs[i * REF_LEN:(i + 1) * REF_LEN] for i in range(n)]))  # fmt: skip
        return out

    def batches_between(
        self, after: int, upto: int | None = None
    ) -> Iterator[tuple[int, TxColumns]]:
        """Fold inputs of the batches with ``after < seq <= upto`` (all newer if None), in order."""
        hi = self.last_seq if upto is None else upto
        cur = self._db.execute(
            "SELECT seq, cols FROM journal WHERE seq > ? AND seq <= ? ORDER BY seq", (after, hi)
        )
        for seq, cols in cur:
            yield int(seq), decode_columns(bytes(cols), f"{self.where}: journal seq {seq}")

    def truncate(self, upto: int, max_tx: int | None = None) -> int:
        """Delete confirmed batches with ``seq <= upto``; with ``max_tx``, then also the
        oldest confirmed batches beyond that many transactions (state after a crash
        then lacks them: logged by the caller). The newest row is always kept, so
        ``last_seq`` survives a restart. Returns the batches deleted."""
        keep = self.last_seq
        self._db.execute("BEGIN")
        try:
            cur = self._db.execute(
                "DELETE FROM journal WHERE seq <= ? AND seq < ? AND confirmed = 1", (upto, keep)
            )
            deleted = int(cur.rowcount)
            if max_tx is not None:
                total = int(self._db.execute("SELECT coalesce(sum(n), 0) FROM journal")
                            .fetchone()[0])  # fmt: skip
                if total > max_tx:
                    cut = self._cut_for(total - max_tx, keep)
                    cur = self._db.execute(
                        "DELETE FROM journal WHERE seq <= ? AND seq < ? AND confirmed = 1",
                        (cut, keep),
                    )
                    deleted += int(cur.rowcount)
            row = self._db.execute("SELECT count(*), coalesce(sum(n), 0) FROM journal").fetchone()
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self.batches, self.tx = int(row[0]), int(row[1])
        return deleted

    def _cut_for(self, excess: int, keep: int) -> int:
        acc = 0
        for seq, n in self._db.execute(
            "SELECT seq, n FROM journal WHERE confirmed = 1 AND seq < ? ORDER BY seq", (keep,)
        ):
            acc += int(n)
            if acc >= excess:
                return int(seq)
        return keep - 1
