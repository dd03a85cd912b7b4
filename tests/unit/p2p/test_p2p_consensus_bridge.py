"""ConsensusBridge: four members' bridges wired through an in-memory gossip bus (no sockets)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.adapters.consensus_bridge import (
    VERDICT_REASONS,
    ConsensusBridge,
    ConsensusSettings,
    load_chain_file,
)
from fraudnet.adapters.storage.verdicts import read_certificates
from fraudnet.core import crypto
from fraudnet.core.audit.schema import AuditRecord
from fraudnet.core.consensus import (
    Attestation,
    Member,
    Roster,
    RosterChain,
    sign_attestation,
    sign_genesis,
)
from fraudnet.core.consensus.roster import ZERO_HASH
from fraudnet.core.signals import Outcome
from fraudnet.errors import ConfigError

NET = "unitnet"
KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([60 + i]) * 32) for i in range(4)]
NAMES = [f"bank-{c}" for c in "abcd"]
ENTITY = b"\x42" * 32
T0 = 1_800_000_000_000_000


class Bus:
    """Delivers each publication to every other bridge: validator first, then on_message."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[tuple[int, Any, Any]]] = {}
        self.outcomes: list[Outcome] = []
        self.members: dict[int, dict[str, bytes]] = {}

    def port(self, idx: int) -> Any:
        bus = self

        class Port:
            def register_topic(self, topic: str, validate: Any, on_message: Any, **kw: Any) -> None:
                bus.handlers.setdefault(topic, []).append((idx, validate, on_message))

            def set_members(self, members: dict[str, bytes]) -> None:
                bus.members[idx] = members

            def publish_nowait(self, topic: str, data: bytes) -> bool:
                for j, validate, on_message in bus.handlers.get(topic, []):
                    if j == idx:
                        continue
                    out = validate(f"peer-{idx}", data)
                    bus.outcomes.append(out)
                    if out is Outcome.ACCEPT:
                        on_message(f"peer-{idx}", data)
                return True

        return Port()


def write_chain(root: Path) -> tuple[Path, bytes]:
    members = tuple(
        Member(n, f"org-{n}", crypto.public_bytes(k), (f"peer-{i}",), 0)
        for i, (n, k) in enumerate(zip(NAMES, KEYS, strict=True))
    )
    roster = Roster(NET, 0, ZERO_HASH, 1, 0, members, 0)
    sigs = {n: sign_genesis(roster, k) for n, k in zip(NAMES, KEYS, strict=True)}
    path = root / "roster.chain"
    path.write_bytes(RosterChain(roster.encode(), sigs, roster.hash).encode())
    return path, roster.hash


def make_bridges(
    root: Path, clock: Callable[[], int], records: list[AuditRecord]
) -> tuple[list[ConsensusBridge], Bus]:
    path, anchor = write_chain(root)
    bus = Bus()
    out = []
    for i, k in enumerate(KEYS):
        node = root / NAMES[i]
        node.mkdir(exist_ok=True)
        (node / "roster.chain").write_bytes(path.read_bytes())
        cs = ConsensusSettings.from_mapping(
            {"roster_chain": "roster.chain", "genesis": anchor.hex()}, "test", node_dir=node
        )
        b = ConsensusBridge(cs, load_chain_file(cs), k, records.append, f"node:{i}", clock=clock)
        b.attach(bus.port(i))  # type: ignore[arg-type]  # the in-memory bus stands in for P2PService
        out.append(b)
    return out, bus


def test_quorum_of_local_flags_blocks_everywhere(tmp_path: Path) -> None:
    now = [T0]
    records: list[AuditRecord] = []

    async def main() -> None:
        bridges, bus = make_bridges(tmp_path, lambda: now[0], records)
        assert not bridges[3].note_local_score("card", ENTITY, 0, 0.5, now[0])  # below threshold
        for i in range(3):
            assert bridges[i].note_local_score("card", ENTITY, 0, 0.95, now[0], tx_id=f"t{i}")
            now[0] += 1000
        for b in bridges:
            v = b.verdict_for("card", ENTITY, now[0])
            assert v is not None and v.level == "block" and len(set(v.members)) == 3
            assert VERDICT_REASONS[v.level] == "network_verdict_block"
        assert bridges[0].verdict_for("card", b"\x43" * 32, now[0]) is None
        # expiry: no verdict after the window (+ grace) ends and nobody renews
        assert bridges[0].verdict_for("card", ENTITY, T0 + 10**12) is None
        await asyncio.sleep(0)  # let the verdict-store appends be scheduled
        for b in bridges:
            b.close()  # joins the store writer
        assert all(o is Outcome.ACCEPT for o in bus.outcomes)

    asyncio.run(main())
    for name in NAMES:
        certs = read_certificates(tmp_path / name / "state" / "verdicts.store")
        assert [c.level for c in certs] == ["advisory", "step-up", "block"]
    blocks = [r for r in records if r.kind == "verdict" and r.action == "block"]
    assert len(blocks) == 4
    cert = read_certificates(tmp_path / NAMES[0] / "state" / "verdicts.store")[-1]
    assert dict(blocks[0].details)["verdict_id"] == hashlib.sha256(cert.encode()).hexdigest()


