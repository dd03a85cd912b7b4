"""The decision journal: what the feature state folded since its snapshots.

Theory of operation (see docs/adr/0510-crash-recovery.md):

1. When the runtime decides a batch it folds it into the feature state and,
   in the same step of the event loop (no ``await`` in between), appends one
   *intent* row here: the batch's fold inputs (pseudonymised keys, event
   time, amount, label), its decisions and the audit log position before
   them. Rows are numbered ``seq`` in fold order.
2. Once the audit log has the decisions on disk (and they are acknowledged:
   the runtime keeps their ids as seen in memory meanwhile), the de-dup rows
   are inserted and the intent is *confirmed*, in one SQLite transaction
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
from typing import Final

import msgpack
import numpy as np
import numpy.typing as npt

from fraudnet.core.records import OUTCOMES, REF_LEN, Decision, TxColumns, TxRecord
from fraudnet.errors import InputError

__all__ = [
    "MAX_BATCH_TX", "Intent", "Journal", "JournalBatch", "decode_columns", "decode_decisions",
    "encode_columns", "encode_decisions",
]  # fmt: skip

_MAGIC: Final = b"FNJ2"
_DMAGIC: Final = b"FND1"
_HEAD: Final = struct.Struct("<4sI")
#: a journal batch holds at most this many transactions (a decoder refuses more)
MAX_BATCH_TX: Final = 200_000
#: bytes per transaction of the fold inputs: card ref, terminal ref, ts_us, amount, label
_ROW: Final = REF_LEN + REF_LEN + 8 + 8 + 1
_OUTCOME_CODE: Final = {o: i for i, o in enumerate(OUTCOMES)}

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS journal ("
    " seq INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, path TEXT NOT NULL,"
    " audit_from INTEGER NOT NULL, n INTEGER NOT NULL, confirmed INTEGER NOT NULL,"
    " cols BLOB NOT NULL, decisions BLOB)"
)


def encode_columns(records: Sequence[TxRecord]) -> bytes:
    """The fold inputs of ``records`` as little-endian arrays: card and terminal
    references (16 bytes; the state keys are their first 8, see
    :func:`~fraudnet.core.ids.key64`), event time (µs), amount, label (-1 unknown)."""
    n = len(records)
    cards = b"".join([r.card_ref for r in records])
    terms = b"".join([r.terminal_ref for r in records])
    if len(cards) != n * REF_LEN or len(terms) != n * REF_LEN:
        raise InputError("journal: a record's reference is not 16 bytes")
    ts = np.fromiter([r.ts_us for r in records], dtype="<i8", count=n)
    amt = np.fromiter([r.amount for r in records], dtype="<f8", count=n)
    lab = np.fromiter([-1 if r.label is None else r.label for r in records], dtype="i1", count=n)
    return b"".join((_HEAD.pack(_MAGIC, n), cards, terms, ts.tobytes(), amt.tobytes(),
                     lab.tobytes()))  # fmt: skip


@dataclass(frozen=True, slots=True)
class JournalBatch:
    """Decoded fold inputs of one batch (:func:`decode_columns`)."""

    card_refs: bytes
    terminal_refs: bytes
    ts_us: npt.NDArray[np.int64]
    amount: npt.NDArray[np.float64]
    label: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])

    def columns(self) -> TxColumns:
        """What :func:`~fraudnet.core.records.columns` gives the kernels for the batch."""
        n = len(self)
        return TxColumns(
            card_key=np.frombuffer(self.card_refs, dtype="<u8").reshape(n, 2)[:, 0].astype(
                np.uint64),
            terminal_key=np.frombuffer(self.terminal_refs, dtype="<u8").reshape(n, 2)[:, 0]
            .astype(np.uint64),
            ts_s=self.ts_us.astype(np.float64) / 1e6, amount=self.amount.astype(np.float64),
            mcc=np.full(n, -1, dtype=np.int32), channel=np.full(n, -1, dtype=np.int8),
            label=self.label.astype(np.int8),
        )  # fmt: skip


def decode_columns(blob: bytes, where: str) -> JournalBatch:
    """Inverse of :func:`encode_columns`; :class:`InputError` naming ``where`` on damage."""
    if len(blob) < _HEAD.size:
        raise InputError(f"{where}: journal batch shorter than its header")
    magic, n = _HEAD.unpack_from(blob)
    if magic != _MAGIC:
        raise InputError(f"{where}: not a journal batch (magic {magic!r})")
    if n > MAX_BATCH_TX or len(blob) != _HEAD.size + n * _ROW:
        raise InputError(f"{where}: journal batch of {n} rows has {len(blob)} bytes")
    o = _HEAD.size
    cards, terms = blob[o : o + n * REF_LEN], blob[o + n * REF_LEN : o + 2 * n * REF_LEN]
    o += 2 * n * REF_LEN
    ts = np.frombuffer(blob, dtype="<i8", count=n, offset=o).astype(np.int64)
    amt = np.frombuffer(blob, dtype="<f8", count=n, offset=o + 8 * n).astype(np.float64)
    lab = np.frombuffer(blob, dtype="i1", count=n, offset=o + 16 * n).astype(np.int8)
    if not (np.isfinite(amt).all() and (ts >= 0).all()):
        raise InputError(f"{where}: journal batch has a negative time or non-finite amount")
    return JournalBatch(cards, terms, ts, amt, lab)


def encode_decisions(decisions: Sequence[Decision]) -> bytes:
    """The decisions of a batch, column-wise (what settling needs to audit them).

    Card reference, event time and label are not repeated: they are in the fold
    inputs of the same row."""
    n = len(decisions)
    ids = [d.tx_id.encode() for d in decisions]
    reasons: dict[tuple[str, ...], int] = {}
    models: dict[str, int] = {}
    r_idx = np.fromiter([reasons.setdefault(d.reasons, len(reasons)) for d in decisions],
                        dtype="<u4", count=n)  # fmt: skip
    m_idx = np.fromiter([models.setdefault(d.model_id, len(models)) for d in decisions],
                        dtype="<u4", count=n)  # fmt: skip
    cols = (
        np.fromiter([len(i) for i in ids], dtype="<u4", count=n),
        np.fromiter([_OUTCOME_CODE[d.outcome] for d in decisions], dtype="u1", count=n),
        np.fromiter([d.score for d in decisions], dtype="<f8", count=n),
        np.fromiter([d.decided_at_us for d in decisions], dtype="<i8", count=n),
        np.fromiter([d.latency_us for d in decisions], dtype="<i8", count=n),
        r_idx, m_idx,
    )  # fmt: skip
    tables: bytes = msgpack.packb([list(reasons), list(models)], use_bin_type=True)
    return b"".join((_HEAD.pack(_DMAGIC, n), *(c.tobytes() for c in cols),
                     struct.pack("<I", len(tables)), tables, b"".join(ids)))  # fmt: skip


def decode_decisions(blob: bytes, batch: JournalBatch, where: str) -> list[Decision]:
    """Inverse of :func:`encode_decisions` given the row's fold inputs."""
    try:
        magic, n = _HEAD.unpack_from(blob)
        if magic != _DMAGIC or n != len(batch):
            raise ValueError(f"magic {magic!r}, {n} decisions for {len(batch)} rows")
        o = _HEAD.size
        out_cols = []
        for dtype in ("<u4", "u1", "<f8", "<i8", "<i8", "<u4", "<u4"):
            size = np.dtype(dtype).itemsize * n
            out_cols.append(np.frombuffer(blob, dtype=dtype, count=n, offset=o))
            o += size
        (tlen,) = struct.unpack_from("<I", blob, o)
        o += 4
        reasons, models = msgpack.unpackb(blob[o : o + tlen], raw=False, max_array_len=1 << 20)
        o += tlen
        lens, outc, score, dec_at, lat, r_idx, m_idx = (c.tolist() for c in out_cols)
        ids_blob = blob[o:]
        if sum(lens) != len(ids_blob):
            raise ValueError("transaction ids do not match their lengths")
        out: list[Decision] = []
        p = 0
        ts, lab = batch.ts_us.tolist(), batch.label.tolist()
        for i in range(n):
            tx_id = ids_blob[p : p + lens[i]].decode()
            p += lens[i]
            out.append(Decision(
                tx_id, batch.card_refs[i * REF_LEN : (i + 1) * REF_LEN], OUTCOMES[outc[i]],
                float(score[i]), tuple(str(x) for x in reasons[r_idx[i]]), str(models[m_idx[i]]),
                int(ts[i]), int(dec_at[i]), int(lat[i]), None if lab[i] < 0 else int(lab[i]),
            ))  # fmt: skip
        return out
    except (ValueError, IndexError, TypeError, struct.error, UnicodeDecodeError,
            msgpack.UnpackException) as e:  # fmt: skip
        raise InputError(f"{where}: journal decisions unreadable ({e})") from None


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
        cols = {row[1] for row in db.execute("PRAGMA table_info(journal)")}
        if "trefs" in cols:  # a pre-release layout (FNJ1 rows): nothing to keep
            db.execute("DROP TABLE journal")
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
        seq = self.last_seq + 1
        self._db.execute(
            "INSERT INTO journal VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
            (seq, decisions[0].decided_at_us if decisions else 0, path, audit_from,
             len(records), encode_columns(records), encode_decisions(decisions)),
        )  # fmt: skip
        self.last_seq = seq  # only once the row is in (the caller's transaction)
        self.batches += 1
        self.tx += len(records)
        return seq

    def confirm(self, seq: int) -> None:
        """Mark ``seq`` audited (drops the decisions, keeps the fold inputs)."""
        self._db.execute(
            "UPDATE journal SET confirmed = 1, decisions = NULL WHERE seq = ?",
            (seq,),
        )

    # -- reads -------------------------------------------------------------------------
    def unconfirmed(self) -> list[Intent]:
        """Intents not confirmed (left by a crash), oldest first."""
        out = []
        for seq, path, audit_from, cols, dec in self._db.execute(
            "SELECT seq, path, audit_from, cols, decisions FROM journal"
            " WHERE confirmed = 0 ORDER BY seq"
        ):
            where = f"{self.where}: journal seq {seq}"
            batch = decode_columns(bytes(cols), where)
            decisions = decode_decisions(bytes(dec or b""), batch, where)
            refs = batch.terminal_refs
            trefs = [refs[i * REF_LEN : (i + 1) * REF_LEN] for i in range(len(batch))]
            out.append(Intent(int(seq), str(path), int(audit_from), decisions, trefs))
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
            yield (
                int(seq),
                decode_columns(bytes(cols), f"{self.where}: journal seq {seq}").columns(),
            )

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
