"""The membership roster: who may attest, with which key, tolerating how many faults.

Theory of operation
-------------------
A :class:`Roster` version lists the members (one per organisation: quorums
count organisations, never nodes), the fault bound ``f``, the version
number, the hash of the previous version and the *key epoch* of the network
pseudonymisation key. Its canonical encoding (:meth:`Roster.encode`) is
hashed with a domain tag; the hash of version 0 (the *genesis*) is the trust
anchor every ``verify`` command takes.

Numbered rules (checked by :meth:`Roster.__post_init__` on every version):

1. ``n >= 3f + 1`` and ``f >= 0``.
2. Member ids, organisations, public keys and libp2p peer ids are unique.
3. Members are sorted by id (so the encoding is canonical).
4. Version 0 has ``prev_hash`` all zeros; later versions point at their parent
   (checked by :mod:`.proposal` when a version is derived).
5. The genesis is valid only with a signature of *every* founding member in
   the ``roster-genesis`` context over the encoded roster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.errors import ConsensusError

from .. import crypto
from .codec import MAX_ID_LEN, pack, unpack_canonical, want_bytes, want_int, want_list, want_str

__all__ = [
    "HASH_LEN",
    "MAX_MEMBERS",
    "MAX_ROSTER_BYTES",
    "Member",
    "Roster",
    "open_genesis",
    "sign_genesis",
]

HASH_LEN: Final = 32
MAX_MEMBERS: Final = 256
MAX_PEERS_PER_MEMBER: Final = 16
MAX_PEER_ID_LEN: Final = 128
MAX_ROSTER_BYTES: Final = 256 * 1024
ZERO_HASH: Final = b"\x00" * HASH_LEN
_MAGIC: Final = "fraudnet-roster"
_HASH_TAG: Final = b"fraudnet/roster-hash/v1\x00"


@dataclass(frozen=True, slots=True)
class Member:
    """One member organisation: its signing key and the libp2p peer ids of its nodes."""

    member_id: str
    org: str
    public_key: bytes
    peer_ids: tuple[str, ...] = ()
    joined_at_us: int = 0

    def __post_init__(self) -> None:
        want_str(self.member_id, "member id", min_len=1)
        want_str(self.org, f"member {self.member_id!r} organisation", min_len=1, max_len=128)
        want_bytes(self.public_key, f"member {self.member_id!r} key", n=crypto.PUBLIC_KEY_LEN)
        if len(self.peer_ids) > MAX_PEERS_PER_MEMBER:
            raise ConsensusError("roster-invalid", f"member {self.member_id!r}: too many peer ids")
        for p in self.peer_ids:
            want_str(p, f"member {self.member_id!r} peer id", min_len=1, max_len=MAX_PEER_ID_LEN)
        want_int(self.joined_at_us, f"member {self.member_id!r} joined-at")

    def to_wire(self) -> list[Any]:
        return [self.member_id, self.org, self.public_key, list(self.peer_ids), self.joined_at_us]

    @classmethod
    def from_wire(cls, w: Any, what: str) -> Member:
        w = want_list(w, what, n=5)
        peers = want_list(w[3], f"{what} peer ids", max_len=MAX_PEERS_PER_MEMBER)
        return cls(
            member_id=want_str(w[0], f"{what} id", min_len=1),
            org=want_str(w[1], f"{what} organisation", min_len=1, max_len=128),
            public_key=want_bytes(w[2], f"{what} key", n=crypto.PUBLIC_KEY_LEN),
            peer_ids=tuple(want_str(p, f"{what} peer id", max_len=MAX_PEER_ID_LEN) for p in peers),
            joined_at_us=want_int(w[4], f"{what} joined-at"),
        )


@dataclass(frozen=True, slots=True)
class Roster:
    """One version of the roster (see module docstring for its rules)."""

    network: str
    version: int
    prev_hash: bytes
    f: int
    key_epoch: int
    members: tuple[Member, ...]
    issued_at_us: int = 0
    _index: dict[str, Member] = field(init=False, repr=False, compare=False)
    _hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        want_str(self.network, "roster network", min_len=1)
        if not self.network.isascii():
            raise ConsensusError("roster-invalid", "network name must be ASCII")
        want_int(self.version, "roster version")
        want_bytes(self.prev_hash, "roster previous hash", n=HASH_LEN)
        want_int(self.f, "roster f", hi=MAX_MEMBERS)
        want_int(self.key_epoch, "roster key epoch")
        want_int(self.issued_at_us, "roster issued-at")
        n = len(self.members)
        if n > MAX_MEMBERS:
            raise ConsensusError("roster-invalid", f"{n} members exceeds {MAX_MEMBERS}")
        if n < 3 * self.f + 1:  # rule 1
            raise ConsensusError(
                "roster-invalid", f"n={n} members cannot tolerate f={self.f} (need n >= 3f+1)"
            )
        ids = [m.member_id for m in self.members]
        if ids != sorted(ids):  # rule 3
            raise ConsensusError("roster-invalid", "members must be sorted by id")
        for label, values in (
            ("member id", ids),
            ("organisation", [m.org for m in self.members]),
            ("public key", [m.public_key.hex() for m in self.members]),
            ("peer id", [p for m in self.members for p in m.peer_ids]),
        ):  # rule 2
            if len(set(values)) != len(values):
                raise ConsensusError("roster-invalid", f"duplicate {label} in roster")
        if self.version == 0 and self.prev_hash != ZERO_HASH:  # rule 4
            raise ConsensusError("roster-invalid", "genesis must have an all-zero previous hash")
        object.__setattr__(self, "_index", {m.member_id: m for m in self.members})
        object.__setattr__(self, "_hash", hashlib.sha256(_HASH_TAG + self.encode()).digest())

    @property
    def n(self) -> int:
        return len(self.members)

    @property
    def quorum(self) -> int:
        """2f+1: members needed for a block or clear verdict and for a roster change."""
        return 2 * self.f + 1

    @property
    def step_up(self) -> int:
        """f+1: members needed for a step-up verdict (at least one is honest)."""
        return self.f + 1

    @property
    def hash(self) -> bytes:
        """SHA-256 of the domain-tagged canonical encoding."""
        return self._hash

    @property
    def network_id(self) -> bytes:
        return self.network.encode("ascii")

    def member(self, member_id: str) -> Member | None:
        return self._index.get(member_id)

    def member_for_peer(self, peer_id: str) -> Member | None:
        """The member whose node has libp2p ``peer_id`` (None: not allowed to connect)."""
        for m in self.members:
            if peer_id in m.peer_ids:
                return m
        return None

    def encode(self) -> bytes:
        return pack(
            [
                _MAGIC, 1, self.network, self.version, self.prev_hash, self.f, self.key_epoch,
                [m.to_wire() for m in self.members], self.issued_at_us,
            ]
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> Roster:
        w = want_list(unpack_canonical(data, "roster", MAX_ROSTER_BYTES), "roster", n=9)
        if w[0] != _MAGIC or w[1] != 1:
            raise ConsensusError("malformed", "roster: unknown magic or format version")
        members = want_list(w[7], "roster members", max_len=MAX_MEMBERS)
        return cls(
            network=want_str(w[2], "roster network", min_len=1, max_len=MAX_ID_LEN),
            version=want_int(w[3], "roster version"),
            prev_hash=want_bytes(w[4], "roster previous hash", n=HASH_LEN),
            f=want_int(w[5], "roster f", hi=MAX_MEMBERS),
            key_epoch=want_int(w[6], "roster key epoch"),
            members=tuple(
                Member.from_wire(m, f"roster member #{i}") for i, m in enumerate(members)
            ),
            issued_at_us=want_int(w[8], "roster issued-at"),
        )


def sign_genesis(roster: Roster, key: Ed25519PrivateKey) -> bytes:
    """A founding member's signature over the genesis roster."""
    if roster.version != 0:
        raise ConsensusError("roster-invalid", "only version 0 is a genesis")
    return crypto.sign(key, b"roster-genesis", roster.network_id, roster.encode())


def open_genesis(raw: bytes, sigs: Mapping[str, bytes], anchor: bytes | None = None) -> Roster:
    """Verify a genesis (every founding member signed; hash equals ``anchor``) and decode it.

    The signatures are checked over ``raw`` with the keys listed in ``raw``
    itself; the anchor (when given) is what makes those keys trustworthy.
    """
    roster = Roster.decode(raw)
    if roster.version != 0:
        raise ConsensusError("roster-invalid", f"genesis has version {roster.version}, not 0")
    if anchor is not None and roster.hash != anchor:
        raise ConsensusError(
            "roster-anchor", f"genesis hash {roster.hash.hex()} is not the anchor {anchor.hex()}"
        )
    missing = [
        m.member_id
        for m in roster.members
        if not crypto.verify(
            m.public_key, sigs.get(m.member_id, b""), b"roster-genesis", roster.network_id, raw
        )
    ]
    if missing:
        raise ConsensusError(
            "roster-signature", f"genesis lacks a valid signature of {', '.join(missing)}"
        )
    return roster
