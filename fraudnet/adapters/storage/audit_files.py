"""Reading an audit log directory: layout, manifest, segments, verify, leaf hashes.

Directory layout (``DIR/audit/`` of a node)::

    log.json                     manifest: format, public key, network id
    seg-<first_seq:020d>.log     record segments (the newest is appended to)
    seg-<first_seq:020d>.ckp     their signed checkpoints
    archive/seg-*.log|.ckp       older segments moved out by retention
    recovered/                   bytes cut off by crash recovery (kept for forensics)

Nothing here writes except :func:`write_manifest`; see
:mod:`fraudnet.adapters.storage.audit_log` for the writer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fraudnet.core.audit.checkpoint import SIGNED_LEN, Checkpoint, open_checkpoint
from fraudnet.core.audit.framing import parse_record_payload, split_frames
from fraudnet.core.audit.merkle import leaf_hash, node_hash, split_point
from fraudnet.core.audit.segment import (
    CKP_MAGIC,
    SegmentHeader,
    ckp_name,
    decode_header,
    parse_seg_name,
)
from fraudnet.core.audit.verify import LogVerifier, VerifyReport
from fraudnet.errors import AuditError, InputError, IntegrityError

__all__ = [
    "ARCHIVE",
    "MANIFEST",
    "LeafHashes",
    "Manifest",
    "SegmentFiles",
    "iter_payloads",
    "list_segments",
    "read_checkpoints",
    "read_manifest",
    "resolve_log_dir",
    "verify_log",
    "write_manifest",
]

MANIFEST: Final = "log.json"
ARCHIVE: Final = "archive"
RECOVERED: Final = "recovered"
FORMAT: Final = 1
CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Manifest:
    public_key: bytes
    network_id: str
    created_us: int


@dataclass(frozen=True, slots=True)
class SegmentFiles:
    first_seq: int
    log: Path
    ckp: Path
    archived: bool


def resolve_log_dir(path: Path) -> Path:
    """Accept a node directory or its ``audit/`` directory; return the latter."""
    for cand in (path / "audit", path):
        if (cand / MANIFEST).is_file():
            return cand
    raise InputError(f"{path}: not an audit log (no {MANIFEST} in it or in {path / 'audit'})")


def read_manifest(log_dir: Path) -> Manifest:
    path = log_dir / MANIFEST
    try:
        raw = json.loads(path.read_text("utf-8"))
        if raw.get("format") != FORMAT:
            raise ValueError(f"unsupported format {raw.get('format')!r}")
        pub = bytes.fromhex(raw["public_key"])
        if len(pub) != 32:
            raise ValueError("public_key must be 32 bytes")
        return Manifest(pub, str(raw["network_id"]), int(raw["created_us"]))
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: not a valid audit manifest ({e})") from None


def write_manifest(log_dir: Path, m: Manifest) -> None:
    """Write the manifest atomically (temp file, fsync, rename, fsync dir)."""
    doc = {
        "format": FORMAT,
        "public_key": m.public_key.hex(),
        "network_id": m.network_id,
        "created_us": m.created_us,
    }
    write_atomic(log_dir / MANIFEST, (json.dumps(doc, indent=2) + "\n").encode())


def write_atomic(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace ``path`` with ``data`` atomically and durably (fsync, rename, dir fsync)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_segments(log_dir: Path) -> list[SegmentFiles]:
    """All segments, archived then online, in ``first_seq`` order."""
    out: list[SegmentFiles] = []
    for d, archived in ((log_dir / ARCHIVE, True), (log_dir, False)):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            first = parse_seg_name(p.name)
            if first is not None:
                out.append(SegmentFiles(first, p, d / ckp_name(first), archived))
    out.sort(key=lambda s: s.first_seq)
    return out


def read_header(path: Path) -> SegmentHeader:
    with path.open("rb") as f:
        data = f.read(64 * 1024)
    try:
        return decode_header(data)[0]
    except InputError as e:
        raise AuditError(f"{path}: {e}") from None


def verify_log(log_dir: Path, public_key: bytes | None = None) -> VerifyReport:
    """Recompute and check everything (see :mod:`fraudnet.core.audit.verify`).

    ``public_key`` pins the node key; without it the manifest's key is used
    (whoever can rewrite the log can rewrite the manifest too -- pin it).
    """
    m = read_manifest(log_dir)
    v = LogVerifier(public_key or m.public_key, m.network_id)
    segs = list_segments(log_dir)
    for i, s in enumerate(segs):
        try:
            sidecar = s.ckp.read_bytes()
        except FileNotFoundError:
            sidecar = b""
        v.begin_segment(s.log.name, sidecar, is_last=i == len(segs) - 1)
        with s.log.open("rb") as f:
            while not v.done and (chunk := f.read(CHUNK)):
                v.feed(chunk)
        v.end_segment()
        if v.done:
            break
    return v.finish()


def iter_payloads(log_dir: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """``(seq, payload)`` of every readable record from ``start`` (no verification).

    Stops with :class:`AuditError` at a corrupt frame; a torn final frame ends
    the iteration quietly.
    """
    segs = list_segments(log_dir)
    for i, s in enumerate(segs):
        nxt = segs[i + 1].first_seq if i + 1 < len(segs) else None
        if nxt is not None and nxt <= start:
            continue
        with s.log.open("rb") as f:
            buf = f.read(CHUNK)
            try:
                _, pos = decode_header(buf)
            except InputError as e:
                raise AuditError(f"{s.log}: {e}") from None
            base = 0
            while True:
                frames, pos, problem = split_frames(buf, pos)
                for off, payload in frames:
                    try:
                        seq = parse_record_payload(payload)[0]
                    except InputError as e:
                        raise AuditError(f"{s.log}@{base + off}: {e}") from None
                    if seq >= start:
                        yield seq, payload
                more = f.read(CHUNK)
                if problem is not None and problem.reason != "incomplete":
                    raise AuditError(f"{s.log}@{base + problem.offset}: frame {problem.reason}")
                if not more:
                    break
                base += pos
                buf = buf[pos:] + more
                pos = 0


def read_checkpoints(log_dir: Path) -> list[bytes]:
    """Every signed checkpoint (sidecars and segment boundaries), by tree size."""
    seen: dict[tuple[int, bytes], bytes] = {}
    for s in list_segments(log_dir):
        for signed in [read_header(s.log).boundary, *_sidecar_frames(s.ckp)]:
            if len(signed) == SIGNED_LEN:
                seen.setdefault((int.from_bytes(signed[37:45], "big"), signed), signed)
    return [seen[k] for k in sorted(seen)]


def _sidecar_frames(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if not data.startswith(CKP_MAGIC):
        raise AuditError(f"{path}: not a checkpoint file")
    frames, _, _ = split_frames(data, len(CKP_MAGIC))
    return [p for _, p in frames]


def find_checkpoint(log_dir: Path, size: int | None = None) -> tuple[bytes, Checkpoint]:
    """The verified checkpoint of tree size ``size`` (default: the latest)."""
    m = read_manifest(log_dir)
    cands = read_checkpoints(log_dir)
    if size is not None:
        cands = [c for c in cands if int.from_bytes(c[37:45], "big") == size]
    if not cands:
        what = f"of size {size}" if size is not None else "at all"
        raise InputError(f"{log_dir}: no checkpoint {what}")
    signed = cands[-1]
    try:
        return signed, open_checkpoint(signed, m.public_key, m.network_id)
    except IntegrityError as e:
        raise AuditError(f"{log_dir}: {e}") from None


class LeafHashes:
    """Leaf hashes of a log held compactly in memory, for proofs.

    ``frontier`` covers records expired by retention (``< base``); a range
    inside them is computable only when it is one of the frontier's
    subtrees, which is all an RFC 6962 proof for a later record needs.
    """

    def __init__(self, log_dir: Path, upto: int) -> None:
        segs = list_segments(log_dir)
        if not segs:
            raise InputError(f"{log_dir}: no segments")
        head = read_header(segs[0].log)
        self.base = head.first_seq
        self._front = {(a, b): h for a, b, h in head.frontier.ranges()}
        buf = bytearray()
        n = self.base
        for seq, payload in iter_payloads(log_dir, self.base):
            if seq != n:
                raise AuditError(f"{log_dir}: record {n} missing; run 'fraudnet audit verify'")
            if n >= upto:
                break
            buf += leaf_hash(payload)
            n += 1
        if n < upto:
            raise AuditError(f"{log_dir}: only {n} records, checkpoint claims {upto}")
        self._leaves = bytes(buf)
        self.size = upto

    def leaf(self, i: int) -> bytes:
        if i < self.base:
            raise InputError(f"record {i} expired under retention; no proof possible")
        j = (i - self.base) * 32
        return self._leaves[j : j + 32]

    def range_hash(self, a: int, b: int) -> bytes:
        if b - a == 1 and a >= self.base:
            return self.leaf(a)
        if b <= self.base:
            h = self._front.get((a, b))
            if h is None:
                raise InputError(f"records {a}..{b - 1} expired under retention; no proof possible")
            return h
        k = split_point(b - a)
        return node_hash(self.range_hash(a, a + k), self.range_hash(a + k, b))
