"""Property: any modification, deletion, reordering or truncation of a log is caught
by verify at the right record and with the right kind of damage."""

from __future__ import annotations

import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudnet.adapters.storage.audit_files import list_segments, verify_log
from fraudnet.adapters.storage.audit_log import AuditPolicy, open_audit_log
from fraudnet.core import crypto
from fraudnet.core.audit.checkpoint import SIGNED_LEN
from fraudnet.core.audit.framing import encode_frame, split_frames
from fraudnet.core.audit.schema import event_record
from fraudnet.core.audit.segment import CKP_MAGIC, decode_header

N = 150


@dataclass
class Seg:
    path: Path
    first: int
    header_end: int
    frames: list[tuple[int, int]]  # (offset, total length) of each record frame


class Clock:
    t = 1_700_000_000_000_000

    def __call__(self) -> int:
        Clock.t += 150_000
        return Clock.t


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, bytes]]:
    d = tmp_path_factory.mktemp("audit-template") / "audit"
    key = Ed25519PrivateKey.generate()
    pol = AuditPolicy(max_segment_bytes=6000, online_segments=100)
    with open_audit_log(d, key, policy=pol, clock=Clock()) as log:
        for i in range(N):
            log.append_many([event_record(
                "signal_received", at_us=1_700_000_000_000_000 + i, actor="node:a",
                action="receive", origin=f"peer-{i % 3}", signal_id=f"s{i}", peer="p",
                pad="y" * (i * 7 % 40),
            )])  # fmt: skip
            if i % 6 == 0:
                log.commit()
    assert verify_log(d).ok
    yield d, crypto.public_bytes(key)


def segments(d: Path) -> list[Seg]:
    out = []
    for s in list_segments(d):
        data = s.log.read_bytes()
        _, pos = decode_header(data)
        frames, end, problem = split_frames(data, pos)
        assert problem is None and end == len(data)
        out.append(Seg(s.log, s.first_seq, pos, [(o, 8 + len(p)) for o, p in frames]))
    return out


def fresh(template: tuple[Path, bytes]) -> Path:
    d = Path(tempfile.mkdtemp(prefix="audit-tamper-")) / "audit"
    shutil.copytree(template[0], d)
    return d


def locate(segs: list[Seg], record: int) -> tuple[Seg, int]:
    for s in segs:
        if s.first <= record < s.first + len(s.frames):
            return s, record - s.first
    raise AssertionError(record)


SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(record=st.integers(0, N - 1), where=st.floats(0, 0.999), flip=st.integers(1, 255))
def test_any_modified_byte_is_named(
    template: tuple[Path, bytes], record: int, where: float, flip: int
) -> None:
    d = fresh(template)
    seg, i = locate(segments(d), record)
    off, length = seg.frames[i]
    data = bytearray(seg.path.read_bytes())
    data[off + int(where * length)] ^= flip
    seg.path.write_bytes(bytes(data))
    r = verify_log(d, template[1])
    assert r.damage is not None, "modification not detected"
    assert (r.damage.kind, r.damage.record) == ("modified", record), str(r.damage)
    shutil.rmtree(d.parent)


@SETTINGS
@given(record=st.integers(0, N - 1), flip=st.integers(1, 255))
def test_rewritten_record_with_valid_crc_is_named(
    template: tuple[Path, bytes], record: int, flip: int
) -> None:
    """An attacker who re-frames a changed record (valid CRC) is still caught at that record."""
    d = fresh(template)
    seg, i = locate(segments(d), record)
    off, length = seg.frames[i]
    data = seg.path.read_bytes()
    payload = data[off + 8 : off + length]
    changed = payload[:-1] + bytes([payload[-1] ^ flip])  # last byte is inside the body
    seg.path.write_bytes(data[:off] + encode_frame(changed) + data[off + length :])
    r = verify_log(d, template[1])
    assert r.damage is not None
    assert (r.damage.kind, r.damage.record) == ("modified", record), str(r.damage)
    shutil.rmtree(d.parent)


