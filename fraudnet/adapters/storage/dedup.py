"""Durable de-duplication record: which transaction ids already have a decision.

A SQLite database (WAL mode) in the node directory, keyed by transaction
id, holding the outcome so that a re-sent transaction is answered with its
first decision instead of being decided again. It survives restarts; the
embedded broker does not, so after a crash this table (and the audit log)
is what guarantees "no transaction id is decided twice".

Rows older than ``retention_days`` (by decision time) are pruned by
:meth:`DedupStore.prune`; a transaction re-sent after that is decided
again, so senders must not retry older than the retention.

The same database holds the decision journal (:mod:`.journal`): the runtime
calls :meth:`DedupStore.intend` when it folds a batch into the feature
state, and :meth:`DedupStore.add_many` inserts the de-dup rows and confirms
that intent in one SQLite transaction. WAL mode with ``synchronous=NORMAL``:
a committed transaction survives a crash of the process (SIGKILL); after a
power loss the last commits may be rolled back, and the audit log (fsynced)
is then ahead of this table (docs/operations.md, "Crash safety").
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fraudnet.core.records import Decision, TxRecord
from fraudnet.errors import ConfigError

from . import journal_faults
from .journal import Intent, Journal

__all__ = ["DedupStore"]

_CHUNK = 500


class DedupStore:
    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS decided ("
                " tx_id TEXT PRIMARY KEY, outcome TEXT NOT NULL, score REAL NOT NULL,"
                " decided_at_us INTEGER NOT NULL, ts_us INTEGER NOT NULL,"
                " card_ref BLOB NOT NULL, terminal_ref BLOB NOT NULL) WITHOUT ROWID"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS decided_at ON decided (decided_at_us)")
            self.journal = Journal(self._db, str(path))
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"{path}: de-duplication store unusable ({e})") from None
        self.path = path
        #: one connection, used from the event loop and a writer thread: every
        #: transaction holds this lock (a statement inside another thread's
        #: BEGIN..COMMIT would join, or break, that transaction)
        self._lock = threading.RLock()
        #: the audit log's record count (set by the node); stored with each intent so
        #: that recovery reads the audit log only from there
        self.audit_size: Callable[[], int] = lambda: 0
        #: first tx id of a pending intent -> its journal seq
        self._intent_of: dict[str, int] = {}
        #: second connection that checkpoints the WAL (see :meth:`defer_checkpoints`)
        self._ckpt_db: sqlite3.Connection | None = None

    def intend(self, decisions: Sequence[Decision], records: Sequence[TxRecord], path: str) -> int:
        """Journal a batch just folded into the feature state (before its audit append).

        Call it in the same step of the event loop as the fold. Returns the seq."""
        if not decisions:
            return self.journal.last_seq
        audit_from = self.audit_size()
        with self._lock:
            seq_before = self.journal.last_seq
            self._db.execute("BEGIN")
            try:
                seq = self.journal.insert_intent(decisions, records, path, audit_from)
            except BaseException:
                self._db.execute("ROLLBACK")
                self.journal.last_seq = seq_before  # the row is not in
                raise
            self._db.execute("COMMIT")
            self._intent_of[decisions[0].tx_id] = seq
        journal_faults.hit("journal.intent")
        return seq

    def seen_many(self, tx_ids: Sequence[str]) -> set[str]:
        """The subset of ``tx_ids`` that already has a decision."""
        found: set[str] = set()
        with self._lock:
            for i in range(0, len(tx_ids), _CHUNK):
                chunk = tx_ids[i : i + _CHUNK]
                q = "SELECT tx_id FROM decided WHERE tx_id IN ({})".format(
                    ",".join("?" * len(chunk))
                )
                found.update(row[0] for row in self._db.execute(q, chunk))
        return found

    def get(self, tx_id: str) -> tuple[str, float, int] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT outcome, score, decided_at_us FROM decided WHERE tx_id = ?", (tx_id,)
            ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]), int(row[2]))

    def add_many(self, rows: Iterable[tuple[str, str, float, int, int, bytes, bytes]]) -> None:
        """Record (tx_id, outcome, score, decided_at_us, ts_us, card_ref, terminal_ref) rows.

        One SQLite transaction per call (call it once per batch); it also confirms the
        journal intent of the batch (:meth:`intend`) whose first tx id leads ``rows``.
        """
        self.add_batches([list(rows)])

    def add_batches(
        self, batches: Sequence[Sequence[tuple[str, str, float, int, int, bytes, bytes]]]
    ) -> None:
        """:meth:`add_many` for several batches in one SQLite transaction (each batch's
        rows, then its intent confirmed): fewer commits, and fewer WAL frames, since a page
        several batches change is written once."""
        journal_faults.hit("dedup.commit")
        with self._lock:
            seqs = [self._intent_of.pop(b[0][0], None) if b else None for b in batches]
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO decided VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [r for b in batches for r in b],
                )
                for seq in seqs:
                    if seq is not None:
                        self.journal.confirm(seq)
            except BaseException:
                self._db.execute("ROLLBACK")
                for b, seq in zip(batches, seqs, strict=True):
                    if seq is not None:
                        self._intent_of[b[0][0]] = seq
                raise
            self._db.execute("COMMIT")
        journal_faults.hit("dedup.committed")

    def settle(self, intent: Intent) -> None:
        """Recovery: insert the de-dup rows of an intent whose decisions are now in the
        audit log, and confirm it (one transaction)."""
        rows = [
            (d.tx_id, d.outcome, d.score, d.decided_at_us, d.ts_us, d.card_ref, t)
            for d, t in zip(intent.decisions, intent.terminal_refs, strict=True)
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO decided VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                )
                self.journal.confirm(intent.seq)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def truncate_journal(self, upto: int, max_tx: int | None = None) -> int:
        """Delete journal batches the feature snapshots cover (see :meth:`Journal.truncate`)."""
        with self._lock:
            return self.journal.truncate(upto, max_tx)

    def lookup_entity(self, tx_id: str) -> tuple[int, bytes, bytes] | None:
        """(ts_us, card_ref, terminal_ref) of a decided transaction, for labels by tx id."""
        with self._lock:
            row = self._db.execute(
                "SELECT ts_us, card_ref, terminal_ref FROM decided WHERE tx_id = ?", (tx_id,)
            ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), bytes(row[2]))

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM decided").fetchone()[0])

    def prune(self, before_us: int, chunk: int = 5000) -> int:
        """Delete the rows decided before ``before_us``; returns how many.

        In chunks of ``chunk`` rows, each its own short transaction, so the lock
        (and the event loop's lookups waiting on it) is never held for long.
        """
        total = 0
        while True:
            with self._lock:
                cur = self._db.execute(
                    "DELETE FROM decided WHERE tx_id IN (SELECT tx_id FROM decided"
                    " WHERE decided_at_us < ? LIMIT ?)", (before_us, chunk),
                )  # fmt: skip
                n = int(cur.rowcount)
            total += n
            if n < chunk:
                return total

    def defer_checkpoints(self) -> None:
        """Stop commits on this connection from checkpointing the WAL; :meth:`checkpoint`
        (from a worker thread) does it instead.

        By default the commit that takes the WAL past 1,000 pages copies it into the
        database and fsyncs it, inside that commit: on the node's event loop that was a
        10-15 ms stall every few dozen batches (de-dup insert of 24 rows into ~1 M: p50
        0.26 ms, p99 13 ms; without it p99 0.74 ms; ADR 0504)."""
        with self._lock:
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        if self._ckpt_db is None:
            self._ckpt_db = sqlite3.connect(str(self.path), isolation_level=None,
                                            check_same_thread=False)  # fmt: skip
            self._ckpt_db.execute("PRAGMA synchronous=NORMAL")

    def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database from the second connection, PASSIVE (never waits
        for or blocks the writer); returns (WAL frames, frames checkpointed). Only after
        :meth:`defer_checkpoints`; call it from one worker thread at a time."""
        if self._ckpt_db is None:
            return (0, 0)
        _busy, log_frames, done = self._ckpt_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(log_frames), int(done)

    def close(self) -> None:
        if self._ckpt_db is not None:
            self._ckpt_db.close()
            self._ckpt_db = None
        with self._lock:
            self._db.close()
