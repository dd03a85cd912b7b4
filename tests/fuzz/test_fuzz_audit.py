"""Fuzz the audit log reader: segment files, sidecars, manifest, record bodies, checkpoints.

A real log (several segments, sidecar checkpoints) is written once; each case
mutates one of its files -- or a record body, a signed checkpoint, a witness
message -- and runs the readers on it. Oracle: :func:`verify_log` returns a
report or raises a ``fraudnet.errors`` error (never anything else, never
hangs), :func:`iter_payloads`, :func:`read_checkpoints` and the body decoder
end in a value or ``AuditError``/``InputError``/``IntegrityError``, and a
damaged log is never reported as ok when a record byte changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fuzz_support import (
    fuzz_modes,
    mutate_bytes,
    mutate_value,
    pack,
    run_target,
    scratch_dir,
    unpack,
)
from hypothesis import strategies as st

from fraudnet.adapters.storage.audit_files import (
    iter_payloads,
    list_segments,
    read_checkpoints,
    verify_log,
)
from fraudnet.adapters.storage.audit_log import AuditPolicy, open_audit_log
from fraudnet.core import crypto
from fraudnet.core.audit.checkpoint import open_checkpoint
from fraudnet.core.audit.framing import parse_record_payload, split_frames
from fraudnet.core.audit.schema import decode_body, event_record
from fraudnet.core.audit.segment import SEG_MAGIC, decode_header
from fraudnet.core.audit.witness import (
    Cosigned,
    cosign,
    decode_checkpoint_msg,
    decode_cosign_msg,
    encode_checkpoint_msg,
    encode_cosign_msg,
)
from fraudnet.errors import FraudnetError, InputError, IntegrityError

KEY = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
WITNESS = Ed25519PrivateKey.from_private_bytes(b"\x0a" * 32)
PUB = crypto.public_bytes(KEY)


class _Clock:
    t = 1_700_000_000_000_000

    def __call__(self) -> int:
        _Clock.t += 150_000
        return _Clock.t


def _build() -> Path:
    d = scratch_dir("fraudnet-fuzz-audit-") / "audit"
    pol = AuditPolicy(max_segment_bytes=4096, online_segments=100)
    with open_audit_log(d, KEY, policy=pol, clock=_Clock()) as log:
        for i in range(60):
            log.append_many([event_record(
                "signal_received", at_us=1_700_000_000_000_000 + i, actor="node:a",
                action="receive", origin=f"peer-{i % 3}", signal_id=f"s{i}", peer="p", pad="y" * (i * 7 % 40),
            )])  # fmt: skip
            if i % 5 == 0:
                log.commit()
    assert verify_log(d, PUB).ok
    return d


TEMPLATE = _build()
FILES = {p.name: p.read_bytes() for p in sorted(TEMPLATE.iterdir()) if p.is_file()}
SEG_NAMES = [s.log.name for s in list_segments(TEMPLATE)]
NETWORK = "local"
_BODIES: list[bytes] = []
for _seq, _payload in iter_payloads(TEMPLATE):
    _BODIES.append(parse_record_payload(_payload)[2])
SIGNED = read_checkpoints(TEMPLATE)
_WORK = scratch_dir("fraudnet-fuzz-audit-work-") / "audit"


@st.composite
def damaged_logs(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(FILES)))
    data = FILES[name]
    magic = (SEG_MAGIC, b"\x00\x00\x00\x00", b"\x00\x03\xff\xff", b"\xff\xff\xff\xff", b"{}", b'"')
    return name, draw(mutate_bytes([data], magic=magic))


def _check_log(case: tuple[str, bytes]) -> None:
    name, data = case
    if _WORK.exists():
        shutil.rmtree(_WORK)
    shutil.copytree(TEMPLATE, _WORK)
    (_WORK / name).write_bytes(data)
    changed = data != FILES[name]
    try:
        report = verify_log(_WORK, PUB)
    except FraudnetError:
        report = None
    if report is not None and report.ok and changed and name.endswith(".log"):
        # a segment's bytes changed yet verify says ok: only the torn tail of the newest
        # segment may do that (crash recovery semantics): a cut of it, or bytes after its
        # last record that form no record (reported as a torn, never acknowledged record)
        torn = data.startswith(FILES[name]) and any("torn final record" in n
                                                    for n in report.notes)  # fmt: skip
        assert name == SEG_NAMES[-1] and (FILES[name].startswith(data) or torn), (
            "damage went unnoticed"
        )
    for _seq, payload in iter_payloads(_WORK):
        decode_body(parse_record_payload(payload)[2])
    read_checkpoints(_WORK)


def _check_body(data: bytes) -> None:
    rec = decode_body(data)
    assert rec.kind


def _check_segment_bytes(data: bytes) -> None:
    _header, pos = decode_header(data)
    frames, _, _ = split_frames(data, pos)
    for _off, payload in frames:
        parse_record_payload(payload)


def _check_checkpoint(case: tuple[int, bytes]) -> None:
    kind, data = case
    if kind == 0:
        open_checkpoint(data, PUB, NETWORK)
    elif kind == 1:
        open_checkpoint(decode_checkpoint_msg(data), PUB, NETWORK)
    else:
        decode_cosign_msg(data, NETWORK).verify(PUB)


_CK_MSGS = [encode_checkpoint_msg(s) for s in SIGNED]
_CS_MSGS = [encode_cosign_msg(Cosigned(NETWORK, s, crypto.public_bytes(WITNESS),
                                       cosign(WITNESS, NETWORK, s))) for s in SIGNED]  # fmt: skip
_SEGS = [FILES[n] for n in SEG_NAMES]


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_audit_log_directory(mode: str) -> None:
    run_target("audit_log_dir", mode, damaged_logs(), _check_log, (FraudnetError,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_audit_record_bodies(mode: str) -> None:
    wire: list[Any] = [unpack(b) for b in _BODIES[:8]]
    cases = st.one_of(mutate_bytes(_BODIES[:8]), mutate_value(wire).map(pack))
    run_target("audit_body", mode, cases, _check_body, (InputError,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_audit_segment_bytes(mode: str) -> None:
    run_target("audit_segment", mode, mutate_bytes(_SEGS), _check_segment_bytes, (InputError,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_audit_checkpoints_and_witness_messages(mode: str) -> None:
    cases = st.one_of(
        mutate_bytes(SIGNED).map(lambda b: (0, b)),
        mutate_bytes(_CK_MSGS).map(lambda b: (1, b)),
        mutate_bytes(_CS_MSGS).map(lambda b: (2, b)),
    )
    run_target("audit_checkpoint", mode, cases, _check_checkpoint, (IntegrityError,))


def test_template_log_is_what_the_fuzzers_mutate() -> None:
    assert len(SEG_NAMES) >= 3 and len(SIGNED) >= 3 and len(_BODIES) == 60
