"""Invariants of the signal codec and validator (Hypothesis)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.core import crypto
from fraudnet.core.signals import (
    ENTITY_CODES,
    Outcome,
    Signal,
    SignalPayload,
    Validator,
    decode_payload,
    encode_payload,
    seal,
)
from fraudnet.errors import SignalRejected

KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
NET, SIGNER, NOW = "propnet", "bank-p", 1_700_000_000_000_000

reasons = st.lists(st.from_regex(r"[a-z0-9][a-z0-9_]{0,15}", fullmatch=True), max_size=4)
signals = st.builds(
    lambda kind, ps, score, rs, obs, ttl, ev: Signal(
        kind, ps, score, tuple(rs), obs, obs + ttl, ev
    ),
    st.sampled_from(sorted(ENTITY_CODES)),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 1000),
    reasons,
    st.integers(0, 2**62),
    st.integers(1, 2**40),
    st.tuples(*[st.sampled_from([0, 1, 2, 4, 1024, 1 << 20])] * 2),
)
payloads = st.builds(
    lambda epoch, seq, created, sigs: SignalPayload(NET, SIGNER, epoch, seq, created, tuple(sigs)),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.lists(signals, min_size=1, max_size=8),
)


@given(payloads)
def test_payload_round_trips(p: SignalPayload) -> None:
    assert decode_payload(encode_payload(p)) == p


@given(st.binary(max_size=512))
def test_decoding_arbitrary_bytes_never_crashes(data: bytes) -> None:
    try:
        decode_payload(data)
    except SignalRejected as e:
        assert e.reason == "malformed_payload"


@settings(max_examples=60)
@given(payloads, st.data())
def test_any_single_bit_flip_is_never_accepted(p: SignalPayload, data: st.DataObject) -> None:
    wire = bytearray(seal(KEY, p))
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    v = Validator(NET, {SIGNER: crypto.public_bytes(KEY)})
    verdict = v.validate(bytes(wire), NOW)
    assert verdict.outcome is not Outcome.ACCEPT
    assert sum(v.counters.values()) == 1  # exactly one reason counted


@settings(max_examples=40)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=60))
def test_no_sequence_number_is_ever_accepted_twice(seqs: list[int]) -> None:
    v = Validator(NET, {SIGNER: crypto.public_bytes(KEY)})
    v.config = type(v.config)(replay_window=64, rate_per_s=1e9, burst=1e9)
    sig = Signal("card", b"\x01" * 32, 500, (), NOW, NOW + 10**9)
    accepted: list[int] = []
    for s in seqs:
        verdict = v.validate(seal(KEY, SignalPayload(NET, SIGNER, 0, s, NOW, (sig,))), NOW)
        if verdict.outcome is Outcome.ACCEPT:
            accepted.append(s)
    assert len(accepted) == len(set(accepted))
    assert set(accepted) >= {seqs[0]}
