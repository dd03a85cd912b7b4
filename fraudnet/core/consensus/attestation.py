"""Attestations: a member's signed statement about one entity pseudonym in one window.

Wire form (what is gossiped): ``[member_id, raw, sig]`` where ``raw`` is the
canonical encoding of an :class:`Attestation` and ``sig`` the member's
``attestation``-context signature over ``raw``. The receiver looks the signer
up in the roster by the *outer* member id and verifies the signature over
``raw`` before decoding it (then checks the inner member id matches).

Stances:

* ``risk`` -- the member's local evidence flags the entity.
* ``clear`` -- the member's local evidence says the entity is genuine
  (e.g. a confirmed false positive).
* ``retract`` -- withdraws the member's earlier statement in the same window
  without taking the opposite side (an honest member never signs both
  ``risk`` and ``clear`` for one entity and window; see :mod:`.attester`).

A statement is identified by ``(member, entity kind, entity, window, seq)``.
A later ``seq`` supersedes an earlier one (a change of mind); two different
statements with the same identity are an equivocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.errors import ConsensusError

from .. import crypto
from ..ids import ENTITY_KINDS
from .codec import pack, unpack_canonical, want_bytes, want_int, want_list, want_str
from .roster import Roster

__all__ = [
    "MAX_ATTESTATION_BYTES",
    "NO_EVIDENCE",
    "STANCES",
    "Attestation",
    "Evidence",
    "SignedAttestation",
    "Stance",
    "open_attestation",
    "sign_attestation",
    "verify_cached",
]

Stance = Literal["risk", "clear", "retract"]
STANCES: Final[tuple[Stance, ...]] = ("risk", "clear", "retract")
MAX_ATTESTATION_BYTES: Final = 1024
MAX_SCORE_BAND: Final = 10
MAX_REASONS: Final = 8
MAX_REASON_LEN: Final = 32
MAX_SEQ: Final = (1 << 32) - 1
_MAGIC: Final = "fraudnet-attestation"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Bounded summary of the local evidence: counts and reason codes, never raw data."""

    n_tx: int = 0
    n_flagged: int = 0
    reasons: tuple[str, ...] = ()

    def to_wire(self) -> list[Any]:
        return [self.n_tx, self.n_flagged, list(self.reasons)]

    @classmethod
    def from_wire(cls, w: Any) -> Evidence:
        w = want_list(w, "attestation evidence", n=3)
        reasons = want_list(w[2], "attestation reasons", max_len=MAX_REASONS)
        return cls(
            n_tx=want_int(w[0], "attestation evidence n_tx", hi=MAX_SEQ),
            n_flagged=want_int(w[1], "attestation evidence n_flagged", hi=MAX_SEQ),
            reasons=tuple(
                want_str(r, "attestation reason", max_len=MAX_REASON_LEN) for r in reasons
            ),
        )


NO_EVIDENCE: Final = Evidence()


