"""P2PService registered topics: validators on the trio side, bounded delivery, gating.

Real libp2p between P2PService threads of this process on 127.0.0.x.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.adapters.p2p.host import peer_id_of
from fraudnet.adapters.p2p.service import P2PService
from fraudnet.adapters.p2p.settings import P2PSettings
from fraudnet.core import crypto
from fraudnet.core.signals import EpochKey, NetworkKeyring, Outcome
from fraudnet.errors import ConfigError, UnavailableError

RING = NetworkKeyring([EpochKey(0, 0, b"\x07" * 32)], 0)
_port = itertools.count(47000 + (os.getpid() % 400) * 20)
TOPIC = "fraudnet/unit/things/1"


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)  # bounded polling with a deadline
    raise AssertionError(f"timed out waiting for {what}")


class Peer:
    def __init__(self, svc: P2PService) -> None:
        self.svc = svc
        self.got: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.seen: list[bytes] = []

    def received(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.got)


def validator(peer: Peer) -> Callable[[str, bytes], Outcome]:
    def validate(origin: str, data: bytes) -> Outcome:
        peer.seen.append(data)
        if data.startswith(b"bad"):
            return Outcome.REJECT
        if data.startswith(b"meh"):
            return Outcome.IGNORE
        return Outcome.ACCEPT

    return validate


def make(names: list[str], allowed: set[str] | None = None) -> dict[str, Peer]:
    keys = {
        n: Ed25519PrivateKey.from_private_bytes(bytes([40 + i]) * 32) for i, n in enumerate(names)
    }
    pids = {n: peer_id_of(crypto.public_bytes(keys[n])).to_base58() for n in names}
    addrs = {n: f"/ip4/127.0.0.{30 + i}/tcp/{next(_port)}" for i, n in enumerate(names)}
    members = {n: crypto.public_bytes(keys[n]).hex() for n in names}
    gate = None if allowed is None else {pids[n] for n in allowed}
    peers = {}
    for n in names:
        st = P2PSettings.from_mapping(
            {"listen": addrs[n], "network_id": "unit", "members": members,
             "network_key_file": "unused", "heartbeat_ms": 200,
             "peers": [f"{addrs[m]}/p2p/{pids[m]}" for m in names if m != n]},
            f"test:{n}",
        )  # fmt: skip
        is_allowed = None if gate is None else (lambda pid, g=gate: pid in g)  # type: ignore[misc]
        svc = P2PService(st, keys[n], RING, lambda p: None, is_allowed=is_allowed)
        peer = Peer(svc)

        def on_message(origin: str, data: bytes, peer: Peer = peer) -> None:
            with peer.lock:
                peer.got.append((origin, data))

        svc.register_topic(TOPIC, validator(peer), on_message, max_bytes=100, rate_per_s=2.0,
                           burst=12.0)  # fmt: skip
        peers[n] = peer
    peers["_pids"] = pids  # type: ignore[assignment]
    return peers


@pytest.fixture
def trio3() -> Iterator[dict[str, Peer]]:
    peers = make(["a", "b", "c"])
    nodes = [p for k, p in peers.items() if k != "_pids"]
    for p in nodes:
        p.svc.start()
    try:
        wait_for(lambda: all(p.svc.metrics()["p2p_connected_members"] >= 2 for p in nodes),
                 what="connectivity")  # fmt: skip
        yield peers
    finally:
        for p in nodes:
            p.svc.stop()


def test_registered_topic_delivers_validates_and_bounds(trio3: dict[str, Peer]) -> None:
    a, b, c = trio3["a"], trio3["b"], trio3["c"]
    pid_a = trio3["_pids"]["a"]  # type: ignore[index]

    def probe() -> bool:  # the mesh forms on the first heartbeats
        a.svc.publish_nowait(TOPIC, b"probe-%d" % time.monotonic_ns())
        return bool(b.received()) and bool(c.received())

    wait_for(probe, what="a probe at b and c")
    assert all(origin == pid_a for origin, _ in b.received())
    # REJECT and IGNORE are not delivered; oversize never reaches the validator
    a.svc.publish_nowait(TOPIC, b"bad thing")
    a.svc.publish_nowait(TOPIC, b"meh thing")
    a.svc.publish_nowait(TOPIC, b"x" * 101)
    a.svc.publish_nowait(TOPIC, b"good thing")
    wait_for(lambda: any(d == b"good thing" for _, d in b.received()), what="good thing")
    wait_for(lambda: b.svc.metrics()["p2p_topic_oversize"] >= 1, what="oversize counted")
    assert not any(d.startswith((b"bad", b"meh")) for _, d in b.received() + c.received())
    m = b.svc.metrics()
    assert m["p2p_topic_rejected"] >= 2 and m["p2p_topic_ignored"] >= 1
    assert b"x" * 101 not in b.seen
    # unknown topics are refused locally; a registered topic cannot be added after start
    assert a.svc.publish_nowait("fraudnet/unit/nope/1", b"z") is False
    with pytest.raises(UnavailableError):
        a.svc.register_topic("late", validator(a), lambda o, d: None)


def test_per_origin_rate_limit_ignores_the_excess(trio3: dict[str, Peer]) -> None:
    a, b = trio3["a"], trio3["b"]
    wait_for(lambda: a.svc.publish_nowait(TOPIC, b"probe-%d" % time.monotonic_ns())
             and bool(b.received()), what="mesh")  # fmt: skip
    for i in range(40):
        a.svc.publish_nowait(TOPIC, b"burst-%d" % i)
    wait_for(lambda: b.svc.metrics()["p2p_topic_rate_limited"] >= 1, what="rate limit")
    got = [d for _, d in b.received() if d.startswith(b"burst-")]
    assert len(got) < 40  # burst 12 + 2/s: the excess is ignored, not delivered


def test_register_twice_is_a_config_error() -> None:
    peers = make(["solo"])
    with pytest.raises(ConfigError):
        peers["solo"].svc.register_topic(TOPIC, validator(peers["solo"]), lambda o, d: None)
    svc = peers["solo"].svc
    svc.set_members({"solo": b"\x01" * 32, "new": b"\x02" * 32})  # not running: set at once
    assert set(svc.validator.members) == {"solo", "new"}


def test_gate_refuses_peers_outside_the_allowed_set() -> None:
    peers = make(["a", "b", "x"], allowed={"a", "b"})
    nodes = {k: p for k, p in peers.items() if k != "_pids"}
    for p in nodes.values():
        p.svc.start()
    try:
        wait_for(lambda: nodes["a"].svc.metrics()["p2p_connected_members"] >= 1, what="a-b")
        wait_for(lambda: nodes["a"].svc.metrics()["p2p_conn_refused_not_member"]
                 + nodes["b"].svc.metrics()["p2p_conn_refused_not_member"] >= 1,
                 what="x refused")  # fmt: skip
        assert nodes["a"].svc.metrics()["p2p_connected_members"] == 1
        for _ in range(5):
            nodes["x"].svc.publish_nowait(TOPIC, b"from x")
        wait_for(lambda: nodes["a"].svc.publish_nowait(TOPIC, b"probe-%d" % time.monotonic_ns())
                 and bool(nodes["b"].received()), what="a to b")  # fmt: skip
        assert not any(d == b"from x" for _, d in nodes["a"].received() + nodes["b"].received())
    finally:
        for p in nodes.values():
            p.svc.stop()
