"""Crash recovery and retention of an audit log directory.

Recovery only ever removes bytes that no signed checkpoint covers, and it
moves them to ``recovered/`` first, so nothing acknowledged is lost and
nothing that might be evidence is destroyed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fraudnet.core.audit.checkpoint import BODY_LEN, Checkpoint, open_checkpoint
from fraudnet.core.audit.framing import parse_record_payload, split_frames
from fraudnet.core.audit.merkle import Frontier, leaf_hash
from fraudnet.core.audit.segment import CKP_MAGIC, decode_header
from fraudnet.errors import AuditError, InputError, IntegrityError

from .audit_files import ARCHIVE, RECOVERED, Manifest, fsync_dir, list_segments

__all__ = ["Recovered", "apply_retention", "recover_tail"]


@dataclass(slots=True)
class Recovered:
    first_seq: int
    frontier: Frontier
    prev: bytes
    seg_bytes: int
    ckp_size: int
    ckp_time_us: int
    notes: list[str] = field(default_factory=list)


def _cut(path: Path, offset: int, data: bytes, notes: list[str], what: str) -> None:
    """Move ``data[offset:]`` of ``path`` to ``recovered/`` and truncate the file."""
    rec = path.parent / RECOVERED
    rec.mkdir(exist_ok=True)
    saved = rec / f"{path.name}.{offset}.tail"
    with saved.open("wb") as f:
        f.write(data[offset:])
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
    notes.append(f"{path.name}: cut {len(data) - offset} bytes at {offset} ({what}); saved {saved}")


def recover_tail(log_dir: Path, m: Manifest) -> Recovered:
    """Scan the newest segment, cut a torn tail, and return the writer's state."""
    segs = list_segments(log_dir)
    last = segs[-1]
    if last.archived:
        raise AuditError(f"{log_dir}: no online segment (only archived ones)")
    notes: list[str] = []
    data = last.log.read_bytes()
    try:
        header, pos = decode_header(data)
    except InputError as e:
        raise AuditError(f"{last.log}: {e}; run 'fraudnet audit verify'") from None
    # the newest checkpoint of this segment (the boundary one if the sidecar has none)
    try:
        ckp = last.ckp.read_bytes()
    except FileNotFoundError:
        ckp = b""
    if not ckp.startswith(CKP_MAGIC):
        if ckp and len(ckp) >= len(CKP_MAGIC):
            raise AuditError(f"{last.ckp}: not a checkpoint file")
        with last.ckp.open("wb") as f:  # created before its segment; a crash can leave it short
            f.write(CKP_MAGIC)
            os.fsync(f.fileno())
        notes.append(f"{last.ckp.name}: recreated empty checkpoint file")
        ckp = CKP_MAGIC
    frames, cpos, problem = split_frames(ckp, len(CKP_MAGIC))
    if problem is not None:
        if problem.reason != "incomplete":
            raise AuditError(f"{last.ckp}@{problem.offset}: checkpoint frame {problem.reason}")
        _cut(last.ckp, cpos, ckp, notes, "torn checkpoint")
    signed = frames[-1][1] if frames else header.boundary
    try:
        cp = open_checkpoint(signed, m.public_key, m.network_id)
    except IntegrityError as e:
        raise AuditError(f"{last.ckp}: newest checkpoint does not verify ({e})") from None
    if cp.tree_size < header.first_seq:
        raise AuditError(f"{last.ckp}: newest checkpoint predates its segment")

    front, prev = header.frontier.copy(), header.prev_leaf
    if cp.tree_size == front.size and cp.root != front.root():
        raise AuditError(f"{last.log}: header does not match its checkpoint")
    frames_r, end, problem = split_frames(data, pos)
    why = problem.reason if problem else ""
    for off, payload in frames_r:
        try:
            seq, link, _ = parse_record_payload(payload)
        except InputError:
            seq, link = -1, b""
        if seq != front.size or link != prev:
            end, why = off, "record out of sequence or off the hash chain"
            break
        prev = leaf_hash(payload)
        front.append(prev)
        if front.size == cp.tree_size and front.root() != cp.root:
            raise AuditError(
                f"{last.log}: records do not match the newest checkpoint "
                f"(size {cp.tree_size}); run 'fraudnet audit verify'"
            )
    if front.size < cp.tree_size:
        raise AuditError(
            f"{last.log}@{end}: checkpoint covers {cp.tree_size} records but only "
            f"{front.size} are intact ({why or 'file ends'}); refusing to cut signed records"
        )
    if end < len(data):
        _cut(last.log, end, data, notes, why or "torn record")
    return Recovered(
        first_seq=header.first_seq,
        frontier=front,
        prev=prev,
        seg_bytes=end,
        ckp_size=cp.tree_size,
        ckp_time_us=cp.time_us,
        notes=notes,
    )


def apply_retention(log_dir: Path, online: int, retention_us: int, now_us: int) -> list[str]:
    """Archive all but the newest ``online`` segments; delete expired archived ones.

    An archived segment is expired when the boundary checkpoint that closes
    it (in the next segment's header) is older than ``retention_us``. Only the
    oldest segments are ever deleted, so the remaining ones stay contiguous.
    Returns what was done, for the operator's log.
    """
    done: list[str] = []
    segs = list_segments(log_dir)
    live = [s for s in segs if not s.archived]
    to_archive = live[:-online] if len(live) > online else []
    if to_archive:
        arch = log_dir / ARCHIVE
        arch.mkdir(exist_ok=True)
        for s in to_archive:
            for p in (s.ckp, s.log):  # sidecar first: a log without sidecar is what verify flags
                if p.exists():
                    os.replace(p, arch / p.name)
            done.append(f"archived {s.log.name}")
        fsync_dir(arch)
        fsync_dir(log_dir)
        segs = list_segments(log_dir)
    for i, s in enumerate(segs[:-1]):
        if not s.archived:
            break
        nxt = segs[i + 1].log
        with nxt.open("rb") as f:
            header, _ = decode_header(f.read(64 * 1024))
        end_us = Checkpoint.decode(header.boundary[:BODY_LEN]).time_us
        if now_us - end_us <= retention_us:
            break
        s.log.unlink()
        s.ckp.unlink(missing_ok=True)
        done.append(f"deleted expired {s.log.name}")
    if done and (log_dir / ARCHIVE).is_dir():
        fsync_dir(log_dir / ARCHIVE)
    return done
