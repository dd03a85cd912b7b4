"""Durable de-duplication record: which transaction ids already have a decision.

A SQLite database (WAL mode) in the node directory, keyed by transaction
id, holding the outcome so that a re-sent transaction is answered with its
first decision instead of being decided again. It survives restarts; the
embedded broker does not, so after a crash this table (and the audit log)
is what guarantees "no transaction id is decided twice".

Rows older than ``retention_days`` (by decision time) are pruned by
:meth:`DedupStore.prune`; a transaction re-sent after that is decided
again, so senders must not retry older than the retention.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from fraudnet.errors import ConfigError

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
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS decided_at ON decided (decided_at_us)"
            )
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"{path}: de-duplication store unusable ({e})") from None
        self.path = path

    def seen_many(self, tx_ids: Sequence[str]) -> set[str]:
        """The subset of ``tx_ids`` that already has a decision."""
        found: set[str] = set()
        for i in range(0, len(tx_ids), _CHUNK):
            chunk = tx_ids[i : i + _CHUNK]
            q = "SELECT tx_id FROM decided WHERE tx_id IN ({})".format(",".join("?" * len(chunk)))
            found.update(row[0] for row in self._db.execute(q, chunk))
        return found

    def get(self, tx_id: str) -> tuple[str, float, int] | None:
        row = self._db.execute(
            "SELECT outcome, score, decided_at_us FROM decided WHERE tx_id = ?", (tx_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]), int(row[2]))

    def add_many(self, rows: Iterable[tuple[str, str, float, int, int, bytes, bytes]]) -> None:
        """Record (tx_id, outcome, score, decided_at_us, ts_us, card_ref, terminal_ref) rows.

        One SQLite transaction per call (call it once per batch).
        """
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR IGNORE INTO decided VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def lookup_entity(self, tx_id: str) -> tuple[int, bytes, bytes] | None:
        """(ts_us, card_ref, terminal_ref) of a decided transaction, for labels by tx id."""
        row = self._db.execute(
            "SELECT ts_us, card_ref, terminal_ref FROM decided WHERE tx_id = ?", (tx_id,)
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), bytes(row[2]))

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM decided").fetchone()[0])

    def prune(self, before_us: int) -> int:
        cur = self._db.execute("DELETE FROM decided WHERE decided_at_us < ?", (before_us,))
        return int(cur.rowcount)

    def close(self) -> None:
        self._db.close()