@SETTINGS
@given(record=st.integers(0, N - 1), count=st.integers(1, 4))
def test_deleted_records_are_named(template: tuple[Path, bytes], record: int, count: int) -> None:
    d = fresh(template)
    seg, i = locate(segments(d), record)
    frames = seg.frames[i : i + count]
    start, end = frames[0][0], frames[-1][0] + frames[-1][1]
    data = seg.path.read_bytes()
    seg.path.write_bytes(data[:start] + data[end:])
    r = verify_log(d, template[1])
    assert r.damage is not None and r.damage.record == record, str(r.damage)
    at_segment_end = end == len(data)
    # cutting records off the end of a segment is the same thing as truncating it
    assert r.damage.kind == ("truncated" if at_segment_end else "deleted"), str(r.damage)
    shutil.rmtree(d.parent)


@SETTINGS
@given(a=st.integers(0, N - 1), b=st.integers(0, N - 1), move=st.booleans())
def test_reordered_records_are_named(
    template: tuple[Path, bytes], a: int, b: int, move: bool
) -> None:
    d = fresh(template)
    segs = segments(d)
    seg, i = locate(segs, a)
    seg_b, j = locate(segs, b)
    if seg_b is not seg or i == j:
        j = (i + 1) % len(seg.frames)
        if j == i:
            return
    i, j = min(i, j), max(i, j)
    data = seg.path.read_bytes()
    chunks = [data[o : o + n] for o, n in seg.frames]
    if move:  # move record j to position i
        chunks.insert(i, chunks.pop(j))
    else:
        chunks[i], chunks[j] = chunks[j], chunks[i]
    seg.path.write_bytes(data[: seg.header_end] + b"".join(chunks))
    r = verify_log(d, template[1])
    assert r.damage is not None
    assert (r.damage.kind, r.damage.record) == ("reordered", seg.first + i), str(r.damage)
    shutil.rmtree(d.parent)


@SETTINGS
@given(seg_pick=st.integers(0, 100), cut=st.floats(0, 0.999))
def test_truncation_is_named(template: tuple[Path, bytes], seg_pick: int, cut: float) -> None:
    d = fresh(template)
    segs = segments(d)
    seg = segs[seg_pick % len(segs)]
    data = seg.path.read_bytes()
    at = seg.header_end + int(cut * (len(data) - seg.header_end))
    seg.path.write_bytes(data[:at])
    first_lost = seg.first + sum(1 for o, n in seg.frames if o + n <= at)
    r = verify_log(d, template[1])
    assert r.damage is not None
    assert (r.damage.kind, r.damage.record) == ("truncated", first_lost), str(r.damage)
    shutil.rmtree(d.parent)


def test_resigned_checkpoint_with_another_key_is_bad_signature(
    template: tuple[Path, bytes],
) -> None:
    d = fresh(template)
    ckp = list_segments(d)[-1].ckp
    data = ckp.read_bytes()
    frames, _, _ = split_frames(data, len(CKP_MAGIC))
    body = frames[-1][1][:85]
    other = Ed25519PrivateKey.generate()
    forged = body + crypto.sign(other, b"audit-checkpoint", b"fraudnet", body)
    assert len(forged) == SIGNED_LEN
    ckp.write_bytes(data[: frames[-1][0]] + encode_frame(forged))
    r = verify_log(d, template[1])
    assert r.damage is not None and r.damage.kind == "bad_signature", str(r.damage)


def test_segment_header_tamper_is_detected(template: tuple[Path, bytes]) -> None:
    d = fresh(template)
    seg = segments(d)[1]
    data = bytearray(seg.path.read_bytes())
    data[seg.header_end - 3] ^= 1
    n = struct.unpack_from(">I", data, 8)[0]
    struct.pack_into(">I", data, 12, zlib.crc32(bytes(data[16 : 16 + n]), zlib.crc32(data[8:12])))
    seg.path.write_bytes(bytes(data))
    r = verify_log(d, template[1])
    assert r.damage is not None and r.damage.record == seg.first, str(r.damage)


def test_missing_middle_segment_is_named(template: tuple[Path, bytes]) -> None:
    d = fresh(template)
    segs = segments(d)
    gone = segs[1]
    gone.path.unlink()
    r = verify_log(d, template[1])
    assert r.damage is not None and r.damage.record == gone.first, str(r.damage)
    assert r.damage.kind in ("truncated", "deleted")
