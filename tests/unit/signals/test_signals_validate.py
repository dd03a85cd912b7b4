from __future__ import annotations

import msgpack
import pytest
from signals_helpers import NET, T0, keys, members, payload, signal

from fraudnet.core.signals import (
    MAX_ENVELOPE_BYTES,
    Outcome,
    SignalPayload,
    ValidationConfig,
    Validator,
    decode_envelope,
    encode_envelope,
    seal,
    seal_bytes,
)
from fraudnet.core.signals.codec import encode_payload

KS = keys(3)
A, B, C = KS


def validator(**cfg: object) -> Validator:
    return Validator(NET, members(KS), ValidationConfig(**cfg))  # type: ignore[arg-type]


def test_accepts_a_valid_envelope_and_counts_it() -> None:
    v = validator()
    verdict = v.validate(seal(KS[A], payload(A, 1)), T0)
    assert verdict.outcome is Outcome.ACCEPT
    assert verdict.payload == payload(A, 1)
    assert v.counters["signals_envelopes_accepted"] == 1
    assert v.counters["signals_accepted"] == 2


def _reason(v: Validator, data: bytes, now: int = T0) -> tuple[Outcome, str]:
    verdict = v.validate(data, now)
    assert verdict.payload is None
    assert v.counters[f"signals_{verdict.outcome.value}_{verdict.reason}"] == 1
    return verdict.outcome, verdict.reason


def test_oversized_is_rejected_before_decoding() -> None:
    assert _reason(validator(), b"\x00" * (MAX_ENVELOPE_BYTES + 1)) == (Outcome.REJECT, "oversized")


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x93\x01\x02\x03", msgpack.packb({"a": 1})])
def test_garbage_is_malformed(data: bytes) -> None:
    assert _reason(validator(), data) == (Outcome.REJECT, "malformed")


def test_non_canonical_encoding_is_malformed() -> None:
    good = seal(KS[A], payload(A, 1))
    env = decode_envelope(good)
    # version 1 as a uint8 (0xcc 0x01) instead of a positive fixint: same value, other bytes
    bad = b"\x96\xcc\x01" + good[2:]
    assert env.version == 1
    assert _reason(validator(), bad) == (Outcome.REJECT, "malformed")


def test_newer_version_is_ignored() -> None:
    data = msgpack.packb([2, "signals", NET, A, b"x", b"\x00" * 64], use_bin_type=True)
    assert _reason(validator(), data) == (Outcome.IGNORE, "unsupported_version")


def test_wrong_network_is_rejected() -> None:
    assert _reason(validator(), seal(KS[A], payload(A, 1, net="othernet"))) == (
        Outcome.REJECT,
        "wrong_network",
    )


def test_unknown_signer_is_rejected() -> None:
    outsider = keys(5)["bank-e"]
    assert _reason(validator(), seal(outsider, payload("bank-e", 1))) == (
        Outcome.REJECT,
        "unknown_signer",
    )


def test_forged_signature_is_rejected() -> None:
    # bank-b signs a payload claiming to come from bank-a
    assert _reason(validator(), seal(KS[B], payload(A, 1))) == (Outcome.REJECT, "bad_signature")


def test_tampered_payload_is_rejected() -> None:
    data = bytearray(seal(KS[A], payload(A, 1)))
    i = bytes(data).index(b"velocity")
    data[i] ^= 0x01
    assert _reason(validator(), bytes(data)) == (Outcome.REJECT, "bad_signature")


def test_signature_from_another_context_is_rejected() -> None:
    # same key, same bytes, signed as an attestation: must not pass as signals
    p = encode_payload(payload(A, 1))
    att = decode_envelope(seal_bytes(KS[A], "attestation", NET, A, p))
    relabelled = encode_envelope(
        type(att)(att.version, "signals", att.network_id, att.signer, att.payload, att.signature)
    )
    assert _reason(validator(), relabelled) == (Outcome.REJECT, "bad_signature")
    assert _reason(validator(), seal_bytes(KS[A], "attestation", NET, A, p)) == (
        Outcome.REJECT,
        "wrong_type",
    )


