"""Equivocation proofs: two conflicting statements signed by one member.

Two kinds:

* ``attestation`` -- two different attestations with the same
  (network, member, entity kind, entity, window, seq), both validly signed.
* ``roster-vote`` -- two votes of one member for different proposals that
  change the same roster version (same network and base version).

A proof is self-certifying: it holds the two signed byte strings, so anyone
with the roster chain can check it (:func:`verify_proof`); it needs no trust
in whoever reported it. The pair is stored in a canonical order (sorted by
bytes) so one equivocation has one encoding. For gossip a reporter wraps it in
an envelope signed in the ``equivocation-proof`` context
(:func:`seal_proof` / :func:`open_proof`), which makes reports attributable
and rate-limitable; validity never depends on the reporter.

A member with a valid proof against it is ignored by the verdict function
from then on (:mod:`.verdict`, rule 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.errors import ConsensusError

from .. import crypto
from .attestation import MAX_ATTESTATION_BYTES, Attestation, SignedAttestation, verify_cached
from .chain import RosterChain
from .codec import pack, unpack_canonical, want_bytes, want_list, want_str
from .proposal import MAX_PROPOSAL_BYTES, Proposal

__all__ = [
    "EquivocationProof",
    "ProofKind",
    "attestation_equivocation",
    "open_proof",
    "seal_proof",
    "verify_proof",
    "vote_equivocation",
]

ProofKind = Literal["attestation", "roster-vote"]
MAX_PROOF_BYTES: Final = 2 * MAX_PROPOSAL_BYTES + 512
_MAGIC: Final = "fraudnet-equivocation"


@dataclass(frozen=True, slots=True)
class EquivocationProof:
    kind: ProofKind
    network: str
    member_id: str
    raw_a: bytes
    sig_a: bytes
    raw_b: bytes
    sig_b: bytes

    @classmethod
    def make(
        cls, kind: ProofKind, network: str, member_id: str, a: tuple[bytes, bytes],
        b: tuple[bytes, bytes],
    ) -> EquivocationProof:  # fmt: skip
        (ra, sa), (rb, sb) = sorted((a, b))
        return cls(kind, network, member_id, ra, sa, rb, sb)

    def encode(self) -> bytes:
        return pack(
            [
                _MAGIC, 1, self.kind, self.network, self.member_id,
                self.raw_a, self.sig_a, self.raw_b, self.sig_b,
            ]
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> EquivocationProof:
        w = want_list(unpack_canonical(data, "equivocation proof", MAX_PROOF_BYTES), "proof", n=9)
        if w[0] != _MAGIC or w[1] != 1 or w[2] not in ("attestation", "roster-vote"):
            raise ConsensusError("malformed", "equivocation proof: unknown magic, version or kind")
        raw_a = want_bytes(w[5], "proof statement a", max_len=MAX_PROPOSAL_BYTES)
        raw_b = want_bytes(w[7], "proof statement b", max_len=MAX_PROPOSAL_BYTES)
        if raw_a >= raw_b:
            raise ConsensusError("non-canonical", "equivocation proof: statements not in order")
        return cls(
            kind=w[2],
            network=want_str(w[3], "proof network", min_len=1),
            member_id=want_str(w[4], "proof member", min_len=1),
            raw_a=raw_a,
            sig_a=want_bytes(w[6], "proof signature a", n=crypto.SIGNATURE_LEN),
            raw_b=raw_b,
            sig_b=want_bytes(w[8], "proof signature b", n=crypto.SIGNATURE_LEN),
        )


def attestation_equivocation(
    a: SignedAttestation, b: SignedAttestation
) -> EquivocationProof | None:
    """A proof if ``a`` and ``b`` are different statements with one identity (else None).

    The caller has verified both signatures (they came through
    :func:`~.attestation.open_attestation`).
    """
    if a.raw == b.raw or a.body.key != b.body.key or a.body.network != b.body.network:
        return None
    return EquivocationProof.make(
        "attestation", a.body.network, a.body.member_id, (a.raw, a.sig), (b.raw, b.sig)
    )


def vote_equivocation(
    network: str, member_id: str, a: tuple[bytes, bytes], b: tuple[bytes, bytes]
) -> EquivocationProof | None:
    """A proof if votes ``a`` and ``b`` (proposal raw, signature) conflict (else None)."""
    if a[0] == b[0]:
        return None
    pa, pb = Proposal.decode(a[0]), Proposal.decode(b[0])
    if pa.base_version != pb.base_version or not pa.network == pb.network == network:
        return None
    return EquivocationProof.make("roster-vote", network, member_id, a, b)


def verify_proof(proof: EquivocationProof, chain: RosterChain) -> str:
    """Check ``proof`` against every key the member ever held; return the member id."""
    if proof.network != chain.tip.network:
        raise ConsensusError("wrong-network", f"proof for network {proof.network!r}")
    if proof.raw_a == proof.raw_b:
        raise ConsensusError("bad-proof", "the two statements are identical")
    ctx = b"attestation" if proof.kind == "attestation" else b"roster-vote"
    signed_by_one_key = any(
        verify_cached(k, proof.sig_a, ctx, proof.network, proof.raw_a)
        and verify_cached(k, proof.sig_b, ctx, proof.network, proof.raw_b)
        for k in chain.keys_ever(proof.member_id)
    )
    if not signed_by_one_key:
        raise ConsensusError("bad-proof", f"statements are not both signed by {proof.member_id!r}")
    if proof.kind == "attestation":
        if max(len(proof.raw_a), len(proof.raw_b)) > MAX_ATTESTATION_BYTES:
            raise ConsensusError("oversize", "proof attestation too large")
        a, b = Attestation.decode(proof.raw_a), Attestation.decode(proof.raw_b)
        if a.key != b.key or a.member_id != proof.member_id or a.network != b.network:
            raise ConsensusError("bad-proof", "attestations do not share an identity")
    else:
        pa, pb = Proposal.decode(proof.raw_a), Proposal.decode(proof.raw_b)
        if pa.base_version != pb.base_version or pa.network != pb.network:
            raise ConsensusError("bad-proof", "votes are for different roster versions")
    return proof.member_id


def seal_proof(proof: EquivocationProof, reporter_id: str, key: Ed25519PrivateKey) -> bytes:
    """Gossip envelope ``[reporter, proof, sig]`` signed in the ``equivocation-proof`` context."""
    raw = proof.encode()
    sig = crypto.sign(key, b"equivocation-proof", proof.network.encode("ascii"), raw)
    return pack([reporter_id, raw, sig])


def open_proof(data: bytes, chain: RosterChain) -> tuple[str, EquivocationProof]:
    """Verify the reporter's signature, decode, and verify the proof; returns (reporter, proof)."""
    w = want_list(unpack_canonical(data, "proof envelope", MAX_PROOF_BYTES + 256), "proof", n=3)
    reporter_id = want_str(w[0], "proof reporter", min_len=1)
    raw = want_bytes(w[1], "proof body", max_len=MAX_PROOF_BYTES)
    sig = want_bytes(w[2], "proof envelope signature", n=crypto.SIGNATURE_LEN)
    m = chain.tip.member(reporter_id)
    if m is None:
        raise ConsensusError("not-member", f"proof reporter {reporter_id!r} is not a member")
    if not verify_cached(m.public_key, sig, b"equivocation-proof", chain.tip.network, raw):
        raise ConsensusError("bad-signature", f"proof envelope claiming {reporter_id!r}")
    proof = EquivocationProof.decode(raw)
    verify_proof(proof, chain)
    return reporter_id, proof