def test_false_positive_clears_and_restart_never_equivocates(tmp_path: Path) -> None:
    now = [T0]
    records: list[AuditRecord] = []

    async def main() -> None:
        bridges, _ = make_bridges(tmp_path, lambda: now[0], records)
        bridges[0].note_local_score("card", ENTITY, 0, 0.95, now[0], tx_id="t0")
        assert bridges[0].note_false_positive("t0", now[0] + 10)
        assert not bridges[0].note_false_positive("unknown-tx", now[0] + 10)
        assert bridges[1].verdict_for("card", ENTITY, now[0] + 20) is None  # retracted
        # bank-b restarts (new bridge, same node dir) and flags the same entity in the same window
        again, _ = make_bridges(tmp_path, lambda: now[0], records)
        b_old = bridges[1]
        b_old.note_local_score("card", ENTITY, 0, 0.95, now[0] + 30)
        restarted = again[1]
        sa = restarted.attester.flag("card", ENTITY, now[0] + 40)[0]
        assert sa.body.seq > 1 << 15  # a fresh block of sequence numbers
        # the peer that holds the pre-restart statement sees a change of mind, not equivocation
        b_old_stmt = next(a for a in bridges[2].tracker.attestations()
                          if a.body.member_id == "bank-b")  # fmt: skip
        assert b_old_stmt.body.seq != sa.body.seq
        bridges[2]._on_attestation("peer-1", sa.to_wire())
        assert not bridges[2].tracker.equivocators()
        for b in bridges + again:
            b.close()

    asyncio.run(main())


def test_hostile_and_stale_input_is_rejected_or_ignored(tmp_path: Path) -> None:
    records: list[AuditRecord] = []
    bridges, _ = make_bridges(tmp_path, lambda: T0, records)
    b = bridges[0]
    assert b._validate_attestation("peer-1", b"\x93garbage") is Outcome.REJECT
    assert b._validate_proof("peer-1", b"\x00" * 40) is Outcome.REJECT
    assert b._validate_roster("peer-1", b"\xc1") is Outcome.REJECT
    outsider = Ed25519PrivateKey.from_private_bytes(b"\x99" * 32)
    att = Attestation(NET, "bank-b", "card", ENTITY, 0, 0, 1, "risk", 9)  # window 0: long expired
    forged = sign_attestation(att, outsider)  # claims bank-b, signed by someone else
    assert b._validate_attestation("peer-1", forged.to_wire()) is Outcome.REJECT
    stale = sign_attestation(att, KEYS[1])
    assert b._validate_attestation("peer-1", stale.to_wire()) is Outcome.IGNORE
    b._on_attestation("peer-1", b"\x93garbage")  # never raises on the loop either
    assert b.counters["attestation_ignored:malformed"] + b.counters["attestation_error"] >= 1
    assert b.peer_allowed("peer-2") and not b.peer_allowed("peer-9")
    for x in bridges:
        x.close()


def test_settings_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"consensus\.genesis"):
        ConsensusSettings.from_mapping(
            {"roster_chain": "r", "genesis": "zz"}, "t", node_dir=tmp_path
        )
    with pytest.raises(ConfigError, match=r"consensus\.bogus"):
        ConsensusSettings.from_mapping({"bogus": 1}, "t", node_dir=tmp_path)
    with pytest.raises(ConfigError, match="window_s"):
        ConsensusSettings.from_mapping(
            {"roster_chain": "r", "genesis": "00" * 32, "window_s": 0}, "t", node_dir=tmp_path
        )
    cs = ConsensusSettings.from_mapping({"roster_chain": "nope", "genesis": "00" * 32}, "t",
                                        node_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match="cannot read roster chain"):
        load_chain_file(cs)
    path, _ = write_chain(tmp_path)
    cs = ConsensusSettings.from_mapping({"roster_chain": str(path), "genesis": "11" * 32}, "t",
                                        node_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match="does not verify"):
        load_chain_file(cs)


