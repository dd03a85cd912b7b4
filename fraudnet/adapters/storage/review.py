"""The review queue: transactions whose outcome is review (or step-up), for analysts.

One SQLite database per node directory (``review.sqlite``, WAL mode, so
the node appends while an analyst works the queue from the CLI):

* ``items`` -- one row per queued transaction (``tx_id`` primary key, so
  enqueuing is idempotent: a replayed batch never queues a transaction
  twice): pseudonymous card/terminal refs, amount, score, the decision's
  reason codes, the policy id, a JSON summary of the entity's recent
  history at decision time, and the resolution;
* ``label_outbox`` -- labels emitted by resolutions, written in the same
  SQLite transaction as the resolution, then delivered by
  :meth:`ReviewQueue.flush_labels` to a sink (the node's label path, or a
  JSON Lines file that ``POST /v1/labels`` accepts). A crash between the
  two leaves the label pending, never lost; delivery is at-least-once and
  the node de-duplicates labels per transaction.

Bounds: at most ``max_open`` open items; beyond that new items are
refused and counted (``refused_full``) so the node keeps deciding.
No raw card number is ever stored (refs are node-local pseudonyms).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from fraudnet.core.features.schema import FEATURE_NAMES
from fraudnet.core.policy.evaluate import REVIEW, STEP_UP
from fraudnet.core.policy.holder import EngineResult
from fraudnet.core.policy.inputs import PolicyInput
from fraudnet.core.records import TxRecord
from fraudnet.errors import InputError, UnavailableError

__all__ = [
    "LABEL_FOR",
    "REVIEW_DB",
    "ReviewItem",
    "ReviewQueue",
    "jsonl_label_sink",
    "open_review_queue",
    "review_items",
]

REVIEW_DB: Final = "review.sqlite"
LABEL_FOR: Final = {"fraud": "fraud", "genuine": "genuine"}
MAX_NOTE: Final = 1000
LabelSink = Callable[[Sequence[dict[str, Any]]], None]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS items (
  tx_id TEXT PRIMARY KEY,
  queued_at_us INTEGER NOT NULL,
  ts_us INTEGER NOT NULL,
  card_ref BLOB NOT NULL,
  terminal_ref BLOB NOT NULL,
  amount REAL NOT NULL,
  score REAL NOT NULL,
  action TEXT NOT NULL,
  reasons TEXT NOT NULL,
  policy_id TEXT NOT NULL,
  history TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'open',
  resolved_at_us INTEGER,
  analyst TEXT,
  note TEXT
);
CREATE INDEX IF NOT EXISTS items_status ON items(status, queued_at_us);
CREATE INDEX IF NOT EXISTS items_card ON items(card_ref, ts_us);
CREATE TABLE IF NOT EXISTS label_outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  tx_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  event_time_us INTEGER NOT NULL,
  sent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A transaction to review (what the node enqueues) or a stored one (what the CLI reads)."""

    tx_id: str
    ts_us: int
    card_ref: bytes
    terminal_ref: bytes
    amount: float
    score: float
    action: str
    reasons: tuple[str, ...]
    policy_id: str
    history: Mapping[str, float]
    queued_at_us: int = 0
    status: str = "open"
    resolved_at_us: int | None = None
    analyst: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id, "ts_us": self.ts_us, "card": self.card_ref.hex(),
            "terminal": self.terminal_ref.hex(), "amount": self.amount, "score": self.score,
            "action": self.action, "reasons": list(self.reasons), "policy_id": self.policy_id,
            "history": dict(self.history), "queued_at_us": self.queued_at_us,
            "status": self.status, "resolved_at_us": self.resolved_at_us,
            "analyst": self.analyst, "note": self.note,
        }  # fmt: skip


def _row(r: sqlite3.Row) -> ReviewItem:
    return ReviewItem(
        tx_id=r["tx_id"], ts_us=r["ts_us"], card_ref=bytes(r["card_ref"]),
        terminal_ref=bytes(r["terminal_ref"]), amount=r["amount"], score=r["score"],
        action=r["action"], reasons=tuple(json.loads(r["reasons"])), policy_id=r["policy_id"],
        history=json.loads(r["history"]), queued_at_us=r["queued_at_us"], status=r["status"],
        resolved_at_us=r["resolved_at_us"], analyst=r["analyst"], note=r["note"],
    )  # fmt: skip


