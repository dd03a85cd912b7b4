"""Roster change proposals, votes, and the derivation of the next roster version.

A :class:`Proposal` names the version it changes (``base_version`` and
``base_hash``) and a list of changes. Members vote by signing the encoded
proposal in the ``roster-vote`` context. :func:`open_update` accepts the
next version only with valid votes of at least ``2f+1`` members of the *base*
version (votes of non-members and bad signatures are dropped, never counted).

Rules:

1. Changes apply in order to a copy of the base roster; the result must be a
   valid :class:`~.roster.Roster` (so ``n >= 3f+1`` holds on every version).
2. The new version is ``base_version + 1`` and points at ``base_hash``.
3. Any removal increments ``key_epoch``: the network pseudonymisation key
   rotates so a removed member can no longer link new pseudonyms.
4. An honest member signs at most one proposal per base version; two valid
   votes of one member for different proposals of the same base version are
   an equivocation (see :mod:`.equivocation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.errors import ConsensusError

from .. import crypto
from .codec import pack, unpack_canonical, want_bytes, want_int, want_list, want_str
from .roster import HASH_LEN, MAX_MEMBERS, Member, Roster

__all__ = [
    "AddMember",
    "Change",
    "Proposal",
    "RemoveMember",
    "RotateKey",
    "SetF",
    "SetPeers",
    "apply_proposal",
    "open_update",
    "sign_vote",
    "verify_vote",
]

MAX_CHANGES: Final = 64
MAX_PROPOSAL_BYTES: Final = 64 * 1024
_MAGIC: Final = "fraudnet-proposal"


@dataclass(frozen=True, slots=True)
class AddMember:
    member: Member


@dataclass(frozen=True, slots=True)
class RemoveMember:
    member_id: str


@dataclass(frozen=True, slots=True)
class RotateKey:
    member_id: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class SetF:
    f: int


@dataclass(frozen=True, slots=True)
class SetPeers:
    member_id: str
    peer_ids: tuple[str, ...]


Change = AddMember | RemoveMember | RotateKey | SetF | SetPeers


def _change_to_wire(c: Change) -> list[Any]:
    if isinstance(c, AddMember):
        return ["add", c.member.to_wire()]
    if isinstance(c, RemoveMember):
        return ["remove", c.member_id]
    if isinstance(c, RotateKey):
        return ["rotate", c.member_id, c.public_key]
    if isinstance(c, SetF):
        return ["set-f", c.f]
    return ["set-peers", c.member_id, list(c.peer_ids)]


def _change_from_wire(w: Any, what: str) -> Change:
    w = want_list(w, what, max_len=3)
    op = w[0] if w else None
    if op == "add" and len(w) == 2:
        return AddMember(Member.from_wire(w[1], f"{what} member"))
    if op == "remove" and len(w) == 2:
        return RemoveMember(want_str(w[1], f"{what} member id", min_len=1))
    if op == "rotate" and len(w) == 3:
        return RotateKey(
            want_str(w[1], f"{what} member id", min_len=1),
            want_bytes(w[2], f"{what} key", n=crypto.PUBLIC_KEY_LEN),
        )
    if op == "set-f" and len(w) == 2:
        return SetF(want_int(w[1], f"{what} f", hi=MAX_MEMBERS))
    if op == "set-peers" and len(w) == 3:
        peers = want_list(w[2], f"{what} peer ids", max_len=16)
        return SetPeers(
            want_str(w[1], f"{what} member id", min_len=1),
            tuple(want_str(p, f"{what} peer id", max_len=128) for p in peers),
        )
    raise ConsensusError("malformed", f"{what}: unknown change {op!r}")


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed change of roster version ``base_version`` (hash ``base_hash``)."""

    network: str
    base_version: int
    base_hash: bytes
    changes: tuple[Change, ...]
    proposed_at_us: int = 0
    note: str = ""

    def encode(self) -> bytes:
        return pack(
            [
                _MAGIC, 1, self.network, self.base_version, self.base_hash,
                [_change_to_wire(c) for c in self.changes], self.proposed_at_us, self.note,
            ]
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> Proposal:
        w = want_list(unpack_canonical(data, "proposal", MAX_PROPOSAL_BYTES), "proposal", n=8)
        if w[0] != _MAGIC or w[1] != 1:
            raise ConsensusError("malformed", "proposal: unknown magic or format version")
        changes = want_list(w[5], "proposal changes", max_len=MAX_CHANGES)
        return cls(
            network=want_str(w[2], "proposal network", min_len=1),
            base_version=want_int(w[3], "proposal base version"),
            base_hash=want_bytes(w[4], "proposal base hash", n=HASH_LEN),
            changes=tuple(
                _change_from_wire(c, f"proposal change #{i}") for i, c in enumerate(changes)
            ),
            proposed_at_us=want_int(w[6], "proposal time"),
            note=want_str(w[7], "proposal note", max_len=512),
        )


def apply_proposal(base: Roster, p: Proposal) -> Roster:
    """The roster version that ``p`` derives from ``base`` (rules 1-3)."""
    if p.network != base.network:
        raise ConsensusError("roster-mismatch", f"proposal is for network {p.network!r}")
    if p.base_version != base.version or p.base_hash != base.hash:
        raise ConsensusError(
            "roster-mismatch",
            f"proposal changes version {p.base_version}, the roster is at {base.version}",
        )
    if not p.changes or len(p.changes) > MAX_CHANGES:
        raise ConsensusError("roster-invalid", "a proposal needs 1 to 64 changes")
    members = {m.member_id: m for m in base.members}
    f = base.f
    removed = False
    for c in p.changes:
        if isinstance(c, AddMember):
            if c.member.member_id in members:
                raise ConsensusError("roster-invalid", f"{c.member.member_id!r} already a member")
            members[c.member.member_id] = c.member
        elif isinstance(c, SetF):
            f = c.f
        else:
            old = members.get(c.member_id)
            if old is None:
                raise ConsensusError("roster-invalid", f"{c.member_id!r} is not a member")
            if isinstance(c, RemoveMember):
                del members[c.member_id]
                removed = True
            elif isinstance(c, RotateKey):
                members[c.member_id] = replace(old, public_key=c.public_key)
            else:
                members[c.member_id] = replace(old, peer_ids=c.peer_ids)
    return Roster(
        network=base.network,
        version=base.version + 1,
        prev_hash=base.hash,
        f=f,
        key_epoch=base.key_epoch + (1 if removed else 0),
        members=tuple(members[k] for k in sorted(members)),
        issued_at_us=p.proposed_at_us,
    )


def sign_vote(proposal_raw: bytes, key: Ed25519PrivateKey, network: str) -> bytes:
    """A member's vote: its signature over the encoded proposal."""
    return crypto.sign(key, b"roster-vote", network.encode("ascii"), proposal_raw)


def verify_vote(member: Member, network: str, proposal_raw: bytes, sig: bytes) -> bool:
    return crypto.verify(
        member.public_key, sig, b"roster-vote", network.encode("ascii"), proposal_raw
    )


def open_update(
    base: Roster, proposal_raw: bytes, votes: Mapping[str, bytes]
) -> tuple[Roster, dict[str, bytes]]:
    """Verify votes over ``proposal_raw`` against ``base``, then derive the next version.

    Returns the new roster and the votes that counted (valid, by members of
    ``base``). Signatures are checked before the proposal is decoded.
    """
    if len(proposal_raw) > MAX_PROPOSAL_BYTES:
        raise ConsensusError("oversize", f"proposal: {len(proposal_raw)} bytes")
    valid: dict[str, bytes] = {}
    for member_id, sig in votes.items():
        m = base.member(member_id)
        if m is not None and verify_vote(m, base.network, proposal_raw, sig):
            valid[member_id] = sig
    if len(valid) < base.quorum:
        raise ConsensusError(
            "roster-quorum",
            f"proposal on version {base.version} has {len(valid)} valid votes, "
            f"needs {base.quorum} (2f+1)",
        )
    return apply_proposal(base, Proposal.decode(proposal_raw)), valid
