"""Segment and checkpoint-sidecar file formats (pure encode/decode).

A log is a sequence of *segments*. Segment ``seg-<first_seq:020d>.log``::

    b"FNAUDSG1" | frame(header) | frame(record payload) ...

with the header a msgpack array
``[1, first_seq, prev_leaf, [frontier hashes], boundary_checkpoint]``:
the leaf hash of record ``first_seq - 1`` (zeros for the first segment),
the RFC 6962 :class:`~fraudnet.core.audit.merkle.Frontier` of the first
``first_seq`` records, and the node's signed checkpoint at exactly
``first_seq`` records. Because the frontier is pinned by a signed
checkpoint, a verifier can start at any segment once older ones were
removed by retention, and proofs for later records remain computable.

Its sidecar ``seg-<first_seq:020d>.ckp`` holds ``b"FNAUDCK1"`` and one frame
per signed checkpoint whose tree size falls in ``(first_seq, end]`` --
including the boundary checkpoint written when the next segment starts.
Checkpoints live beside, not inside, the record stream so that cutting
records off a segment is detected by the checkpoints that still claim them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgpack

from fraudnet.errors import InputError

from .framing import encode_frame, split_frames
from .merkle import HASH_LEN, Frontier

__all__ = [
    "CKP_MAGIC",
    "SEG_MAGIC",
    "SegmentHeader",
    "ckp_name",
    "decode_header",
    "encode_header",
    "parse_seg_name",
    "seg_name",
]

SEG_MAGIC: Final = b"FNAUDSG1"
CKP_MAGIC: Final = b"FNAUDCK1"
HEADER_VERSION: Final = 1


def seg_name(first_seq: int) -> str:
    return f"seg-{first_seq:020d}.log"


def ckp_name(first_seq: int) -> str:
    return f"seg-{first_seq:020d}.ckp"


def parse_seg_name(name: str) -> int | None:
    """``first_seq`` encoded in a segment file name, or None if it is not one."""
    if len(name) == 28 and name.startswith("seg-") and name.endswith(".log"):
        digits = name[4:24]
        if digits.isdigit():
            return int(digits)
    return None


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    first_seq: int
    prev_leaf: bytes
    frontier: Frontier
    boundary: bytes  # signed checkpoint at tree size first_seq


def encode_header(h: SegmentHeader) -> bytes:
    """Magic plus the header frame: the first bytes of a segment file."""
    body = msgpack.packb(
        [HEADER_VERSION, h.first_seq, h.prev_leaf, list(h.frontier.hashes), h.boundary],
        use_bin_type=True,
    )
    return SEG_MAGIC + encode_frame(body)


def decode_header(buf: bytes) -> tuple[SegmentHeader, int]:
    """Parse a segment's header from its first bytes; returns it and its length.

    :class:`InputError` when the bytes are not a complete, well-formed header
    (``"incomplete"`` appears in the message when more bytes would help).
    """
    if len(buf) < len(SEG_MAGIC):
        raise InputError("segment header: incomplete (file shorter than its magic)")
    if buf[: len(SEG_MAGIC)] != SEG_MAGIC:
        raise InputError("segment header: bad magic (not a fraudnet audit segment)")
    frames, pos, problem = split_frames(buf, len(SEG_MAGIC), limit=1)
    if not frames:
        why = problem.reason if problem else "incomplete"
        raise InputError(f"segment header: {why}")
    try:
        w = msgpack.unpackb(frames[0][1], raw=False, strict_map_key=True)
        version, first, prev, hashes, boundary = w[:5]
        frontier = Frontier(int(first), [bytes(x) for x in hashes])
    except Exception as e:
        raise InputError(f"segment header: malformed ({type(e).__name__})") from None
    if version != HEADER_VERSION or not isinstance(prev, bytes) or len(prev) != HASH_LEN:
        raise InputError("segment header: unsupported version or bad prev hash")
    if not isinstance(boundary, bytes):
        raise InputError("segment header: boundary checkpoint must be bytes")
    return SegmentHeader(int(first), prev, frontier, boundary), pos
