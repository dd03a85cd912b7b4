"""Signal envelopes: types and the canonical msgpack codec.

Theory of operation (byte-level spec in ``docs/protocol.md``):

* An **envelope** on the wire is the msgpack array
  ``[version, type, network_id, signer, payload, signature]``. ``payload`` is
  the msgpack-encoded inner message (a ``bin``); ``signature`` is Ed25519 over
  ``fraudnet.core.crypto.signing_input(context_of(type), network_id, payload)``.
  The outer fields needed to verify (type -> context, network, signer) are
  readable without decoding the payload, so a receiver verifies the received
  payload bytes *before* decoding them.
* ``type`` tags the payload so other message kinds (attestations, roster
  updates, checkpoints) share the envelope; each type maps to one signature
  context, so changing the tag invalidates the signature.
* Encoding is canonical: msgpack's shortest form for every integer, string and
  binary, arrays only (no maps, no floats). The decoder re-encodes what it
  decoded and rejects the input unless the bytes are identical, so every
  accepted payload has exactly one encoding.

Every decode error raises :class:`~fraudnet.errors.SignalRejected` whose
``reason`` is a stable metrics label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from fraudnet.errors import SignalRejected

__all__ = [
    "ENTITY_CODES",
    "MAX_ENVELOPE_BYTES",
    "MAX_REASONS",
    "MAX_SIGNALS",
    "PSEUDONYM_LEN",
    "TYPE_CONTEXTS",
    "VERSION",
    "Envelope",
    "Signal",
    "SignalPayload",
    "coarse_count",
    "decode_envelope",
    "decode_payload",
    "encode_envelope",
    "encode_payload",
]

VERSION: Final = 1
#: hard cap on one envelope on the wire (checked before anything else)
MAX_ENVELOPE_BYTES: Final = 64 * 1024
MAX_SIGNALS: Final = 256
MAX_REASONS: Final = 4
MAX_REASON_LEN: Final = 32
MAX_ID_LEN: Final = 64
PSEUDONYM_LEN: Final = 32
SIGNATURE_LEN: Final = 64
MAX_EVIDENCE: Final = 1 << 20
MAX_SCORE: Final = 1000
MAX_U64: Final = (1 << 64) - 1

#: entity kind -> wire code (never renumber; append only)
ENTITY_CODES: Final[dict[str, int]] = {"card": 0, "terminal": 1, "device": 2, "merchant": 3}
_KIND_OF_CODE: Final = {v: k for k, v in ENTITY_CODES.items()}
#: envelope type tag -> signature context of :mod:`fraudnet.core.crypto`
TYPE_CONTEXTS: Final[dict[str, bytes]] = {
    "signals": b"signal-envelope",
    "attestation": b"attestation",
    "roster-vote": b"roster-vote",
    "audit-checkpoint": b"audit-checkpoint",
}
_LABEL: Final = re.compile(r"[a-z0-9][a-z0-9_.:-]*\Z")
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")


def coarse_count(n: int) -> int:
    """Round a count down to 0 or a power of two (evidence is shared coarsely).

    >>> [coarse_count(n) for n in (0, 1, 2, 3, 7, 8, 1000)]
    [0, 1, 2, 2, 4, 8, 512]
    """
    if n <= 0:
        return 0
    return 1 << (min(n, MAX_EVIDENCE).bit_length() - 1)


def _is_coarse(n: int) -> bool:
    return n == 0 or (0 < n <= MAX_EVIDENCE and n & (n - 1) == 0)


def _check_id(what: str, value: str) -> None:
    if not (0 < len(value) <= MAX_ID_LEN and _ID.match(value)):
        raise ValueError(f"{what} must be 1-{MAX_ID_LEN} chars of [A-Za-z0-9_.:-], got {value!r}")


@dataclass(frozen=True, slots=True)
class Signal:
    """One risk signal about one pseudonymous entity.

    ``score_milli`` is the risk in thousandths (0-1000). ``evidence`` holds
    coarse counts (0 or a power of two): ``(transactions, alerts)`` the signer
    saw for the entity. Times are microseconds since the Unix epoch.
    """

    kind: str
    pseudonym: bytes
    score_milli: int
    reasons: tuple[str, ...]
    observed_at_us: int
    expires_at_us: int
    evidence: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.kind not in ENTITY_CODES:
            raise ValueError(f"signal kind must be one of {sorted(ENTITY_CODES)}")
        if len(self.pseudonym) != PSEUDONYM_LEN:
            raise ValueError(f"pseudonym must be {PSEUDONYM_LEN} bytes")
        if not 0 <= self.score_milli <= MAX_SCORE:
            raise ValueError("score_milli must be in 0..1000")
        if len(self.reasons) > MAX_REASONS:
            raise ValueError(f"at most {MAX_REASONS} reason codes")
        for r in self.reasons:
            if not (len(r) <= MAX_REASON_LEN and _LABEL.match(r)):
                raise ValueError(f"reason code {r!r} must be <= 32 chars of [a-z0-9_.:-]")
        if not 0 <= self.observed_at_us < self.expires_at_us <= MAX_U64:
            raise ValueError("need 0 <= observed_at_us < expires_at_us")
        if len(self.evidence) != 2 or not all(_is_coarse(e) for e in self.evidence):
            raise ValueError("evidence must be two coarse counts (0 or a power of two)")

    def to_wire(self) -> list[Any]:
        return [
            ENTITY_CODES[self.kind], self.pseudonym, self.score_milli, list(self.reasons),
            self.observed_at_us, self.expires_at_us, list(self.evidence),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class SignalPayload:
    """The signed inner message of a ``signals`` envelope."""

    network_id: str
    signer: str
    key_epoch: int
    seq: int
    created_at_us: int
    signals: tuple[Signal, ...]

    def __post_init__(self) -> None:
        _check_id("network_id", self.network_id)
        _check_id("signer", self.signer)
        for name in ("key_epoch", "seq", "created_at_us"):
            v = getattr(self, name)
            if not 0 <= v <= MAX_U64:
                raise ValueError(f"{name} must be an unsigned 64-bit integer")
        if not 1 <= len(self.signals) <= MAX_SIGNALS:
            raise ValueError(f"an envelope carries 1-{MAX_SIGNALS} signals")

    def to_wire(self) -> list[Any]:
        return [
            self.network_id, self.signer, self.key_epoch, self.seq, self.created_at_us,
            [s.to_wire() for s in self.signals],
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Envelope:
    """The outer, verifiable frame: everything needed to check the signature."""

    version: int
    type: str
    network_id: str
    signer: str
    payload: bytes
    signature: bytes


def _pack(obj: Any) -> bytes:
    out = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def encode_payload(p: SignalPayload) -> bytes:
    """Canonical bytes of a payload (what gets signed)."""
    return _pack(p.to_wire())


def encode_envelope(e: Envelope) -> bytes:
    return _pack([e.version, e.type, e.network_id, e.signer, e.payload, e.signature])


def _unpack_canonical(data: bytes, what: str, reason: str, **limits: int) -> Any:
    try:
        obj = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, max_map_len=0,
            max_ext_len=0, **limits,
        )  # fmt: skip
    except Exception as e:
        raise SignalRejected(reason, f"{what} is not valid msgpack ({type(e).__name__})") from None
    try:
        again = _pack(obj)
    except Exception:
        raise SignalRejected(reason, f"{what} holds an unencodable value") from None
    if again != data:
        raise SignalRejected(reason, f"{what} is not in canonical encoding")
    return obj


def _int(v: Any, lo: int = 0, hi: int = MAX_U64) -> bool:
    return type(v) is int and lo <= v <= hi


def decode_envelope(data: bytes) -> Envelope:
    """Decode the outer frame only (the payload stays bytes). Size-check first."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise SignalRejected("oversized", f"{len(data)} bytes > {MAX_ENVELOPE_BYTES}")
    obj = _unpack_canonical(
        data, "envelope", "malformed", max_array_len=8, max_str_len=MAX_ID_LEN,
        max_bin_len=MAX_ENVELOPE_BYTES,
    )  # fmt: skip
    if not isinstance(obj, list) or len(obj) < 1 or not _int(obj[0]):
        raise SignalRejected("malformed", "envelope must be an array starting with a version")
    if obj[0] != VERSION:
        raise SignalRejected(
            "unsupported_version", f"version {obj[0]} (this node speaks {VERSION})", ignore=True
        )
    if len(obj) != 6:
        raise SignalRejected("malformed", f"envelope v1 has 6 items, got {len(obj)}")
    _, typ, net, signer, payload, sig = obj
    if not (isinstance(typ, str) and isinstance(net, str) and isinstance(signer, str)):
        raise SignalRejected("malformed", "type, network_id and signer must be strings")
    if not (isinstance(payload, bytes) and isinstance(sig, bytes) and len(sig) == SIGNATURE_LEN):
        raise SignalRejected("malformed", "payload must be bin and signature 64 bytes of bin")
    return Envelope(VERSION, typ, net, signer, payload, sig)


