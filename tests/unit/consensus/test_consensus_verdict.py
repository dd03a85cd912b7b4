"""Verdict levels, expiry, equivocation, certificates and the tracker's bounds."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core.consensus import (
    Attestation,
    Attester,
    Certificate,
    Limits,
    Proposal,
    QuorumTracker,
    RemoveMember,
    SetF,
    SignedAttestation,
    VerdictChanged,
    VerdictPolicy,
    derive_verdict,
    encode_update,
    open_attestation,
    sign_attestation,
    sign_vote,
    verify_certificate,
)
from fraudnet.errors import ConsensusError
from fraudnet.replay.sim import SimMembers, build_network

S = 1_000_000
POLICY = VerdictPolicy(window_us=100 * S, grace_us=10 * S)
CARD = b"C" * 32
NOW = 1_000 * S  # window 10


@pytest.fixture(scope="module")
def net() -> SimMembers:
    return build_network(4, 1, seed=11)


def att(
    net: SimMembers, mid: str, stance: str = "risk", *, seq: int = 1, window: int = 10,
    entity: bytes = CARD, epoch: int = 0, key: Ed25519PrivateKey | None = None,
) -> SignedAttestation:  # fmt: skip
    a = Attestation("sim", mid, "card", entity, epoch, window, seq, stance, 9)  # type: ignore[arg-type]
    return sign_attestation(a, key or net.keys[mid])


def level(net: SimMembers, atts: list[SignedAttestation], now: int = NOW, proofs=()) -> str:  # type: ignore[no-untyped-def]
    return derive_verdict("card", CARD, atts, net.chain, proofs, now, POLICY).level


def test_levels_follow_member_counts(net: SimMembers) -> None:
    ids = sorted(net.keys)
    assert level(net, []) == "none"
    assert level(net, [att(net, ids[0])]) == "advisory"
    assert level(net, [att(net, m) for m in ids[:2]]) == "step-up"
    assert level(net, [att(net, m) for m in ids[:3]]) == "block"
    # the same member twice (renewal with a new seq) still counts once
    assert level(net, [att(net, ids[0]), att(net, ids[0], seq=2)]) == "advisory"


def test_clear_needs_its_own_quorum(net: SimMembers) -> None:
    ids = sorted(net.keys)
    assert level(net, [att(net, m, "clear") for m in ids[:2]]) == "none"
    assert level(net, [att(net, m, "clear") for m in ids[:3]]) == "clear"
    mixed = [att(net, m, "clear") for m in ids[:3]] + [att(net, ids[3])]
    assert level(net, mixed) == "clear"


def test_verdict_expires_unless_renewed(net: SimMembers) -> None:
    ids = sorted(net.keys)
    w10 = [att(net, m) for m in ids[:3]]
    assert level(net, w10, now=1_105 * S) == "block"  # in grace
    assert level(net, w10, now=1_110 * S) == "none"  # expired
    w11 = [att(net, m, seq=2, window=11) for m in ids[:3]]
    assert level(net, w10 + w11, now=1_150 * S) == "block"
    v = derive_verdict("card", CARD, w10 + w11, net.chain, (), 1_150 * S, POLICY)
    assert v.window == 11 and v.expires_at_us == 1_210 * S


def test_newer_clear_window_overrides_older_block(net: SimMembers) -> None:
    ids = sorted(net.keys)
    w10 = [att(net, m) for m in ids[:3]]
    w11 = [att(net, m, "clear", seq=2, window=11) for m in ids[:3]]
    assert level(net, w10 + w11, now=1_101 * S) == "clear"


def test_change_of_mind_is_not_equivocation(net: SimMembers) -> None:
    ids = sorted(net.keys)
    atts = [att(net, m) for m in ids[:3]] + [att(net, ids[0], "retract", seq=2)]
    assert level(net, atts) == "step-up"


def test_equivocator_is_ignored_entirely(net: SimMembers) -> None:
    ids = sorted(net.keys)
    atts = [att(net, m) for m in ids[:3]] + [att(net, ids[0], "clear")]  # same seq 1
    assert level(net, atts) == "step-up"


def test_forged_non_member_and_wrong_epoch_statements_do_not_count(net: SimMembers) -> None:
    ids = sorted(net.keys)
    forged = att(net, ids[0], key=net.keys[ids[3]])
    stranger = Ed25519PrivateKey.generate()
    outsider = sign_attestation(Attestation("sim", "zz", "card", CARD, 0, 10, 1, "risk"), stranger)
    atts = [forged, outsider, att(net, ids[1], epoch=1), att(net, ids[2])]
    assert level(net, atts) == "advisory"
    with pytest.raises(ConsensusError) as ei:
        open_attestation(forged.to_wire(), net.chain.tip)
    assert ei.value.reason == "bad-signature"


def test_certificate_round_trip_and_offline_checks(net: SimMembers) -> None:
    ids = sorted(net.keys)
    v = derive_verdict("card", CARD, [att(net, m) for m in ids[:3]], net.chain, (), NOW, POLICY)
    cert = v.certificate()
    assert cert is not None
    data = cert.encode()
    check = verify_certificate(Certificate.decode(data), net.chain, policy=POLICY, now_us=NOW)
    assert check.level == "block" and check.members == tuple(ids[:3]) and check.roster_is_tip
    assert check.expired is False
    short = Certificate(
        cert.entity_kind, cert.entity, cert.window, "block", cert.roster_hash, cert.statements[:2]
    )
    with pytest.raises(ConsensusError, match="needs 3 members"):
        verify_certificate(short, net.chain)
    m, raw, _sig = cert.statements[0]
    bad = Certificate(cert.entity_kind, cert.entity, cert.window, "block", cert.roster_hash,
                      ((m, raw, bytes(64)), *cert.statements[1:]))  # fmt: skip
    with pytest.raises(ConsensusError, match="statement of"):
        verify_certificate(bad, net.chain)
    other = Certificate(
        cert.entity_kind, cert.entity, cert.window, "block", b"\x07" * 32, cert.statements
    )
    with pytest.raises(ConsensusError, match="not in the chain"):
        verify_certificate(other, net.chain)
    with pytest.raises(ConsensusError):
        Certificate.decode(data[:-3])


def _tracker(net: SimMembers, limits: Limits | None = None) -> QuorumTracker:
    ids = sorted(net.keys)
    return QuorumTracker(net.fresh_chain(), POLICY, limits, reporter=(ids[0], net.keys[ids[0]]))


def test_tracker_matches_pure_function_and_reports_changes(net: SimMembers) -> None:
    ids = sorted(net.keys)
    tr = _tracker(net)
    levels = []
    for m in ids[:3]:
        for o in tr.receive_attestation(att(net, m).to_wire(), NOW):
            assert isinstance(o, VerdictChanged)
            levels.append(o.verdict.level)
    assert levels == ["advisory", "step-up", "block"]
    assert tr.verdict("card", CARD, NOW) == derive_verdict(
        "card", CARD, list(tr.attestations()), tr.chain, tr.proofs(), NOW, POLICY
    )
    with pytest.raises(ConsensusError) as ei:
        tr.receive_attestation(att(net, ids[0]).to_wire(), NOW)
    assert ei.value.reason == "duplicate"
    expired = tr.tick(1_110 * S)
    assert [o.verdict.level for o in expired if isinstance(o, VerdictChanged)] == ["none"]
    assert tr.current() == {}


def test_tracker_turns_equivocation_into_a_gossiped_proof(net: SimMembers) -> None:
    ids = sorted(net.keys)
    tr = _tracker(net)
    for m in ids[:3]:
        tr.receive_attestation(att(net, m).to_wire(), NOW)
    outs = tr.receive_attestation(att(net, ids[2], "clear").to_wire(), NOW)
    proofs = [o for o in outs if not isinstance(o, VerdictChanged)]
    assert len(proofs) == 1 and tr.equivocators() == {ids[2]}
    assert tr.verdict("card", CARD, NOW).level == "step-up"
    other = _tracker(build_network(4, 1, seed=11))
    other.receive_proof(proofs[0].data, NOW)
    assert other.equivocators() == {ids[2]}
    with pytest.raises(ConsensusError) as ei:
        tr.receive_attestation(att(net, ids[2], "risk", seq=5).to_wire(), NOW)
    assert ei.value.reason == "known"


def test_tracker_bounds_stale_future_and_flooding(net: SimMembers) -> None:
    ids = sorted(net.keys)
    tr = _tracker(net, Limits(rate_per_s=1.0, burst=3.0))
    for window, reason in ((5, "stale"), (13, "future")):
        with pytest.raises(ConsensusError) as ei:
            tr.receive_attestation(att(net, ids[1], window=window).to_wire(), NOW)
        assert ei.value.reason == reason
    accepted = 0
    for i in range(10):
        try:
            tr.receive_attestation(att(net, ids[1], entity=bytes([i]) * 32).to_wire(), NOW)
            accepted += 1
        except ConsensusError as e:
            assert e.reason == "rate-limited"
    assert accepted == 3 and tr.counters["rate-limited"] == 7


def test_roster_update_removes_member_and_rotates_epoch(net: SimMembers) -> None:
    ids = sorted(net.keys)
    tr = _tracker(net)
    for m in ids[:3]:
        tr.receive_attestation(att(net, m).to_wire(), NOW)
    tip = tr.chain.tip
    # n=3 cannot keep f=1: removing and dropping f to 0 in one proposal is the valid form
    raw = Proposal("sim", tip.version, tip.hash, (RemoveMember(ids[3]), SetF(0)), 1).encode()
    votes = {m: sign_vote(raw, net.keys[m], "sim") for m in ids[:3]}
    tr.receive_roster_update(encode_update(raw, votes), NOW)
    assert tr.chain.tip.key_epoch == 1
    # statements under the old pseudonym key epoch no longer count
    assert tr.verdict("card", CARD, NOW).level == "none"
    conflicting = Proposal("sim", tip.version, tip.hash, (RemoveMember(ids[2]),), 2).encode()
    outs = tr.receive_roster_update(
        encode_update(conflicting, {ids[1]: sign_vote(conflicting, net.keys[ids[1]], "sim")}), NOW
    )
    assert outs and ids[1] in tr.equivocators()


def test_attester_never_signs_both_sides_in_one_window(net: SimMembers) -> None:
    ids = sorted(net.keys)
    a = Attester(ids[0], net.keys[ids[0]], "sim", 0, POLICY, opinion_ttl_us=500 * S)
    (r,) = a.flag("card", CARD, NOW)
    assert a.flag("card", CARD, NOW + 1) == []
    (x,) = a.unflag("card", CARD, NOW + 2)
    assert (r.body.stance, x.body.stance) == ("risk", "retract") and x.body.seq > r.body.seq
    (c,) = a.tick(1_100 * S)
    assert c.body.stance == "clear" and c.body.window == 11
    assert a.tick(1_150 * S) == []
    assert a.tick(1_600 * S) == []  # opinion expired and forgotten
