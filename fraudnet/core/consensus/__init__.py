"""Leaderless quorum consensus on a signed membership roster (sans-IO).

Layers, bottom up:

* :mod:`.codec` -- canonical msgpack and strict field readers.
* :mod:`.roster`, :mod:`.proposal`, :mod:`.chain` -- the signed, hash-chained
  membership roster (genesis, proposals, votes, verified chain).
* :mod:`.attestation` -- members' signed statements about entity pseudonyms.
* :mod:`.equivocation` -- self-certifying proofs of double-signing.
* :mod:`.verdict` -- the pure verdict function, certificates, offline checks.
* :mod:`.attester` -- the honest member's signing policy (local evidence only).
* :mod:`.tracker` -- one node's state: verify, store, bound, recompute.

See ``docs/consensus.md`` for the assumptions and the safety/liveness argument.
"""

from .attestation import (
    Attestation,
    Evidence,
    SignedAttestation,
    open_attestation,
    sign_attestation,
)
from .attester import Attester
from .chain import RosterChain, decode_update, encode_update
from .equivocation import EquivocationProof, open_proof, seal_proof, verify_proof
from .proposal import (
    AddMember,
    Change,
    Proposal,
    RemoveMember,
    RotateKey,
    SetF,
    SetPeers,
    apply_proposal,
    open_update,
    sign_vote,
)
from .roster import Member, Roster, open_genesis, sign_genesis
from .tracker import (
    IGNORE_REASONS,
    TOPIC_ATTESTATIONS,
    TOPIC_PROOFS,
    TOPIC_ROSTER,
    Limits,
    Publish,
    QuorumTracker,
    VerdictChanged,
)
from .verdict import (
    Certificate,
    CertificateCheck,
    Level,
    Verdict,
    VerdictPolicy,
    derive_verdict,
    equivocators,
    verify_certificate,
)

__all__ = [
    "IGNORE_REASONS",
    "TOPIC_ATTESTATIONS",
    "TOPIC_PROOFS",
    "TOPIC_ROSTER",
    "AddMember",
    "Attestation",
    "Attester",
    "Certificate",
    "CertificateCheck",
    "Change",
    "EquivocationProof",
    "Evidence",
    "Level",
    "Limits",
    "Member",
    "Proposal",
    "Publish",
    "QuorumTracker",
    "RemoveMember",
    "Roster",
    "RosterChain",
    "RotateKey",
    "SetF",
    "SetPeers",
    "SignedAttestation",
    "Verdict",
    "VerdictChanged",
    "VerdictPolicy",
    "apply_proposal",
    "decode_update",
    "derive_verdict",
    "encode_update",
    "equivocators",
    "open_attestation",
    "open_genesis",
    "open_proof",
    "open_update",
    "seal_proof",
    "sign_attestation",
    "sign_genesis",
    "sign_vote",
    "verify_certificate",
    "verify_proof",
]