class ReviewQueue:
    """The review queue of one node directory (see module docstring)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, max_open: int = 1_000_000) -> None:
        self.conn = conn
        self.path = path
        self.max_open = max_open

    def _bump(self, name: str, n: int) -> None:
        self.conn.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def enqueue_many(self, items: Sequence[ReviewItem], now_us: int) -> int:
        """Queue items (idempotent per ``tx_id``); returns how many were newly queued."""
        if not items:
            return 0
        with self.conn:
            open_n = self.conn.execute(
                "SELECT COUNT(*) FROM items WHERE status = 'open'"
            ).fetchone()[0]
            room = max(0, self.max_open - open_n)
            take, refused = items[:room], len(items) - min(room, len(items))
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO items(tx_id, queued_at_us, ts_us, card_ref, terminal_ref, "
                "amount, score, action, reasons, policy_id, history) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(it.tx_id, now_us, it.ts_us, it.card_ref, it.terminal_ref, float(it.amount),
                  float(it.score), it.action, json.dumps(list(it.reasons)), it.policy_id,
                  json.dumps({k: float(v) for k, v in it.history.items()})) for it in take],
            )  # fmt: skip
            added = self.conn.total_changes - before
            if refused:
                self._bump("refused_full", refused)
        return added

    def items(self, status: str = "open", limit: int = 50, offset: int = 0) -> list[ReviewItem]:
        """Items with ``status`` (open, fraud, genuine, all), oldest first."""
        if status == "all":
            q = "SELECT * FROM items ORDER BY queued_at_us, tx_id LIMIT ? OFFSET ?"
            args: tuple[Any, ...] = (limit, offset)
        else:
            q = "SELECT * FROM items WHERE status = ? ORDER BY queued_at_us, tx_id LIMIT ? OFFSET ?"
            args = (status, limit, offset)
        return [_row(r) for r in self.conn.execute(q, args)]

    def get(self, tx_id: str) -> ReviewItem:
        r = self.conn.execute("SELECT * FROM items WHERE tx_id = ?", (tx_id,)).fetchone()
        if r is None:
            raise InputError(f"{self.path}: no review item for transaction {tx_id!r}")
        return _row(r)

    def card_history(
        self, card_ref: bytes, *, exclude: str = "", limit: int = 20
    ) -> list[ReviewItem]:
        """Other queued/resolved items of the same card, newest first."""
        rows = self.conn.execute(
            "SELECT * FROM items WHERE card_ref = ? AND tx_id != ? ORDER BY ts_us DESC LIMIT ?",
            (card_ref, exclude, limit),
        )
        return [_row(r) for r in rows]

    def resolve(self, tx_id: str, verdict: str, *, analyst: str, note: str, now_us: int) -> None:
        """Resolve an open item as ``fraud`` or ``genuine`` and put its label in the outbox.

        :class:`InputError` if the item is unknown, already resolved or the verdict invalid.
        """
        if verdict not in LABEL_FOR:
            raise InputError(f"resolution must be fraud or genuine, not {verdict!r}")
        if len(note) > MAX_NOTE:
            raise InputError(f"note longer than {MAX_NOTE} characters")
        with self.conn:
            item = self.get(tx_id)
            cur = self.conn.execute(
                "UPDATE items SET status = ?, resolved_at_us = ?, analyst = ?, note = ? "
                "WHERE tx_id = ? AND status = 'open'",
                (verdict, now_us, analyst, note, tx_id),
            )
            if cur.rowcount != 1:
                raise InputError(f"transaction {tx_id!r} is already resolved ({item.status})")
            self.conn.execute(
                "INSERT INTO label_outbox(tx_id, kind, event_time_us) VALUES (?, ?, ?)",
                (tx_id, LABEL_FOR[verdict], now_us),
            )

    def flush_labels(self, sink: LabelSink, limit: int = 10_000) -> int:
        """Deliver pending labels to ``sink`` (``POST /v1/labels`` objects); mark them sent."""
        rows = self.conn.execute(
            "SELECT seq, tx_id, kind, event_time_us FROM label_outbox WHERE sent = 0 "
            "ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        if not rows:
            return 0
        sink([{"tx_id": r["tx_id"], "kind": r["kind"], "event_time_us": r["event_time_us"]}
              for r in rows])  # fmt: skip
        with self.conn:
            self.conn.executemany(
                "UPDATE label_outbox SET sent = 1 WHERE seq = ?", [(r["seq"],) for r in rows]
            )
        return len(rows)

    def counts(self) -> dict[str, int]:
        out = {"open": 0, "fraud": 0, "genuine": 0}
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM items GROUP BY status"):
            out[status] = n
        for name, v in self.conn.execute("SELECT name, value FROM counters"):
            out[name] = v
        out["labels_pending"] = self.conn.execute(
            "SELECT COUNT(*) FROM label_outbox WHERE sent = 0"
        ).fetchone()[0]
        return out


_FEATURE_SUMMARY: Final = (
    "CARD_NB_TX_1HOUR", "CARD_NB_TX_1DAY", "CARD_NB_TX_7DAY", "CARD_AVG_AMOUNT_30DAY",
    "CARD_DISTINCT_TERMINALS_1DAY", "CARD_SECS_SINCE_PREV", "TERM_RISK_7DAY_DELAY",
)  # fmt: skip


def review_items(
    records: Sequence[TxRecord],
    reasons: Sequence[tuple[str, ...]],
    engine: EngineResult,
    inp: PolicyInput,
) -> list[ReviewItem]:
    """The review items of a decided batch: every transaction whose live action is
    review or step_up, with a summary of the card's recent history (the velocity
    values of the live policy and, when the batch has features, the card's
    counts and mean amount)."""
    live = engine.live
    idx = np.flatnonzero((live.codes == REVIEW) | (live.codes == STEP_UP))
    cols = {n: i for i, n in enumerate(FEATURE_NAMES)}
    out = []
    for i in idx:
        k = int(i)
        hist: dict[str, float] = {}
        for vid, vals in engine.velocity.items():
            if not np.isnan(vals[k]):
                hist[f"velocity.{vid}"] = float(vals[k])
        if inp.features is not None:
            for name in _FEATURE_SUMMARY:
                hist[f"feature.{name}"] = float(inp.features[k, cols[name]])
        r = records[k]
        out.append(ReviewItem(
            tx_id=r.tx_id, ts_us=r.ts_us, card_ref=r.card_ref, terminal_ref=r.terminal_ref,
            amount=r.amount, score=float(inp.score[k]), action=live.action(k),
            reasons=tuple(reasons[k]), policy_id=live.policy_id, history=hist,
        ))  # fmt: skip
    return out


def jsonl_label_sink(path: Path) -> LabelSink:
    """A sink appending label objects to a JSON Lines file (``fraudnet ingest``-able labels)."""

    def sink(labels: Sequence[dict[str, Any]]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            for obj in labels:
                f.write(json.dumps(obj, separators=(",", ":")) + "\n")
            f.flush()

    return sink


@contextmanager
def open_review_queue(
    node_dir: Path, *, create: bool = True, max_open: int = 1_000_000
) -> Iterator[ReviewQueue]:
    """Open (creating if asked) the review queue of ``node_dir``."""
    path = node_dir / REVIEW_DB
    if not create and not path.exists():
        raise InputError(f"{path}: no review queue in this node directory")
    if not node_dir.is_dir():
        raise InputError(f"{node_dir}: not a directory")
    try:
        conn = sqlite3.connect(path, timeout=10.0, isolation_level="DEFERRED")
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
    except sqlite3.OperationalError as e:
        raise UnavailableError(f"{path}: cannot open the review queue ({e})") from None
    except sqlite3.DatabaseError as e:
        raise InputError(f"{path}: not a review queue database ({e})") from None
    try:
        yield ReviewQueue(conn, path, max_open)
    finally:
        conn.close()