def test_roster_update_from_the_chain_file_is_adopted_and_gossiped(tmp_path: Path) -> None:
    from fraudnet.core.consensus import Proposal, SetPeers, sign_vote

    records: list[AuditRecord] = []
    bridges, bus = make_bridges(tmp_path, lambda: T0, records)
    a = bridges[0]
    chain = load_chain_file(a.settings)
    tip = chain.tip
    p = Proposal(NET, tip.version, tip.hash, (SetPeers("bank-a", ("peer-0", "peer-new")),), T0)
    raw = p.encode()
    chain.extend(raw, {n: sign_vote(raw, k, NET) for n, k in zip(NAMES[:3], KEYS[:3], strict=True)})
    a.settings.roster_chain.write_bytes(chain.encode())  # `fraudnet roster apply` did this
    os_mtime_bump(a.settings.roster_chain)
    assert a.check_chain_file() == 1
    for b in bridges:  # adopted locally, gossiped, adopted by every peer
        assert b.chain.tip.version == 1 and b.peer_allowed("peer-new")
    assert sum(r.kind == "roster_change" for r in records) == 4
    assert sorted(bus.members) == [0, 1, 2, 3]  # signal validators get the new member table
    assert set(bus.members[2]) == set(NAMES)
    assert (tmp_path / NAMES[2] / "state" / "roster.chain").exists()
    assert a.check_chain_file() == 0  # unchanged file: nothing to do
    a.settings.roster_chain.write_bytes(b"garbage")
    os_mtime_bump(a.settings.roster_chain)
    assert a.check_chain_file() == 0 and a.counters["chain_file_rejected"] == 1
    for b in bridges:
        b.close()


def os_mtime_bump(path: Path) -> None:
    import os

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_restart_restores_active_verdicts_from_the_store(tmp_path: Path) -> None:
    now = [T0]
    records: list[AuditRecord] = []

    async def main() -> None:
        bridges, _ = make_bridges(tmp_path, lambda: now[0], records)
        for i in range(3):
            bridges[i].note_local_score("card", ENTITY, 0, 0.95, now[0])
        await asyncio.sleep(0)
        for b in bridges:
            b.close()
        n_records = len(records)
        again, _ = make_bridges(tmp_path, lambda: now[0], records)
        assert again[3].verdict_for("card", ENTITY, now[0]) is None  # empty tracker
        assert again[3].restore() >= 3
        v = again[3].verdict_for("card", ENTITY, now[0])
        assert v is not None and v.level == "block"
        assert len(records) == n_records  # nothing re-recorded
        # once the window has expired, nothing is restored
        later, _ = make_bridges(tmp_path, lambda: T0 + 10**12, records)
        assert later[0].restore() == 0
        for b in again + later:
            b.close()

    asyncio.run(main())
    certs = read_certificates(tmp_path / NAMES[3] / "state" / "verdicts.store")
    assert [c.level for c in certs] == ["advisory", "step-up", "block"]


def test_equivocation_proof_is_gossiped_and_excludes_the_member(tmp_path: Path) -> None:
    records: list[AuditRecord] = []

    async def main() -> None:
        bridges, bus = make_bridges(tmp_path, lambda: T0, records)
        w = bridges[0].policy.window_of(T0)
        one = Attestation(NET, "bank-d", "card", ENTITY, 0, w, 7, "risk", 9, issued_at_us=T0)
        two = Attestation(NET, "bank-d", "card", ENTITY, 0, w, 7, "clear", 0, issued_at_us=T0)
        a, b = sign_attestation(one, KEYS[3]), sign_attestation(two, KEYS[3])
        bus.port(3).publish_nowait(bridges[0].topics["fraudnet/attestations/1"], a.to_wire())
        assert all(x.tracker.attestations() for x in bridges[:3])
        # bank-d shows the conflicting statement to bank-a only; the proof reaches everyone
        bridges[0]._on_attestation("peer-3", b.to_wire())
        for x in bridges[:3]:
            assert x.tracker.equivocators() == frozenset({"bank-d"})
            assert x.verdict_for("card", ENTITY, T0) is None  # its statements no longer count
        assert bridges[1].counters["proof_accepted"] == 1
        for x in bridges:
            x.close()

    asyncio.run(main())
