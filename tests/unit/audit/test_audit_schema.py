"""Record schema, PAN guard, framing and checkpoint signatures."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core import crypto
from fraudnet.core.audit.checkpoint import (
    Checkpoint,
    cosign,
    open_checkpoint,
    sign_checkpoint,
    verify_cosignature,
)
from fraudnet.core.audit.framing import encode_frame, split_frames
from fraudnet.core.audit.schema import (
    decision_record,
    decode_body,
    encode_body,
    event_record,
)
from fraudnet.core.records import Decision
from fraudnet.errors import InputError, IntegrityError

PAN = "4111111111111111"


def _decision(tx_id: str = "tx-1", model: str = "m1") -> Decision:
    return Decision(tx_id, bytes(range(16)), "block", 0.97, ("velocity",), model, 1, 2, 350)


def test_decision_record_round_trip_is_canonical() -> None:
    rec = decision_record(_decision(), actor="node:ab", origin="api")
    body = encode_body(rec)
    back = decode_body(body)
    assert back == rec
    assert (back.kind, back.action, back.outcome, back.origin, back.resource) == (
        "decision", "decide", "block", "api", "tx:tx-1",
    )  # fmt: skip
    assert encode_body(back) == body
    assert back.details["card"] == bytes(range(16))
    assert back.details["reasons"] == ["velocity"]
    # key order of details never changes the bytes
    a = event_record("node_start", at_us=1, actor="n", action="start", x=1, y=2)
    b = event_record("node_start", at_us=1, actor="n", action="start", y=2, x=1)
    assert encode_body(a) == encode_body(b)


@pytest.mark.parametrize(
    "where",
    ["tx_id", "actor", "detail", "list", "spaced"],
)
def test_pan_is_refused_and_not_echoed(where: str) -> None:
    with pytest.raises(InputError) as ei:
        if where == "tx_id":
            decision_record(_decision(tx_id=PAN), actor="n", origin="api")
        elif where == "actor":
            event_record("node_start", at_us=1, actor=f"user {PAN}", action="start")
        elif where == "detail":
            event_record("config_change", at_us=1, actor="n", action="set", change=f"card={PAN}")
        elif where == "list":
            event_record("node_stop", at_us=1, actor="n", action="stop", notes=["a", PAN])
        else:
            event_record("node_stop", at_us=1, actor="n", action="stop", note="4111 1111-1111 1111")
    assert PAN not in str(ei.value) and "card number" in str(ei.value)


def test_non_pans_are_allowed() -> None:
    event_record("node_start", at_us=1, actor="n", action="start", n="4111111111111112")  # Luhn bad
    event_record("node_start", at_us=1, actor="n", action="start", n="41111111111")  # 11 digits
    event_record("node_start", at_us=1, actor="n", action="start", n="4" * 25)  # too long a run
    digest = "ab" + PAN + "cd" * 23  # a hex digest that happens to contain a PAN-like run
    decision_record(_decision(model=digest), actor="n", origin="api")


def test_invalid_records_name_the_field() -> None:
    with pytest.raises(InputError, match="unknown kind"):
        event_record("nope", at_us=1, actor="n", action="x")
    with pytest.raises(InputError, match=r"details\.signal_id"):
        event_record("signal_sent", at_us=1, actor="n", action="send")
    with pytest.raises(InputError, match="finite"):
        event_record("node_start", at_us=1, actor="n", action="x", v=float("nan"))
    with pytest.raises(InputError, match="unsupported type"):
        event_record("node_start", at_us=1, actor="n", action="x", v={"a": 1})  # type: ignore[arg-type]
    with pytest.raises(InputError):
        decode_body(b"\xc1garbage")
    with pytest.raises(InputError):
        decode_body(b"\x93\x01\x02\x03")


def test_frames_detect_corruption() -> None:
    f = encode_frame(b"hello") + encode_frame(b"world")
    frames, pos, problem = split_frames(f)
    assert [p for _, p in frames] == [b"hello", b"world"] and problem is None and pos == len(f)
    bad = bytearray(f)
    bad[9] ^= 1
    frames, pos, problem = split_frames(bytes(bad))
    assert frames == [] and problem is not None and problem.reason == "bad-crc"
    frames, pos, problem = split_frames(f[:-2])
    assert len(frames) == 1 and problem is not None and problem.reason == "incomplete"
    huge = (10**9).to_bytes(4, "big") + bytes(4)
    assert split_frames(huge)[2].reason == "bad-length"  # type: ignore[union-attr]


def test_checkpoint_sign_open_and_cosign() -> None:
    k, w = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    pub = crypto.public_bytes(k)
    cp = Checkpoint(pub, 10, 123, bytes(range(32)))
    signed = sign_checkpoint(k, "net", cp)
    assert open_checkpoint(signed, pub, "net") == cp
    with pytest.raises(IntegrityError, match="bad signature"):
        open_checkpoint(signed, pub, "other-net")
    with pytest.raises(IntegrityError, match="bad signature"):
        open_checkpoint(signed, crypto.public_bytes(w), "net")
    tampered = bytearray(signed)
    tampered[40] ^= 1
    with pytest.raises(IntegrityError):
        open_checkpoint(bytes(tampered), pub, "net")
    co = cosign(w, "net", signed)
    assert verify_cosignature(crypto.public_bytes(w), co, "net", signed)
    assert not verify_cosignature(crypto.public_bytes(w), co, "net", bytes(tampered))
    # a cosignature is not a checkpoint signature (domain separation)
    forged = signed[:85] + co
    with pytest.raises(IntegrityError):
        open_checkpoint(forged, crypto.public_bytes(w), "net")
