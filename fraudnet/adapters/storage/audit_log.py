"""The audit log writer: durable, crash-safe, append-only, checkpointed.

API (what the node calls)::

    log = open_audit_log(node_dir / "audit", node_key)     # recovers after a crash
    last = log.append_many([decision_record(d, actor=..., origin=...), ...])
    last = log.append_bodies(decision_bodies(decisions, actor=..., origin=...))  # per batch
    durable = log.commit()      # write + fsync, checkpoint when due; returns last durable seq
    log.close()                 # commit, final checkpoint, retention

    alog = AsyncAuditLog(log)   # asyncio group commit (fraudnet.adapters.storage.audit_async)
    seq = await alog.append_durable(records)    # returns once they are fsynced

``seq`` is a record's 0-based position in the log; ``-1`` means "none".
Thread-safety: one thread may append while another commits (that is how
:class:`~fraudnet.adapters.storage.audit_async.AsyncAuditLog` uses it);
``commit`` serialises itself.

Theory of operation
-------------------
``append_many`` encodes each record to its canonical payload (sequence
number + previous leaf hash + body), frames it (length + CRC), extends the
in-memory Merkle frontier and queues the frame. ``commit`` writes every
queued frame with one ``write`` per segment, ``fdatasync``\\ s the segment
(policy ``fsync=True``, the default) and only then reports the records
durable; if at least ``checkpoint_interval_us`` passed since the last
checkpoint it signs one for the durable tree and appends it to the
segment's ``.ckp`` sidecar (fsynced too). Checkpoints never cover a record
that is not on disk.

A segment is closed when the next frame would push it past
``max_segment_bytes``: the writer fsyncs it, signs a boundary checkpoint,
and starts ``seg-<next seq>.log`` whose header carries the Merkle frontier
and that checkpoint (files are created under a temporary name, fsynced and
renamed, so a segment file never exists half-made). Retention then keeps
the newest ``online_segments`` in the directory, moves older ones to
``archive/`` and deletes archived segments whose last record is older than
``retention_us``; verification and proofs start from the oldest remaining
segment's header (see :mod:`fraudnet.core.audit.segment`).

Recovery (:func:`open_audit_log`): the last segment is scanned; the first
incomplete or invalid frame and everything after it is moved to
``recovered/`` and cut off -- unless a signed checkpoint covers it, in which
case the log is damaged, not torn, and opening refuses with
:class:`~fraudnet.errors.AuditError` rather than destroy evidence.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core import crypto
from fraudnet.core.audit.checkpoint import Checkpoint, sign_checkpoint
from fraudnet.core.audit.framing import RECORD_HEAD, ZERO_HASH, encode_frame
from fraudnet.core.audit.merkle import Frontier, leaf_hash
from fraudnet.core.audit.schema import AuditRecord, encode_body
from fraudnet.core.audit.segment import CKP_MAGIC, SegmentHeader, ckp_name, encode_header, seg_name
from fraudnet.errors import AuditError, ConfigError, InternalError, UnavailableError

from .audit_files import (
    MANIFEST,
    Manifest,
    fsync_dir,
    list_segments,
    read_manifest,
    write_atomic,
    write_manifest,
)
from .audit_recovery import Recovered, apply_retention, recover_tail

__all__ = ["DEFAULT_NETWORK_ID", "AuditLog", "AuditPolicy", "open_audit_log"]

DEFAULT_NETWORK_ID: Final = "fraudnet"
Clock = Callable[[], int]


def wall_clock_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    """Durability, checkpoint, rotation and retention settings (validated)."""

    fsync: bool = True
    checkpoint_interval_us: int = 1_000_000
    max_segment_bytes: int = 256 * 1024 * 1024
    online_segments: int = 3
    retention_us: int = 365 * 86_400 * 1_000_000

    def __post_init__(self) -> None:
        if self.checkpoint_interval_us < 0:
            raise ConfigError("audit.checkpoint_interval_us: must be >= 0")
        if self.max_segment_bytes < 4096:
            raise ConfigError("audit.max_segment_bytes: must be >= 4096")
        if self.online_segments < 1:
            raise ConfigError("audit.online_segments: must be >= 1")
        if self.retention_us < 0:
            raise ConfigError("audit.retention_us: must be >= 0")


@dataclass(frozen=True, slots=True)
class _Rotate:
    first_seq: int
    prev: bytes
    frontier: Frontier


class AuditLog:
    """An open audit log (create it with :func:`open_audit_log`)."""

    def __init__(
        self,
        log_dir: Path,
        key: Ed25519PrivateKey,
        manifest: Manifest,
        policy: AuditPolicy,
        clock: Clock,
        state: Recovered,
    ) -> None:
        self.dir = log_dir
        self.policy = policy
        self.network_id = manifest.network_id
        self.public_key = manifest.public_key
        self.recovery_notes = state.notes
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._ops: list[bytes | _Rotate] = []
        self._next = state.frontier.size
        self._prev = state.prev
        self._frontier = state.frontier
        self._seg_first = state.first_seq
        self._seg_bytes = state.seg_bytes
        self._durable = state.frontier.size
        self._durable_front = state.frontier.copy()
        self._ckp_size = state.ckp_size
        self._ckp_time = state.ckp_time_us
        self._failed: str | None = None
        self._closed = False
        self._fd = os.open(log_dir / seg_name(self._seg_first), os.O_WRONLY | os.O_APPEND)
        self._ckp_fd = os.open(log_dir / ckp_name(self._seg_first), os.O_WRONLY | os.O_APPEND)

    # -- public ------------------------------------------------------------

    @property
    def size(self) -> int:
        """Records appended so far (durable or not)."""
        return self._next

    @property
    def durable_size(self) -> int:
        return self._durable

    @property
    def checkpointed_size(self) -> int:
        return self._ckp_size

    def checkpoint_due_in_us(self) -> int | None:
        """µs until a checkpoint is due for durable-but-uncheckpointed records, else None."""
        if self._durable <= self._ckp_size:
            return None
        return max(0, self._ckp_time + self.policy.checkpoint_interval_us - self._clock())

    def append_one(self, record: AuditRecord) -> int:
        return self.append_many((record,))

    def append_many(self, records: Iterable[AuditRecord]) -> int:
        """Queue records; returns the seq of the last one (not yet durable: see :meth:`commit`)."""
        bodies = []
        for r in records:
            if not isinstance(r, AuditRecord):
                raise InternalError(f"audit log: expected AuditRecord, got {type(r).__name__}")
            bodies.append(encode_body(r))
        return self.append_bodies(bodies)

    def append_bodies(self, bodies: Sequence[bytes]) -> int:
        """Queue canonical record bodies already validated and encoded by the caller.

        ``bodies`` must come from :func:`~fraudnet.core.audit.schema.encode_body` or
        :func:`~fraudnet.core.audit.batch.decision_bodies` (the per-batch encoder of
        decision records); returns the seq of the last one, ``size - 1`` if empty.
        """
        max_bytes = self.policy.max_segment_bytes
        pack = RECORD_HEAD.pack
        with self._lock:
            self._check_usable()
            seq, prev, front, ops = self._next, self._prev, self._frontier, self._ops
            for body in bodies:
                payload = pack(1, seq, prev) + body
                frame = encode_frame(payload)
                if self._seg_bytes + len(frame) > max_bytes and seq > self._seg_first:
                    ops.append(_Rotate(seq, prev, front.copy()))
                    self._seg_first, self._seg_bytes = seq, 0
                prev = leaf_hash(payload)
                front.append(prev)
                ops.append(frame)
                self._seg_bytes += len(frame)
                seq += 1
            self._next, self._prev = seq, prev
            return seq - 1

    def commit(self) -> int:
        """Write and fsync everything queued; checkpoint if due. Returns the last durable seq."""
        with self._commit_lock:
            with self._lock:
                self._check_usable()
                ops, self._ops = self._ops, []
                size, front = self._next, self._frontier.copy()
            if ops:
                try:
                    self._write_ops(ops)
                    if self.policy.fsync:
                        os.fdatasync(self._fd)
                except OSError as e:
                    self._fail(f"write failed ({e.strerror})")
                self._durable, self._durable_front = size, front
            self._checkpoint_if_due(force=False)
            return self._durable - 1

    def checkpoint(self) -> Checkpoint | None:
        """Commit and sign a checkpoint now if any durable record is not yet covered."""
        self.commit()
        with self._commit_lock:
            return self._checkpoint_if_due(force=True)

    def close(self) -> None:
        """Commit, sign a final checkpoint, apply retention and close the files."""
        if self._closed:
            return
        if self._failed is None:
            self.checkpoint()
        with self._commit_lock:
            self._closed = True
            os.close(self._fd)
            os.close(self._ckp_fd)
            if self._failed is None:
                apply_retention(self.dir, self.policy.online_segments, self.policy.retention_us,
                                self._clock())  # fmt: skip

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise InternalError("audit log: used after close()")
        if self._failed is not None:
            raise UnavailableError(f"audit log {self.dir}: {self._failed}; reopen to recover")

    def _fail(self, why: str) -> None:
        self._failed = why
        raise UnavailableError(f"audit log {self.dir}: {why}; reopen to recover")

    def _write_ops(self, ops: list[bytes | _Rotate]) -> None:
        chunk: list[bytes] = []
        for op in ops:
            if isinstance(op, _Rotate):
                _write_all(self._fd, b"".join(chunk))
                chunk = []
                self._rotate(op)
            else:
                chunk.append(op)
        _write_all(self._fd, b"".join(chunk))

    def _sign(self, size: int, root: bytes) -> bytes:
        now = max(self._clock(), self._ckp_time)
        signed = sign_checkpoint(
            self._key, self.network_id, Checkpoint(self.public_key, size, now, root)
        )
        self._ckp_time = now
        return signed

    def _checkpoint_if_due(self, *, force: bool) -> Checkpoint | None:
        if self._durable <= self._ckp_size:
            return None
        if not force and self._clock() - self._ckp_time < self.policy.checkpoint_interval_us:
            return None
        signed = self._sign(self._durable, self._durable_front.root())
        try:
            _write_all(self._ckp_fd, encode_frame(signed))
            if self.policy.fsync:
                os.fdatasync(self._ckp_fd)
        except OSError as e:
            self._fail(f"checkpoint write failed ({e.strerror})")
        self._ckp_size = self._durable
        return Checkpoint.decode(signed[:85])

    def _rotate(self, op: _Rotate) -> None:
        os.fdatasync(self._fd)
        signed = self._sign(op.first_seq, op.frontier.root())
        _write_all(self._ckp_fd, encode_frame(signed))
        os.fdatasync(self._ckp_fd)
        self._ckp_size = op.first_seq
        os.close(self._fd)
        os.close(self._ckp_fd)
        create_segment(self.dir, SegmentHeader(op.first_seq, op.prev, op.frontier, signed))
        self._fd = os.open(self.dir / seg_name(op.first_seq), os.O_WRONLY | os.O_APPEND)
        self._ckp_fd = os.open(self.dir / ckp_name(op.first_seq), os.O_WRONLY | os.O_APPEND)
        apply_retention(
            self.dir, self.policy.online_segments, self.policy.retention_us, self._clock()
        )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def create_segment(log_dir: Path, header: SegmentHeader) -> None:
    """Create a segment and its sidecar atomically (sidecar first)."""
    write_atomic(log_dir / ckp_name(header.first_seq), CKP_MAGIC)
    write_atomic(log_dir / seg_name(header.first_seq), encode_header(header))
    fsync_dir(log_dir)


def open_audit_log(
    log_dir: Path,
    node_key: Ed25519PrivateKey,
    *,
    network_id: str = DEFAULT_NETWORK_ID,
    policy: AuditPolicy | None = None,
    clock: Clock | None = None,
) -> AuditLog:
    """Open (creating if needed) the audit log in ``log_dir``, recovering after a crash.

    Raises :class:`ConfigError` if the log belongs to another key or network,
    :class:`AuditError` if it is damaged beyond a torn tail (run
    ``fraudnet audit verify``), :class:`UnavailableError` on I/O failure.
    """
    policy = policy or AuditPolicy()
    clock = clock or wall_clock_us
    pub = crypto.public_bytes(node_key)
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        if not (log_dir / MANIFEST).exists():
            if list_segments(log_dir):
                raise AuditError(f"{log_dir}: segments present but {MANIFEST} is missing")
            manifest = Manifest(pub, network_id, clock())
            write_manifest(log_dir, manifest)
        manifest = read_manifest(log_dir)
        if manifest.public_key != pub:
            raise ConfigError(
                f"{log_dir}: log belongs to key {crypto.key_id(manifest.public_key)}, "
                f"node key is {crypto.key_id(pub)}"
            )
        if manifest.network_id != network_id:
            raise ConfigError(
                f"{log_dir}: log is for network {manifest.network_id!r}, not {network_id!r}"
            )
        if not list_segments(log_dir):
            genesis = sign_checkpoint(
                node_key, network_id, Checkpoint(pub, 0, clock(), Frontier().root())
            )
            create_segment(log_dir, SegmentHeader(0, ZERO_HASH, Frontier(), genesis))
        state = recover_tail(log_dir, manifest)
        apply_retention(log_dir, policy.online_segments, policy.retention_us, clock())
        return AuditLog(log_dir, node_key, manifest, policy, clock, state)
    except OSError as e:
        raise UnavailableError(f"{log_dir}: cannot open audit log ({e.strerror})") from None
