"""Real libp2p (TCP + noise + yamux + GossipSub) between nodes in threads on 127.0.0.x."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from p2p_cluster import NET, RING, Node, make_cluster, start_all, stop_all, wait_for

from fraudnet.adapters.p2p.service import P2PService
from fraudnet.core.signals import Signal, SignalPayload, seal

pytestmark = pytest.mark.integration


def sig(i: int, now: int | None = None, ttl: int = 600_000_000) -> Signal:
    t = int(time.time() * 1e6) if now is None else now
    return Signal("card", bytes([i]) * 32, 950, ("velocity",), t, t + ttl, (8, 1))


@pytest.fixture
def cluster() -> dict[str, Node]:
    nodes, _ = make_cluster(["bank-a", "bank-b", "bank-c"])
    start_all(nodes, 2)
    # the mesh forms on the first heartbeats; wait until a probe reaches everyone
    yield nodes
    stop_all(nodes)
    assert not [t for t in threading.enumerate() if t.name == "fraudnet-p2p"]


def test_three_nodes_exchange_signals(cluster: dict[str, Node]) -> None:
    a, b, c = cluster["bank-a"], cluster["bank-b"], cluster["bank-c"]
    wait_for(lambda: _probe(a, [b, c]), what="signals from bank-a at b and c")
    c.svc.publish_nowait([sig(7)])
    wait_for(lambda: any(s.pseudonym == bytes([7]) * 32 for p in a.received() for s in p.signals))
    assert a.svc.metrics()["signals_envelopes_accepted"] >= 1
    # batching: many signals offered at once leave as few envelopes
    before = b.svc.metrics()["p2p_published_envelopes"]
    b.svc.publish_nowait([sig(100 + i) for i in range(50)])
    wait_for(lambda: sum(len(p.signals) for p in c.received() if p.signer == "bank-b") >= 50)
    assert b.svc.metrics()["p2p_published_envelopes"] - before <= 2
    seqs = [p.seq for p in c.received() if p.signer == "bank-b"]
    assert seqs == sorted(set(seqs))


_probe_n = [0]


def _probe(src: Node, dsts: list[Node]) -> bool:
    _probe_n[0] += 1
    src.svc.publish_nowait([sig(200 + _probe_n[0] % 50)])
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if all(d.received() for d in dsts):
            return True
        time.sleep(0.02)
    return False


def test_hostile_envelopes_are_counted_and_never_delivered() -> None:
    nodes, keys = make_cluster(["bank-a", "bank-b", "bank-c", "bank-m"], key_seed=40)
    start_all(nodes, 3)
    try:
        a, b, m = nodes["bank-a"], nodes["bank-b"], nodes["bank-m"]
        wait_for(lambda: _probe(m, [a, b]), what="bank-m reaches a and b")
        delivered_before = {n: len(x.received()) for n, x in nodes.items()}
        now = int(time.time() * 1e6)
        km, ka = keys["bank-m"], keys["bank-a"]

        def payload(
            seq: int, *, net: str = NET, signer: str = "bank-m", t: int = now
        ) -> SignalPayload:
            return SignalPayload(net, signer, 0, seq, t, (sig(1, t),))

        valid = seal(km, payload(1000))
        m.svc.publish_bytes_nowait(valid)
        wait_for(lambda: a.svc.metrics()["signals_envelopes_accepted"] >= 2, what="valid one")
        hostile = {
            # IGNORE reasons first: they do not lower bank-m's peer score
            "signals_ignore_expired": seal(km, payload(1001, t=now - 3_600_000_000)),
            # REJECT reasons (each penalises the forwarder bank-m)
            "signals_reject_oversized": b"\x00" * (70 * 1024),
            "signals_reject_wrong_network": seal(km, payload(1002, net="othernet")),
            "signals_reject_unknown_signer": seal(km, payload(1003, signer="bank-x")),
            "signals_reject_bad_signature": seal(km, payload(1004, signer="bank-a")),  # forged
            "signals_reject_malformed": b"\x92\x01",
        }
        tampered = bytearray(seal(km, payload(1005)))
        tampered[-70] ^= 0x40
        hostile["signals_reject_bad_signature_tampered"] = bytes(tampered)
        del ka
        for counter, data in hostile.items():
            name = counter.removesuffix("_tampered")
            want = 2 if counter.endswith("_tampered") else 1
            m.svc.publish_bytes_nowait(data)
            for node in (a, b):
                wait_for(
                    lambda node=node, name=name, want=want: node.svc.metrics()[name] >= want,
                    what=counter,
                )
        for node in (a, b):
            assert {n: len(x.received()) for n, x in nodes.items()}[
                node.svc.member_id
            ] == delivered_before[node.svc.member_id] + 1  # only the valid envelope reached scoring
            assert node.svc.metrics()["p2p_rejects_forwarded"] >= 6
    finally:
        stop_all(nodes)


def test_replay_is_ignored_after_restart_from_persisted_state(tmp_path: Path) -> None:
    nodes, keys = make_cluster(["bank-a", "bank-c", "bank-m"], key_seed=60, state_root=tmp_path)
    start_all(nodes, 2)
    try:
        a, c, m = nodes["bank-a"], nodes["bank-c"], nodes["bank-m"]
        wait_for(lambda: _probe(m, [a, c]), what="bank-m reaches a and c")
        now = int(time.time() * 1e6)
        valid = seal(keys["bank-m"], SignalPayload(NET, "bank-m", 0, 5000, now, (sig(3, now),)))
        m.svc.publish_bytes_nowait(valid)
        wait_for(lambda: a.svc.highest_seq("bank-m") == 5000, what="a accepted seq 5000")
        a.svc.stop()
        c.svc.stop()  # the replayer restarts too: its GossipSub seen-cache would drop the bytes
        assert (tmp_path / "bank-a" / "p2p-replay.msgpack").exists()
        got: list[SignalPayload] = []
        restarted = P2PService(a.svc.settings, keys["bank-a"], RING, got.append)
        nodes["bank-a"] = Node(restarted, got, threading.Lock())
        c_inbox: list[SignalPayload] = []
        c2 = P2PService(c.svc.settings, keys["bank-c"], RING, c_inbox.append)
        nodes["bank-c"] = c = Node(c2, c_inbox, threading.Lock())
        restarted.start()
        c2.start()
        wait_for(lambda: restarted.metrics()["p2p_connected_members"] >= 2, what="reconnect")
        assert restarted.highest_seq("bank-m") == 5000
        wait_for(lambda: _probe(c, [nodes["bank-a"]]), timeout=40, what="c reaches restarted a")
        # bank-c replays bank-m's envelope byte for byte; a's GossipSub seen-cache is empty after
        # the restart, so only the persisted replay state can catch it
        c.svc.publish_bytes_nowait(valid)
        wait_for(lambda: restarted.metrics()["signals_ignore_replay"] >= 1, what="replay counted")
        assert all(p.seq != 5000 for p in got)
    finally:
        stop_all(nodes)


def test_outsiders_cannot_connect_or_read() -> None:
    nodes, _ = make_cluster(
        ["bank-a", "bank-b", "outsider"], member_names=["bank-a", "bank-b"], key_seed=80
    )
    for n in nodes.values():
        n.svc.start()
    try:
        a, b, o = nodes["bank-a"], nodes["bank-b"], nodes["outsider"]
        wait_for(lambda: a.svc.metrics()["p2p_connected_members"] >= 1, what="a-b connected")
        wait_for(
            lambda: (
                a.svc.metrics()["p2p_conn_refused_not_member"]
                + b.svc.metrics()["p2p_conn_refused_not_member"]
                >= 1
            ),
            what="outsider refused",
        )
        wait_for(lambda: _probe(a, [b]), what="a reaches b")
        assert o.received() == []
        assert o.svc.metrics()["signals_envelopes_accepted"] == 0
    finally:
        stop_all(nodes)
