"""A verified, hash-chained sequence of roster versions rooted at a trusted genesis hash.

:class:`RosterChain` is built only by verifying: the genesis against the
anchor (every founding member signed), then each update against its parent
(2f+1 valid votes of the parent's members). The chain file is the canonical
encoding of the genesis, its signatures and every update with the votes that
counted (:meth:`RosterChain.encode`); anyone holding it and the anchor can
re-verify the whole membership history offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fraudnet.errors import ConsensusError

from .codec import pack, unpack_canonical, want_bytes, want_list, want_str
from .proposal import Proposal, open_update
from .roster import HASH_LEN, MAX_MEMBERS, Roster, open_genesis

__all__ = ["MAX_CHAIN_BYTES", "RosterChain", "decode_update", "encode_update"]

MAX_CHAIN_BYTES: Final = 16 * 1024 * 1024
MAX_UPDATE_BYTES: Final = 96 * 1024
MAX_VERSIONS: Final = 10_000
_MAGIC: Final = "fraudnet-roster-chain"
_UPDATE_MAGIC: Final = "fraudnet-roster-update"


def _sigs_to_wire(sigs: Mapping[str, bytes]) -> list[list[Any]]:
    return [[k, sigs[k]] for k in sorted(sigs)]


def _sigs_from_wire(w: Any, what: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for i, pair in enumerate(want_list(w, what, max_len=MAX_MEMBERS)):
        pair = want_list(pair, f"{what} #{i}", n=2)
        member_id = want_str(pair[0], f"{what} #{i} member", min_len=1)
        if member_id in out:
            raise ConsensusError("malformed", f"{what}: two signatures of {member_id!r}")
        out[member_id] = want_bytes(pair[1], f"{what} #{i} signature", n=64)
    return out


def encode_update(proposal_raw: bytes, votes: Mapping[str, bytes]) -> bytes:
    """The gossip/file form of a roster update: the proposal and its votes."""
    return pack([_UPDATE_MAGIC, 1, proposal_raw, _sigs_to_wire(votes)])


def decode_update(data: bytes) -> tuple[bytes, dict[str, bytes]]:
    w = want_list(unpack_canonical(data, "roster update", MAX_UPDATE_BYTES), "roster update", n=4)
    if w[0] != _UPDATE_MAGIC or w[1] != 1:
        raise ConsensusError("malformed", "roster update: unknown magic or format version")
    return want_bytes(w[2], "roster update proposal"), _sigs_from_wire(w[3], "roster update votes")


class RosterChain:
    """Verified roster versions ``0..tip`` (construct with :meth:`open` or :meth:`decode`)."""

    __slots__ = ("_by_hash", "_genesis", "_rosters", "_updates")

    def __init__(self, genesis_raw: bytes, genesis_sigs: Mapping[str, bytes], anchor: bytes):
        root = open_genesis(genesis_raw, genesis_sigs, anchor)
        self._genesis = (genesis_raw, dict(genesis_sigs))
        self._rosters: list[Roster] = [root]
        self._updates: list[tuple[bytes, dict[str, bytes]]] = []
        self._by_hash: dict[bytes, Roster] = {root.hash: root}

    @classmethod
    def open(
        cls,
        genesis_raw: bytes,
        genesis_sigs: Mapping[str, bytes],
        anchor: bytes,
        updates: list[tuple[bytes, Mapping[str, bytes]]] = [],  # noqa: B006 - never mutated
    ) -> RosterChain:
        chain = cls(genesis_raw, genesis_sigs, anchor)
        for raw, votes in updates:
            chain.extend(raw, votes)
        return chain

    @property
    def tip(self) -> Roster:
        return self._rosters[-1]

    @property
    def genesis(self) -> Roster:
        return self._rosters[0]

    @property
    def anchor(self) -> bytes:
        return self._rosters[0].hash

    @property
    def rosters(self) -> tuple[Roster, ...]:
        return tuple(self._rosters)

    def by_hash(self, h: bytes) -> Roster | None:
        return self._by_hash.get(h)

    def keys_ever(self, member_id: str) -> frozenset[bytes]:
        """Every public key ``member_id`` held in any version (for equivocation proofs)."""
        return frozenset(
            m.public_key for r in self._rosters if (m := r.member(member_id)) is not None
        )

    def extend(self, proposal_raw: bytes, votes: Mapping[str, bytes]) -> Roster:
        """Verify an update against the tip and append it; returns the new tip."""
        if len(self._rosters) >= MAX_VERSIONS:
            raise ConsensusError("oversize", f"roster chain longer than {MAX_VERSIONS} versions")
        new, counted = open_update(self.tip, proposal_raw, votes)
        self._rosters.append(new)
        self._updates.append((proposal_raw, counted))
        self._by_hash[new.hash] = new
        return new

    def base_of(self, proposal_raw: bytes) -> Roster | None:
        """The roster version a proposal changes, if it is in this chain (None otherwise)."""
        p = Proposal.decode(proposal_raw)
        r = self._by_hash.get(p.base_hash)
        return r if r is not None and r.version == p.base_version else None

    def updates(self) -> tuple[tuple[bytes, dict[str, bytes]], ...]:
        return tuple((raw, dict(v)) for raw, v in self._updates)

    def encode(self) -> bytes:
        g_raw, g_sigs = self._genesis
        return pack(
            [
                _MAGIC, 1, g_raw, _sigs_to_wire(g_sigs),
                [[raw, _sigs_to_wire(v)] for raw, v in self._updates],
            ]
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes, anchor: bytes) -> RosterChain:
        """Decode a chain file and verify it from the genesis ``anchor`` up."""
        if len(anchor) != HASH_LEN:
            raise ConsensusError("roster-anchor", f"genesis hash must be {HASH_LEN} bytes")
        w = want_list(unpack_canonical(data, "roster chain", MAX_CHAIN_BYTES), "roster chain", n=5)
        if w[0] != _MAGIC or w[1] != 1:
            raise ConsensusError("malformed", "roster chain: unknown magic or format version")
        g_raw = want_bytes(w[2], "roster chain genesis")
        g_sigs = _sigs_from_wire(w[3], "roster chain genesis signatures")
        chain = cls(g_raw, g_sigs, anchor)
        for i, u in enumerate(want_list(w[4], "roster chain updates", max_len=MAX_VERSIONS)):
            u = want_list(u, f"roster chain update #{i + 1}", n=2)
            raw = want_bytes(u[0], f"roster chain update #{i + 1} proposal")
            votes = _sigs_from_wire(u[1], f"roster chain update #{i + 1} votes")
            try:
                chain.extend(raw, votes)
            except ConsensusError as e:
                raise ConsensusError(e.reason, f"roster version {i + 1}: {e.detail}") from None
        return chain
