"""An honest member's attestation policy: what to sign, from local evidence only.

The attester never sees network verdicts or other members' statements: its
inputs are the member's own flags (:meth:`Attester.flag`) and false-positive
labels (:meth:`Attester.unflag`), which is what keeps attestations
independent (the assumption the quorum thresholds rest on).

Rules (they make the honest behaviour the proofs in ``docs/consensus.md``
rely on):

1. ``seq`` is strictly increasing per entity, so two statements of this
   member never share an identity: an honest member never equivocates.
2. Per entity and window it signs at most one of ``risk`` / ``clear``. A
   change of mind from risk to clear inside a window signs ``retract`` there
   and ``clear`` from the next window on; hence block and clear are never both
   certifiable for one entity and window.
3. An opinion lasts ``opinion_ttl_us`` after the last local evidence; while it
   lasts it is renewed at the start of every window (:meth:`Attester.tick`),
   so a verdict that still has support does not expire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .attestation import NO_EVIDENCE, Attestation, Evidence, SignedAttestation, sign_attestation
from .verdict import VerdictPolicy

__all__ = ["Attester"]

Opinion = Literal["risk", "clear"]


@dataclass(slots=True)
class _Entity:
    opinion: Opinion
    until_us: int
    seq: int = 0
    band: int = 0
    evidence: Evidence = NO_EVIDENCE
    #: window -> stance last signed in it
    signed: dict[int, str] | None = None


class Attester:
    """Signs this member's attestations (see module docstring for the rules)."""

    def __init__(
        self,
        member_id: str,
        key: Ed25519PrivateKey,
        network: str,
        key_epoch: int,
        policy: VerdictPolicy,
        *,
        opinion_ttl_us: int = 1_800_000_000,
    ) -> None:
        self.member_id = member_id
        self._key = key
        self.network = network
        self.key_epoch = key_epoch
        self.policy = policy
        self.opinion_ttl_us = opinion_ttl_us
        self._entities: dict[tuple[str, bytes], _Entity] = {}

    def _sign(
        self, kind: str, entity: bytes, e: _Entity, stance: str, now_us: int
    ) -> SignedAttestation:
        w = self.policy.window_of(now_us)
        e.seq += 1
        if e.signed is None:
            e.signed = {}
        e.signed = {k: v for k, v in e.signed.items() if k >= w - 1}
        e.signed[w] = stance
        att = Attestation(
            network=self.network, member_id=self.member_id, entity_kind=kind, entity=entity,
            key_epoch=self.key_epoch, window=w, seq=e.seq, stance=stance,  # type: ignore[arg-type]  # stance is a Stance literal by construction
            score_band=e.band if stance == "risk" else 0, evidence=e.evidence, issued_at_us=now_us,
        )  # fmt: skip
        return sign_attestation(att, self._key)

    def flag(
        self, kind: str, entity: bytes, now_us: int, *, score_band: int = 10,
        evidence: Evidence = NO_EVIDENCE,
    ) -> list[SignedAttestation]:  # fmt: skip
        """Local evidence flags ``entity``: sign ``risk`` now unless already signed this window."""
        e = self._entities.get((kind, entity))
        if e is None:
            e = self._entities[(kind, entity)] = _Entity("risk", 0)
        e.opinion, e.until_us = "risk", now_us + self.opinion_ttl_us
        e.band, e.evidence = max(score_band, e.band), evidence
        w = self.policy.window_of(now_us)
        signed = (e.signed or {}).get(w)
        if signed == "risk" or signed == "clear":  # rule 2: one side per window
            return []
        return [self._sign(kind, entity, e, "risk", now_us)]

    def unflag(
        self, kind: str, entity: bytes, now_us: int, *, evidence: Evidence = NO_EVIDENCE
    ) -> list[SignedAttestation]:
        """Local evidence clears ``entity`` (e.g. a false-positive label)."""
        e = self._entities.get((kind, entity))
        if e is None:
            e = self._entities[(kind, entity)] = _Entity("clear", 0)
        e.opinion, e.until_us, e.evidence, e.band = (
            "clear",
            now_us + self.opinion_ttl_us,
            evidence,
            0,
        )
        w = self.policy.window_of(now_us)
        signed = (e.signed or {}).get(w)
        if signed == "risk":
            return [self._sign(kind, entity, e, "retract", now_us)]
        if signed in ("clear", "retract"):
            return []
        return [self._sign(kind, entity, e, "clear", now_us)]

    def tick(self, now_us: int) -> list[SignedAttestation]:
        """Renew live opinions in the current window; forget expired ones (rule 3)."""
        w = self.policy.window_of(now_us)
        out: list[SignedAttestation] = []
        for k in list(self._entities):
            e = self._entities[k]
            if e.until_us <= now_us:
                del self._entities[k]
                continue
            if (e.signed or {}).get(w) is None:
                out.append(self._sign(k[0], k[1], e, e.opinion, now_us))
        return out

    def next_tick_at(self, now_us: int) -> int:
        """When :meth:`tick` next has something to do: the start of the next window."""
        return self.policy.starts_at(self.policy.window_of(now_us) + 1)

    def rekey(self, key_epoch: int) -> None:
        """The network pseudonymisation key rotated: old pseudonyms are meaningless now."""
        self.key_epoch = key_epoch
        self._entities.clear()
