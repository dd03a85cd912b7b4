"""Roster genesis, proposals, votes and the verified chain."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.core import crypto
from fraudnet.core.consensus import (
    AddMember,
    Member,
    Proposal,
    RemoveMember,
    Roster,
    RosterChain,
    RotateKey,
    SetF,
    decode_update,
    encode_update,
    open_genesis,
    sign_vote,
)
from fraudnet.core.consensus.codec import pack
from fraudnet.core.consensus.roster import ZERO_HASH
from fraudnet.errors import ConsensusError
from fraudnet.replay.sim import build_network


def _key(i: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"roster-test%d" % i).digest())


def _member(i: int) -> Member:
    return Member(f"x{i:02d}", f"Org X{i}", crypto.public_bytes(_key(i)), (f"peer-x{i}",), 5)


def _propose(chain: RosterChain, *changes: object, at: int = 1) -> bytes:
    tip = chain.tip
    return Proposal(tip.network, tip.version, tip.hash, tuple(changes), at).encode()  # type: ignore[arg-type]  # test builds valid changes


def _votes(raw: bytes, keys: dict[str, Ed25519PrivateKey], ids: list[str]) -> dict[str, bytes]:
    return {m: sign_vote(raw, keys[m], "sim") for m in ids}


def test_genesis_verifies_against_anchor_and_needs_every_founder() -> None:
    net = build_network(4, 1, seed=1)
    g_raw, g_sigs = net.chain.encode(), None
    assert RosterChain.decode(g_raw, net.chain.anchor).tip.version == 0
    roster = net.chain.genesis
    sigs = {m.member_id: b"" for m in roster.members}
    with pytest.raises(ConsensusError, match="lacks a valid signature") as ei:
        open_genesis(roster.encode(), sigs, roster.hash)
    assert ei.value.reason == "roster-signature"
    with pytest.raises(ConsensusError, match="not the anchor"):
        RosterChain.decode(g_raw, b"\x01" * 32)
    del g_sigs


def test_n_at_least_3f_plus_1_is_enforced() -> None:
    members = tuple(_member(i) for i in range(3))
    with pytest.raises(ConsensusError, match="need n >= 3f"):
        Roster("sim", 0, ZERO_HASH, 1, 0, members)
    assert Roster("sim", 0, ZERO_HASH, 0, 0, members).quorum == 1


def test_duplicate_keys_and_unsorted_members_rejected() -> None:
    a, b = _member(1), _member(2)
    with pytest.raises(ConsensusError, match="duplicate public key"):
        Roster("sim", 0, ZERO_HASH, 0, 0, (a, replace(b, public_key=a.public_key)))
    with pytest.raises(ConsensusError, match="sorted"):
        Roster("sim", 0, ZERO_HASH, 0, 0, (b, a))


def test_change_needs_2f_plus_1_valid_votes_of_current_members() -> None:
    net = build_network(4, 1, seed=2)
    chain = net.fresh_chain()
    raw = _propose(chain, AddMember(_member(9)))
    ids = sorted(net.keys)
    two = _votes(raw, net.keys, ids[:2])
    forged = {**two, ids[2]: sign_vote(raw, _key(99), "sim"), "stranger": b"\x00" * 64}
    with pytest.raises(ConsensusError, match="2 valid votes, needs 3") as ei:
        chain.extend(raw, forged)
    assert ei.value.reason == "roster-quorum"
    new = chain.extend(raw, _votes(raw, net.keys, ids[:3]))
    assert new.version == 1 and new.prev_hash == chain.genesis.hash and new.n == 5
    assert new.key_epoch == 0


def test_remove_rotates_key_epoch_and_rotate_changes_key() -> None:
    net = build_network(4, 1, seed=3)
    chain = net.fresh_chain()
    ids = sorted(net.keys)
    raw = _propose(chain, RemoveMember(ids[3]), SetF(0))
    tip = chain.extend(raw, _votes(raw, net.keys, ids[:3]))
    assert tip.key_epoch == 1 and tip.member(ids[3]) is None and tip.f == 0
    raw2 = _propose(chain, RotateKey(ids[0], crypto.public_bytes(_key(7))))
    tip2 = chain.extend(raw2, _votes(raw2, net.keys, ids[:1]))  # f=0: one vote is 2f+1
    assert tip2.member(ids[0]).public_key == crypto.public_bytes(_key(7))  # type: ignore[union-attr]
    assert chain.keys_ever(ids[0]) == {
        crypto.public_bytes(_key(7)),
        crypto.public_bytes(net.keys[ids[0]]),
    }
    again = RosterChain.decode(chain.encode(), chain.anchor)
    assert again.tip.hash == tip2.hash


def test_change_that_breaks_n_3f_plus_1_is_refused() -> None:
    net = build_network(4, 1, seed=4)
    chain = net.fresh_chain()
    ids = sorted(net.keys)
    raw = _propose(chain, RemoveMember(ids[3]))  # n=3 with f=1
    with pytest.raises(ConsensusError, match="need n >= 3f"):
        chain.extend(raw, _votes(raw, net.keys, ids))


def test_stale_proposal_and_wrong_network_refused() -> None:
    net = build_network(4, 1, seed=5)
    chain = net.fresh_chain()
    ids = sorted(net.keys)
    raw = _propose(chain, AddMember(_member(9)))
    chain.extend(raw, _votes(raw, net.keys, ids[:3]))
    with pytest.raises(ConsensusError, match="changes version 0"):
        chain.extend(raw, _votes(raw, net.keys, ids[:3]))


def test_tampered_chain_file_is_rejected() -> None:
    net = build_network(4, 1, seed=6)
    chain = net.fresh_chain()
    ids = sorted(net.keys)
    raw = _propose(chain, AddMember(_member(9)))
    chain.extend(raw, _votes(raw, net.keys, ids[:3]))
    data = bytearray(chain.encode())
    i = data.find(b"Org X9")
    data[i + 4] ^= 1
    with pytest.raises(ConsensusError):
        RosterChain.decode(bytes(data), chain.anchor)


def test_update_codec_round_trip_and_non_canonical_rejected() -> None:
    raw, votes = b"p" * 10, {"a": b"\x01" * 64}
    assert decode_update(encode_update(raw, votes)) == (raw, votes)
    with pytest.raises(ConsensusError) as ei:
        decode_update(b"\xdc\x00\x04" + encode_update(raw, votes)[1:])  # array16 for a fixarray
    assert ei.value.reason == "non-canonical"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_hostile_bytes_give_typed_errors(data: bytes) -> None:
    net = build_network(4, 1, seed=7)
    for fn in (Roster.decode, Proposal.decode, decode_update):
        with pytest.raises(ConsensusError):
            fn(data)
    with pytest.raises(ConsensusError):
        RosterChain.decode(data, net.chain.anchor)


def test_oversize_rejected_before_decoding() -> None:
    with pytest.raises(ConsensusError) as ei:
        Roster.decode(pack([b"x" * 300_000]))
    assert ei.value.reason == "oversize"
