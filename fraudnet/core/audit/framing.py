"""Framing of audit files: length + checksum frames and record payloads.

A *frame* is::

    u32 BE length | u32 BE crc32(length bytes || payload) | payload

The CRC catches torn writes and media corruption (it is not a security
measure: the Merkle tree and signed checkpoints are). A frame longer than
:data:`MAX_PAYLOAD` is corrupt by definition, so a damaged length field can
never make a reader allocate or skip an unbounded amount.

A *record payload* -- the exact bytes that are a Merkle leaf -- is::

    u8 version (1) | u64 BE seq | 32-byte prev | canonical body

``seq`` is the record's 0-based index in the log and ``prev`` the RFC 6962
leaf hash of record ``seq - 1`` (32 zero bytes for record 0). The hash chain
lets a verifier name the exact record that was altered even when the
alterer fixed the CRC; the fixed binary prefix lets it check order and
chain without decoding the body.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from fraudnet.errors import InputError

__all__ = [
    "FRAME_HEAD",
    "MAX_PAYLOAD",
    "RECORD_HEAD",
    "ZERO_HASH",
    "FrameProblem",
    "encode_frame",
    "parse_record_payload",
    "record_payload",
    "split_frames",
]

FRAME_HEAD: Final = struct.Struct(">II")
RECORD_HEAD: Final = struct.Struct(">BQ32s")
RECORD_VERSION: Final = 1
MAX_PAYLOAD: Final = 256 * 1024
ZERO_HASH: Final = bytes(32)


def encode_frame(payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise InputError(f"audit frame: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    n = struct.pack(">I", len(payload))
    return n + struct.pack(">I", zlib.crc32(payload, zlib.crc32(n))) + payload


@dataclass(frozen=True, slots=True)
class FrameProblem:
    """Why parsing stopped at byte ``offset``: ``incomplete``, ``bad-length`` or ``bad-crc``."""

    offset: int
    reason: str


def split_frames(
    buf: bytes | bytearray | memoryview, pos: int = 0, limit: int = 1 << 62
) -> tuple[list[tuple[int, bytes]], int, FrameProblem | None]:
    """Parse up to ``limit`` complete frames of ``buf`` starting at ``pos``.

    Returns ``(frames, next_pos, problem)`` where ``frames`` holds
    ``(offset, payload)`` pairs. ``problem`` is set when parsing stopped
    before the end of ``buf``: ``incomplete`` means more bytes are needed
    (or the file was cut), the others mean the frame at ``offset`` is corrupt.
    """
    out: list[tuple[int, bytes]] = []
    end = len(buf)
    unpack = FRAME_HEAD.unpack_from
    crc32 = zlib.crc32
    while pos < end and len(out) < limit:
        if end - pos < 8:
            return out, pos, FrameProblem(pos, "incomplete")
        n, crc = unpack(buf, pos)
        if n > MAX_PAYLOAD:
            return out, pos, FrameProblem(pos, "bad-length")
        if end - pos - 8 < n:
            return out, pos, FrameProblem(pos, "incomplete")
        payload = bytes(buf[pos + 8 : pos + 8 + n])
        if crc32(payload, crc32(bytes(buf[pos : pos + 4]))) != crc:
            return out, pos, FrameProblem(pos, "bad-crc")
        out.append((pos, payload))
        pos += 8 + n
    return out, pos, None


def record_payload(seq: int, prev: bytes, body: bytes) -> bytes:
    """The leaf bytes of record ``seq`` whose predecessor's leaf hash is ``prev``."""
    return RECORD_HEAD.pack(RECORD_VERSION, seq, prev) + body


def parse_record_payload(payload: bytes) -> tuple[int, bytes, bytes]:
    """``(seq, prev, body)`` of a record payload; :class:`InputError` when malformed."""
    if len(payload) < RECORD_HEAD.size:
        raise InputError("audit record: payload shorter than its fixed header")
    version, seq, prev = RECORD_HEAD.unpack_from(payload)
    if version != RECORD_VERSION:
        raise InputError(f"audit record: unknown payload version {version}")
    return seq, prev, payload[RECORD_HEAD.size :]
