"""Fuzz roster / chain / certificate parsing and the consensus messages a tracker receives.

Seeds are real encodings: a roster chain with one adopted update, proposals,
update messages, signed attestations, an equivocation proof and a block
certificate. Mutated attestation bodies are *re-signed* by a member so the
decoder behind the signature check is reached. Oracle: every input ends in a
value or :class:`ConsensusError`; a tracker fed any sequence of hostile
messages never raises anything else and never certifies from them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fuzz_support import fuzz_modes, mutate_bytes, mutate_value, pack, run_target, unpack
from hypothesis import strategies as st

from fraudnet.core import crypto
from fraudnet.core.consensus import (
    AddMember,
    Attestation,
    Certificate,
    EquivocationProof,
    Limits,
    Member,
    Proposal,
    QuorumTracker,
    Roster,
    RosterChain,
    VerdictPolicy,
    decode_update,
    derive_verdict,
    encode_update,
    open_attestation,
    open_proof,
    sign_attestation,
    sign_vote,
    verify_certificate,
)
from fraudnet.core.consensus.equivocation import attestation_equivocation, seal_proof
from fraudnet.errors import ConsensusError
from fraudnet.replay.sim import build_network

S = 1_000_000
POLICY = VerdictPolicy(window_us=100 * S, grace_us=10 * S)
NOW = 1_000 * S
CARD = b"C" * 32
NET = build_network(4, 1, seed=21)
IDS = sorted(NET.keys)


def _att(mid: str, stance: str = "risk", seq: int = 1) -> Any:
    a = Attestation("sim", mid, "card", CARD, 0, 10, seq, stance, 9)  # type: ignore[arg-type]
    return sign_attestation(a, NET.keys[mid])


ATTS = [_att(m) for m in IDS[:3]] + [_att(IDS[3], "clear", 2)]
ATT_WIRE = [a.to_wire() for a in ATTS]
ATT_RAW = [a.raw for a in ATTS]
CERT = derive_verdict("card", CARD, ATTS[:3], NET.chain, (), NOW, POLICY).certificate()
assert CERT is not None
CERT_BYTES = CERT.encode()
_newkey = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fuzz-new").digest())
_chain = NET.fresh_chain()
PROPOSAL = Proposal("sim", _chain.tip.version, _chain.tip.hash, (AddMember(Member(
    "x09", "Org X9", crypto.public_bytes(_newkey), ("peer-x9",), 5)),), 1).encode()  # fmt: skip
VOTES = {m: sign_vote(PROPOSAL, NET.keys[m], "sim") for m in IDS[:3]}
UPDATE = encode_update(PROPOSAL, VOTES)
_chain.extend(PROPOSAL, VOTES)
CHAIN_BYTES = _chain.encode()
ROSTER_BYTES = NET.chain.tip.encode()
_proof = attestation_equivocation(ATTS[2], _att(IDS[2], "clear"))
assert _proof is not None
PROOF_BYTES = seal_proof(_proof, IDS[0], NET.keys[IDS[0]])


def _resigned(draw: st.DrawFn) -> bytes:
    """A mutated attestation body, correctly signed by the member it names."""
    if draw(st.booleans()):
        raw = draw(mutate_bytes(ATT_RAW))
    else:
        raw = pack(draw(mutate_value([unpack(r) for r in ATT_RAW])))
    mid = draw(st.sampled_from(IDS))
    sig = crypto.sign(NET.keys[mid], b"attestation", b"sim", raw)
    return pack([mid, raw, sig])


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["attestation", "attestation", "proof", "update"]))
    seeds = {"attestation": ATT_WIRE, "proof": [PROOF_BYTES], "update": [UPDATE]}[kind]
    how = draw(st.integers(0, 3))
    if kind == "attestation" and how == 0:
        return kind, _resigned(draw)
    if how == 1:
        return kind, pack(draw(mutate_value([unpack(s) for s in seeds])))
    return kind, draw(mutate_bytes(seeds))


def _check_tracker(msgs: list[tuple[str, bytes]]) -> None:
    tr = QuorumTracker(NET.fresh_chain(), POLICY, Limits(rate_per_s=1e6, burst=1e6))
    for kind, data in msgs:
        try:
            if kind == "attestation":
                tr.receive_attestation(data, NOW)
            elif kind == "proof":
                tr.receive_proof(data, NOW)
            else:
                tr.receive_roster_update(data, NOW)
        except ConsensusError as e:
            assert e.reason
    # whatever was accepted, the tracker's verdict is the pure function over what it holds
    assert tr.verdict("card", CARD, NOW) == derive_verdict(
        "card", CARD, list(tr.attestations()), tr.chain, tr.proofs(), NOW, POLICY
    )


def _check_parsers(case: tuple[str, bytes]) -> None:
    kind, data = case
    if kind == "chain":
        chain = RosterChain.decode(data, NET.chain.anchor)
        assert chain.genesis.hash == NET.chain.anchor
    elif kind == "roster":
        Roster.decode(data)
    elif kind == "proposal":
        Proposal.decode(data)
    elif kind == "update":
        decode_update(data)
    elif kind == "cert":
        cert = Certificate.decode(data)
        check = verify_certificate(cert, NET.chain, policy=POLICY, now_us=NOW)
        assert len(check.members) >= 3  # only a real quorum of verified statements passes
    elif kind == "proof":
        EquivocationProof.decode(data)
        open_proof(data, NET.chain)
    else:
        open_attestation(data, NET.chain.tip)


PARSER_SEEDS = {
    "chain": [CHAIN_BYTES, NET.chain.encode()], "roster": [ROSTER_BYTES], "proposal": [PROPOSAL],
    "update": [UPDATE], "cert": [CERT_BYTES], "proof": [PROOF_BYTES], "attestation": ATT_WIRE,
}  # fmt: skip


@st.composite
def parser_cases(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(PARSER_SEEDS)))
    seeds = PARSER_SEEDS[kind]
    if draw(st.booleans()):
        return kind, pack(draw(mutate_value([unpack(s) for s in seeds])))
    return kind, draw(mutate_bytes(seeds))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_roster_chain_certificate_parsers(mode: str) -> None:
    run_target("consensus_parsers", mode, parser_cases(), _check_parsers, (ConsensusError,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_tracker_with_hostile_message_sequences(mode: str) -> None:
    cases = st.lists(messages(), min_size=1, max_size=6)
    run_target("consensus_tracker", mode, cases, _check_tracker, ())


def test_seeds_are_valid() -> None:
    assert RosterChain.decode(CHAIN_BYTES, NET.chain.anchor).tip.version == 1
    assert verify_certificate(Certificate.decode(CERT_BYTES), NET.chain).level == "block"
    assert open_proof(PROOF_BYTES, NET.chain)[0] == IDS[0]
    for w in ATT_WIRE:
        open_attestation(w, NET.chain.tip)
