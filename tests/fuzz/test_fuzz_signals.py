"""Fuzz the signal envelope decoder, the payload decoder and the validation pipeline.

Oracle: the decoders return a value or raise :class:`SignalRejected`; the
validator never raises, returns exactly one verdict per input, counts it
once, and accepts only envelopes whose payload decodes strictly, is signed by
the member it names and is fresh.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fuzz_support import fuzz_modes, mutate_bytes, mutate_value, pack, run_target, unpack
from hypothesis import strategies as st

from fraudnet.core import crypto
from fraudnet.core.signals import (
    Envelope,
    Outcome,
    Signal,
    SignalPayload,
    ValidationConfig,
    Validator,
    decode_envelope,
    decode_payload,
    encode_payload,
    seal,
    seal_bytes,
)
from fraudnet.errors import SignalRejected

NET = "fuzznet"
NOW = 1_700_000_000_000_000
KEYS = {f"bank-{c}": Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32)
        for i, c in enumerate("abc")}  # fmt: skip
MEMBERS = {n: crypto.public_bytes(k) for n, k in KEYS.items()}


def _signal(i: int, n_reasons: int = 1) -> Signal:
    return Signal(("card", "terminal", "device", "merchant")[i % 4], bytes([i]) * 32, 100 * (i % 11),
                  tuple(f"r{j}" for j in range(n_reasons)), NOW - 10, NOW + 3_600_000_000, (8, 1))  # fmt: skip


PAYLOADS = [
    SignalPayload(NET, "bank-a", 0, 7, NOW, (_signal(1),)),
    SignalPayload(NET, "bank-b", 3, 2**40, NOW - 5_000_000, tuple(_signal(i, 4) for i in range(9))),
    SignalPayload(NET, "bank-c", 0, 0, NOW + 1_000_000, (_signal(3, 0), _signal(4, 2))),
]
ENVELOPES = [seal(KEYS[p.signer], p) for p in PAYLOADS]
PAYLOAD_BYTES = [encode_payload(p) for p in PAYLOADS]
PAYLOAD_WIRE = [unpack(b) for b in PAYLOAD_BYTES]
ENVELOPE_WIRE = [unpack(e) for e in ENVELOPES]


def _check_envelope(data: bytes) -> None:
    env = decode_envelope(data)
    assert isinstance(env, Envelope) and len(env.signature) == 64


def _check_payload(data: bytes) -> None:
    p = decode_payload(data)
    assert encode_payload(p) == data  # canonical: exactly one accepted encoding


def _validate(data: bytes) -> None:
    v = Validator(NET, MEMBERS, ValidationConfig(max_age_us=60_000_000))
    before = sum(v.counters.values())
    verdict = v.validate(data, NOW)
    counted = sum(v.counters.values()) - before
    if verdict.outcome is Outcome.ACCEPT:
        p = verdict.payload
        assert p is not None and p.network_id == NET and p.signer in MEMBERS
        assert all(s.expires_at_us > NOW for s in p.signals)
        assert counted == 1 + len(p.signals)
    else:
        assert verdict.payload is None and counted == 1


# bytes of the frame, mutated; or the frame's decoded array with wrong types swapped in
envelope_cases = st.one_of(
    mutate_bytes(ENVELOPES), mutate_value(ENVELOPE_WIRE).map(pack), st.binary(max_size=256)
)


@st.composite
def resigned(draw: st.DrawFn) -> bytes:
    """A mutated payload *correctly signed* by a member: reaches the payload decoder."""
    if draw(st.booleans()):
        raw = draw(mutate_bytes(PAYLOAD_BYTES))
    else:
        raw = pack(draw(mutate_value(PAYLOAD_WIRE)))
    signer = draw(st.sampled_from(sorted(KEYS)))
    typ = draw(st.sampled_from(["signals", "signals", "attestation"]))
    net = draw(st.sampled_from([NET, NET, "othernet"]))
    return seal_bytes(KEYS[signer], typ, net, signer, raw)


validator_cases = st.one_of(envelope_cases, resigned())


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_signal_envelope_decoder(mode: str) -> None:
    run_target("signal_envelope", mode, envelope_cases, _check_envelope, (SignalRejected,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_signal_payload_decoder(mode: str) -> None:
    cases = st.one_of(mutate_bytes(PAYLOAD_BYTES), mutate_value(PAYLOAD_WIRE).map(pack))
    run_target("signal_payload", mode, cases, _check_payload, (SignalRejected,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_signal_validation_pipeline(mode: str) -> None:
    run_target("signal_validator", mode, validator_cases, _validate, ())


def test_seeds_are_valid_so_mutations_start_from_real_encodings() -> None:
    for data in ENVELOPES:
        v = Validator(NET, MEMBERS)
        assert v.validate(data, NOW).outcome is Outcome.ACCEPT
    assert [decode_payload(b) for b in PAYLOAD_BYTES] == PAYLOADS


@pytest.mark.parametrize(
    "data",
    [
        b"\x96\x01\xa7signals\xa7fuzznet\xa6bank-a\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB
        b"\xdd\xff\xff\xff\xff" + b"\x01" * 64,  # array32 of 4G items
        b"\x91" * 100_000,  # 100,000-deep nesting
        b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
    ],
)
def test_huge_length_headers_are_rejected_without_allocating(data: bytes) -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(SignalRejected):
            decode_envelope(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
