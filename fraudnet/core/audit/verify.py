"""Streaming verification of an audit log: names the first bad record and why.

The caller (an adapter) drives a :class:`LogVerifier` segment by segment in
``first_seq`` order::

    v = LogVerifier(public_key, network_id)
    for each segment:
        v.begin_segment(name, sidecar_bytes, is_last=...)
        for chunk in file: v.feed(chunk)         # any chunk size
        v.end_segment()
    report = v.finish()

Memory is bounded by one frame (256 KiB) plus one chunk plus one sidecar.

Rules, checked in log order; the first failure is the reported damage:

1. A frame with a bad length or CRC, a payload that is not a record, or a
   body that is not a record array -> ``modified`` at that record.
2. Record ``seq`` must equal its position ``p``. If it is larger, the rest
   of the log is scanned for ``p``: found -> ``reordered``, else ``deleted``.
   If it is smaller -> ``reordered``.
3. Record ``p``'s ``prev`` must be the leaf hash of record ``p - 1``;
   otherwise record ``p - 1`` was ``modified`` (its bytes no longer match
   the chain).
4. Each checkpoint must verify with the trusted key (``bad_signature``) and,
   when the tree reaches its size, its root must equal the recomputed root
   (``modified``: with the chain intact the last record before it changed,
   or the records after the previous good checkpoint were rewritten).
5. A checkpoint claiming more records than are present, or a segment that
   ends inside a frame while checkpoints claim it, is ``truncated``. A
   final partial frame that no checkpoint covers is a torn write from a
   crash: reported as a note (recovery removes it), not as damage.
6. A segment header must agree with the state the previous segment left
   (first seq, prev leaf, frontier) and carry a valid boundary checkpoint.
   When the oldest online segment does not start at 0 (retention), its
   header frontier is trusted only because that checkpoint verifies.

A missing middle segment shows as ``deleted`` records (or ``truncated``
when the previous segment's checkpoints still claim them). Tail deletion is
indistinguishable from truncation and is reported as ``truncated``.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from typing import Final, Literal

import msgpack

from fraudnet.errors import InputError, IntegrityError

from .checkpoint import Checkpoint, open_checkpoint
from .framing import RECORD_HEAD, ZERO_HASH, split_frames
from .merkle import Frontier
from .segment import CKP_MAGIC, SegmentHeader, decode_header

__all__ = ["Damage", "DamageKind", "LogVerifier", "VerifyReport"]

DamageKind = Literal["modified", "deleted", "reordered", "truncated", "bad_signature"]
_HEAD_SIZE: Final = RECORD_HEAD.size


@dataclass(frozen=True, slots=True)
class Damage:
    """The first damage found: its kind, the first bad record (if one can be named), where."""

    kind: DamageKind
    record: int | None
    where: str
    detail: str

    def __str__(self) -> str:
        rec = f"record {self.record}" if self.record is not None else "log"
        return f"{rec} {self.kind} ({self.where}): {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    records: int = 0
    segments: int = 0
    checkpoints: int = 0
    expired: int = 0
    last_checkpoint: Checkpoint | None = None
    damage: Damage | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.damage is None


@dataclass(slots=True)
class _PendingCkp:
    size: int
    signed: bytes
    where: str


class LogVerifier:
    """Sans-IO verifier state machine (see module docstring)."""

    def __init__(self, public_key: bytes, network_id: str) -> None:
        self.public_key = public_key
        self.network_id = network_id
        self.report = VerifyReport()
        self._frontier = Frontier()
        self._prev = ZERO_HASH
        self._started = False
        self._seg = ""
        self._seg_offset = 0
        self._is_last = False
        self._buf = bytearray()
        self._header_done = False
        self._pending: list[_PendingCkp] = []
        self._good_size = 0  # size of the last checkpoint that verified
        self._scan_for: int | None = None  # rule 2 look-ahead: the missing seq
        self._scan_found_at = -1
        self._scan_where = ""

    # -- driving ---------------------------------------------------------

    @property
    def done(self) -> bool:
        """True when further input cannot change the report."""
        return self.report.damage is not None and self._scan_for is None

    def begin_segment(self, name: str, sidecar: bytes, *, is_last: bool) -> None:
        self._seg, self._is_last = name, is_last
        self._buf.clear()
        self._seg_offset = 0
        self._header_done = False
        self._pending = []
        if self.done:
            return
        self.report.segments += 1
        if self._scan_for is not None:
            return
        ckp = name[:-4] + ".ckp"
        if not sidecar.startswith(CKP_MAGIC):
            self._damage("modified", None, ckp, "checkpoint file has a bad magic or is empty")
            return
        frames, _, problem = split_frames(sidecar, len(CKP_MAGIC))
        last = -1
        for i, (_, signed) in enumerate(frames):
            size = int.from_bytes(signed[37:45], "big") if len(signed) >= 45 else -1
            where = f"{ckp} #{i}"
            if size < last:
                self._damage("reordered", size, where, f"checkpoint size {size} after {last}")
                return
            last = size
            self._pending.append(_PendingCkp(size, signed, where))
        if problem is not None:
            if problem.reason == "incomplete" and is_last:
                self.report.notes.append(
                    f"{ckp}: torn final checkpoint at byte {problem.offset} (crash before "
                    "it was complete; removed on the next open)"
                )
            else:
                where = f"{ckp}@{problem.offset}"
                self._damage("modified", None, where, f"checkpoint frame {problem.reason}")

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        self._buf += chunk
        if not self._header_done:
            try:
                header, n = decode_header(bytes(self._buf))
            except InputError as e:
                if "incomplete" in str(e) and len(self._buf) < 1 << 20:
                    return  # wait for more bytes (end_segment reports a cut header)
                if self._scan_for is not None:
                    self._scan_for_end("an unreadable segment header")
                else:
                    self._damage("modified", self._frontier.size, f"{self._seg} header", str(e))
                return
            del self._buf[:n]
            self._seg_offset = n
            self._header_done = True
            if self._scan_for is None:
                self._check_header(header)
            if self.done:
                return
        self._consume()

    def end_segment(self) -> None:
        if self.done:
            return
        where = f"{self._seg}@{self._seg_offset}"
        if not self._header_done:
            if self._scan_for is None:
                self._damage("truncated", self._frontier.size, self._seg, "segment header cut")
            return
        if self._scan_for is not None:
            return
        p = self._frontier.size
        claimed = [c for c in self._pending if c.size > p]
        if self._buf:
            if self._length_damaged(p):
                self._damage("modified", p, where, "frame length field altered")
            elif claimed or not self._is_last:
                self._damage("truncated", p, where, "segment ends inside this record's frame")
            else:
                self.report.notes.append(
                    f"{where}: torn final record {p} ({len(self._buf)} bytes, never acknowledged; "
                    "removed on the next open)"
                )
            if self.done:
                return
        if claimed:
            c = claimed[0]
            self._damage(
                "truncated", p, c.where, f"checkpoint signed for {c.size} records, only {p} present"
            )

    def finish(self) -> VerifyReport:
        if self._scan_for is not None:
            missing, seen = self._scan_for, self._scan_found_at
            self._scan_for = None
            self._damage(
                "deleted", missing, self._scan_where,
                f"record {missing} is missing (record {seen} found in its place)",
            )  # fmt: skip
        self.report.records = self._frontier.size
        if self.report.segments == 0 and self.report.damage is None:
            self.report.notes.append("log has no segments")
        return self.report

    # -- internals -------------------------------------------------------

    def _damage(self, kind: DamageKind, record: int | None, where: str, detail: str) -> None:
        if self.report.damage is None:
            self.report.damage = Damage(kind, record, where, detail)

    def _open(self, signed: bytes, where: str, record: int | None) -> Checkpoint | None:
        try:
            cp = open_checkpoint(signed, self.public_key, self.network_id)
        except IntegrityError as e:
            self._damage("bad_signature", record, where, str(e))
            return None
        self.report.checkpoints += 1
        last = self.report.last_checkpoint
        if last is None or cp.tree_size >= last.tree_size:
            self.report.last_checkpoint = cp
        return cp

    def _check_header(self, h: SegmentHeader) -> None:
        where = f"{self._seg} header"
        f = self._frontier
        if not self._started:
            self._started = True
            if h.first_seq > 0:
                self.report.expired = h.first_seq
                self.report.notes.append(
                    f"records 0..{h.first_seq - 1} are no longer online (retention); "
                    f"verification starts from the signed checkpoint at {h.first_seq}"
                )
            self._frontier = f = h.frontier.copy()
            self._prev = h.prev_leaf
            if h.first_seq == 0 and (h.prev_leaf != ZERO_HASH or h.frontier.size):
                self._damage("modified", 0, where, "first segment header is not empty")
                return
        elif h.first_seq > f.size:
            self._damage("deleted", f.size, where, f"records {f.size}..{h.first_seq - 1} missing")
            return
        elif h.first_seq < f.size:
            self._damage("reordered", h.first_seq, where, f"segment restarts at {h.first_seq}")
            return
        elif h.prev_leaf != self._prev:
            self._damage("modified", f.size - 1, where, "header prev hash does not match")
            return
        elif h.frontier.hashes != f.hashes:
            self._damage("modified", f.size, where, "header tree state does not match")
            return
        cp = self._open(h.boundary, f"{where} boundary checkpoint", h.first_seq or None)
        if cp is None:
            return
        if cp.tree_size != h.first_seq or cp.root != f.root():
            self._damage("modified", h.first_seq, where, "boundary checkpoint does not match")
        else:
            self._good_size = max(self._good_size, cp.tree_size)

    def _consume(self) -> None:
        buf = self._buf
        frames, pos, problem = split_frames(buf)
        if frames:
            self._records(frames)
        if self.done:
            return
        if problem is not None and problem.reason != "incomplete":
            if self._scan_for is None:
                where = f"{self._seg}@{self._seg_offset + problem.offset}"
                self._damage("modified", self._frontier.size, where, f"frame {problem.reason}")
            else:
                self._scan_for_end("corrupt frame")
            return
        self._seg_offset += pos
        del buf[:pos]

    def _scan_for_end(self, why: str) -> None:
        missing = self._scan_for
        self._scan_for = None
        self._damage(
            "deleted", missing, self._scan_where, f"record {missing} is missing ({why} after it)"
        )

    def _records(self, frames: list[tuple[int, bytes]]) -> None:
        f = self._frontier
        sha = hashlib.sha256
        unpack = RECORD_HEAD.unpack_from
        unpackb = msgpack.unpackb
        pending = self._pending
        prev = self._prev
        base = self._seg_offset
        for off, payload in frames:
            if self._scan_for is not None:
                if len(payload) >= _HEAD_SIZE and unpack(payload)[1] == self._scan_for:
                    missing, self._scan_for = self._scan_for, None
                    self._damage(
                        "reordered", missing, self._scan_where,
                        f"record {self._scan_found_at} found where {missing} belongs; "
                        f"{missing} is later, at {self._seg}@{base + off}",
                    )  # fmt: skip
                    return
                continue
            p = f.size
            where = f"{self._seg}@{base + off}"
            if len(payload) < _HEAD_SIZE or payload[0] != 1:
                self._damage("modified", p, where, "not a record payload")
                return
            _, seq, link = unpack(payload)
            if seq != p:
                if seq > p:
                    self._scan_for, self._scan_found_at, self._scan_where = p, seq, where
                    continue
                self._damage("reordered", p, where, f"record {seq} found at position {p}")
                return
            if link != prev:
                self._damage("modified", p - 1, where, f"record {p - 1} does not match the hash "
                             f"chained by record {p}")  # fmt: skip
                return
            try:
                body = unpackb(payload[_HEAD_SIZE:], raw=False)
                if type(body) is not list or len(body) < 9 or body[0] != 1:
                    raise ValueError("shape")
            except Exception:
                self._damage("modified", p, where, "record body is not a valid record")
                return
            prev = sha(b"\x00" + payload).digest()
            f.append(prev)
            while pending and pending[0].size <= p + 1:
                c = pending.pop(0)
                if c.size == p + 1:
                    self._prev = prev
                    self._checkpoint(c)
                    if self.done:
                        return
        self._prev = prev

    def _checkpoint(self, c: _PendingCkp) -> None:
        cp = self._open(c.signed, c.where, self._good_size if c.size else None)
        if cp is None:
            return
        if cp.root != self._frontier.root():
            self._damage(
                "modified", c.size - 1, c.where,
                f"root differs from the checkpoint at {c.size} (record {c.size - 1} altered, or "
                f"records from {self._good_size} rewritten)",
            )  # fmt: skip
        else:
            self._good_size = c.size

    def _length_damaged(self, p: int) -> bool:
        """Is the leftover frame explained by an altered length rather than a cut?"""
        buf = bytes(self._buf)
        if len(buf) >= 8:
            n = struct.pack(">I", len(buf) - 8)
            if zlib.crc32(buf[8:], zlib.crc32(n)) == struct.unpack_from(">I", buf, 4)[0]:
                return True
        marker = b"\x01" + (p + 1).to_bytes(8, "big")
        i = buf.find(marker, 8)
        while i >= 8:
            frames, _, _ = split_frames(buf, i - 8, limit=1)
            if frames:
                return True
            i = buf.find(marker, i + 1)
        return False