def test_header_mismatch_is_rejected() -> None:
    p = encode_payload(payload(B, 1))
    assert _reason(validator(), seal_bytes(KS[A], "signals", NET, A, p)) == (
        Outcome.REJECT,
        "header_mismatch",
    )


def test_replay_is_ignored_and_does_not_count_twice() -> None:
    v = validator()
    data = seal(KS[A], payload(A, 7))
    assert v.validate(data, T0).outcome is Outcome.ACCEPT
    assert _reason(v, data, T0 + 1) == (Outcome.IGNORE, "replay")
    assert v.counters["signals_envelopes_accepted"] == 1


def test_out_of_order_within_window_is_accepted_below_window_is_not() -> None:
    v = validator(replay_window=10)
    assert v.validate(seal(KS[A], payload(A, 100)), T0).outcome is Outcome.ACCEPT
    assert v.validate(seal(KS[A], payload(A, 95)), T0).outcome is Outcome.ACCEPT
    assert v.validate(seal(KS[A], payload(A, 90)), T0).reason == "replay"


def test_expired_and_skewed_are_ignored() -> None:
    v = validator(max_age_us=1_000_000, max_skew_us=1_000_000)
    old = seal(KS[A], payload(A, 1, now=T0 - 5_000_000))
    assert v.validate(old, T0).reason == "expired"
    future = seal(KS[A], payload(A, 2, now=T0 + 5_000_000))
    assert v.validate(future, T0).reason == "clock_skew"
    dead = SignalPayload(NET, A, 0, 3, T0, (signal(0, now=T0 - 10, ttl=5),))
    assert v.validate(seal(KS[A], dead), T0).reason == "expired"
    assert v.counters["signals_ignore_expired"] == 2
    assert v.counters["signals_ignore_clock_skew"] == 1


def test_expired_signals_are_filtered_out_of_an_accepted_envelope() -> None:
    p = SignalPayload(NET, A, 0, 3, T0, (signal(0, ttl=5), signal(1)))
    verdict = validator().validate(seal(KS[A], p), T0 + 10)
    assert verdict.payload is not None and len(verdict.payload.signals) == 1


def test_rate_quota_per_member() -> None:
    v = validator(rate_per_s=1.0, burst=3.0)
    outs = [v.validate(seal(KS[A], payload(A, s)), T0).reason for s in range(5)]
    assert outs == ["ok", "ok", "ok", "rate_limited", "rate_limited"]
    # another member has its own bucket; time refills
    assert v.validate(seal(KS[B], payload(B, 1)), T0).outcome is Outcome.ACCEPT
    assert v.validate(seal(KS[A], payload(A, 9)), T0 + 1_000_000).outcome is Outcome.ACCEPT


def test_unknown_epoch_is_ignored() -> None:
    v = Validator(NET, members(KS), accepted_epochs=lambda now: frozenset({3}))
    assert v.validate(seal(KS[A], payload(A, 1, epoch=2)), T0).reason == "unknown_epoch"
    assert v.validate(seal(KS[A], payload(A, 1, epoch=3)), T0).outcome is Outcome.ACCEPT


def test_replay_state_survives_snapshot_restore() -> None:
    v = validator()
    data = seal(KS[A], payload(A, 5))
    assert v.validate(data, T0).outcome is Outcome.ACCEPT
    snap = msgpack.unpackb(msgpack.packb(v.snapshot()), strict_map_key=False)
    v2 = validator()
    v2.restore(snap)
    assert v2.validate(data, T0).reason == "replay"
    assert v2.highest_seq(A) == 5


@pytest.mark.parametrize(
    "bad", [None, {"v": 2}, {"v": 1, "windows": []}, {"v": 1, "windows": {"a": [1]}}]
)
def test_restore_rejects_corrupt_state(bad: object) -> None:
    with pytest.raises(ValueError):
        validator().restore(bad)