@dataclass(frozen=True, slots=True)
class Attestation:
    """One statement (see module docstring). ``window`` indexes a verdict window."""

    network: str
    member_id: str
    entity_kind: str
    entity: bytes
    key_epoch: int
    window: int
    seq: int
    stance: Stance
    score_band: int = 0
    evidence: Evidence = NO_EVIDENCE
    issued_at_us: int = 0

    def __post_init__(self) -> None:
        if self.entity_kind not in ENTITY_KINDS:
            raise ConsensusError(
                "malformed", f"attestation: unknown entity kind {self.entity_kind!r}"
            )
        if self.stance not in STANCES:
            raise ConsensusError("malformed", f"attestation: unknown stance {self.stance!r}")
        want_bytes(self.entity, "attestation entity", max_len=32)
        if len(self.entity) < 16:
            raise ConsensusError("malformed", "attestation entity: pseudonym shorter than 16 bytes")
        want_int(self.seq, "attestation seq", hi=MAX_SEQ)
        want_int(self.score_band, "attestation score band", hi=MAX_SCORE_BAND)
        if len(self.evidence.reasons) > MAX_REASONS:
            raise ConsensusError("oversize", "attestation: too many reason codes")

    @property
    def key(self) -> tuple[str, str, bytes, int, int]:
        """Statement identity: (member, kind, entity, window, seq)."""
        return (self.member_id, self.entity_kind, self.entity, self.window, self.seq)

    def encode(self) -> bytes:
        return pack(
            [
                _MAGIC, 1, self.network, self.member_id, self.entity_kind, self.entity,
                self.key_epoch, self.window, self.seq, self.stance, self.score_band,
                self.evidence.to_wire(), self.issued_at_us,
            ]
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> Attestation:
        w = want_list(
            unpack_canonical(data, "attestation", MAX_ATTESTATION_BYTES), "attestation", n=13
        )
        if w[0] != _MAGIC or w[1] != 1:
            raise ConsensusError("malformed", "attestation: unknown magic or format version")
        stance = w[9]
        if stance not in STANCES:
            raise ConsensusError("malformed", f"attestation: unknown stance {stance!r}")
        return cls(
            network=want_str(w[2], "attestation network", min_len=1),
            member_id=want_str(w[3], "attestation member", min_len=1),
            entity_kind=want_str(w[4], "attestation entity kind", min_len=1, max_len=16),
            entity=want_bytes(w[5], "attestation entity", max_len=32),
            key_epoch=want_int(w[6], "attestation key epoch"),
            window=want_int(w[7], "attestation window"),
            seq=want_int(w[8], "attestation seq", hi=MAX_SEQ),
            stance=stance,
            score_band=want_int(w[10], "attestation score band", hi=MAX_SCORE_BAND),
            evidence=Evidence.from_wire(w[11]),
            issued_at_us=want_int(w[12], "attestation issued-at"),
        )


@dataclass(frozen=True, slots=True)
class SignedAttestation:
    """An attestation with the exact bytes its signer signed."""

    body: Attestation
    raw: bytes
    sig: bytes

    def to_wire(self) -> bytes:
        return pack([self.body.member_id, self.raw, self.sig])

    def verifies_with(self, public_key: bytes) -> bool:
        return verify_cached(public_key, self.sig, b"attestation", self.body.network, self.raw)


@lru_cache(maxsize=1 << 16)
def verify_cached(public_key: bytes, sig: bytes, context: bytes, network: str, raw: bytes) -> bool:
    """Memoised :func:`fraudnet.core.crypto.verify` (a pure function, so caching is sound)."""
    return crypto.verify(public_key, sig, context, network.encode("ascii"), raw)


def sign_attestation(att: Attestation, key: Ed25519PrivateKey) -> SignedAttestation:
    raw = att.encode()
    sig = crypto.sign(key, b"attestation", att.network.encode("ascii"), raw)
    return SignedAttestation(att, raw, sig)


def open_attestation(data: bytes, roster: Roster) -> SignedAttestation:
    """Verify a gossiped attestation against ``roster`` (signature first), then decode it.

    Raises :class:`~fraudnet.errors.ConsensusError` with a stable ``reason``:
    ``malformed``, ``oversize``, ``non-canonical``, ``not-member``,
    ``bad-signature``, ``wrong-network``, ``wrong-epoch``.
    """
    w = want_list(
        unpack_canonical(data, "attestation envelope", MAX_ATTESTATION_BYTES + 160),
        "attestation envelope",
        n=3,
    )
    member_id = want_str(w[0], "attestation envelope member", min_len=1)
    raw = want_bytes(w[1], "attestation envelope body", max_len=MAX_ATTESTATION_BYTES)
    sig = want_bytes(w[2], "attestation envelope signature", n=crypto.SIGNATURE_LEN)
    m = roster.member(member_id)
    if m is None:
        raise ConsensusError("not-member", f"{member_id!r} is not in roster v{roster.version}")
    if not verify_cached(m.public_key, sig, b"attestation", roster.network, raw):
        raise ConsensusError("bad-signature", f"attestation claiming to be from {member_id!r}")
    body = Attestation.decode(raw)
    if body.member_id != member_id:
        raise ConsensusError("malformed", "attestation: signer differs from envelope member")
    if body.network != roster.network:
        raise ConsensusError("wrong-network", f"attestation for network {body.network!r}")
    if body.key_epoch != roster.key_epoch:
        raise ConsensusError(
            "wrong-epoch", f"attestation key epoch {body.key_epoch}, roster {roster.key_epoch}"
        )
    return SignedAttestation(body, raw, sig)