def _signal_from_wire(w: Any, i: int) -> Signal:
    if not (isinstance(w, list) and len(w) == 7):
        raise SignalRejected("malformed_payload", f"signal {i}: expected an array of 7")
    code, ps, score, reasons, obs, exp, ev = w
    ok = (
        _int(code) and code in _KIND_OF_CODE and isinstance(ps, bytes) and _int(score)
        and isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)
        and _int(obs) and _int(exp) and isinstance(ev, list) and all(_int(x) for x in ev)
    )  # fmt: skip
    if not ok:
        raise SignalRejected("malformed_payload", f"signal {i}: wrong field types")
    try:
        return Signal(
            _KIND_OF_CODE[code], ps, score, tuple(reasons), obs, exp, tuple(ev)
        )  # length checked in __post_init__
    except ValueError as e:
        raise SignalRejected("malformed_payload", f"signal {i}: {e}") from None


def decode_payload(data: bytes) -> SignalPayload:
    """Decode a verified payload strictly (types, bounds, canonical form)."""
    obj = _unpack_canonical(
        data, "payload", "malformed_payload", max_array_len=MAX_SIGNALS,
        max_str_len=MAX_ID_LEN, max_bin_len=PSEUDONYM_LEN,
    )  # fmt: skip
    if not (isinstance(obj, list) and len(obj) == 6):
        raise SignalRejected("malformed_payload", "payload must be an array of 6")
    net, signer, epoch, seq, created, sigs = obj
    if not (isinstance(net, str) and isinstance(signer, str)):
        raise SignalRejected("malformed_payload", "network_id and signer must be strings")
    if not (_int(epoch) and _int(seq) and _int(created) and isinstance(sigs, list)):
        raise SignalRejected("malformed_payload", "epoch, seq, created_at must be uints")
    signals = tuple(_signal_from_wire(w, i) for i, w in enumerate(sigs))
    try:
        return SignalPayload(net, signer, epoch, seq, created, signals)
    except ValueError as e:
        raise SignalRejected("malformed_payload", str(e)) from None
