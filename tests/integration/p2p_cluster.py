"""A few P2PService nodes in threads of one process, on distinct 127.0.0.x addresses."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.adapters.p2p.host import peer_id_of
from fraudnet.adapters.p2p.service import P2PService
from fraudnet.adapters.p2p.settings import P2PSettings
from fraudnet.core import crypto
from fraudnet.core.signals import EpochKey, NetworkKeyring, SignalPayload

NET = "itest"
RING = NetworkKeyring([EpochKey(0, 0, b"\x05" * 32)], 0)
_port = itertools.count(42000 + (os.getpid() % 500) * 40)


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)  # bounded polling with a deadline, not synchronisation by sleep
    raise AssertionError(f"timed out waiting for {what}")


class Node:
    def __init__(self, svc: P2PService, inbox: list[SignalPayload], lock: threading.Lock) -> None:
        self.svc, self.inbox, self.lock = svc, inbox, lock

    def received(self) -> list[SignalPayload]:
        with self.lock:
            return list(self.inbox)


def make_cluster(
    names: list[str],
    *,
    member_names: list[str] | None = None,
    state_root: Path | None = None,
    key_seed: int = 1,
) -> tuple[dict[str, Node], dict[str, Ed25519PrivateKey]]:
    """Create (not start) one node per name; all names are members unless listed otherwise."""
    keys = {
        n: Ed25519PrivateKey.from_private_bytes(bytes([key_seed + i]) * 32)
        for i, n in enumerate(names)
    }
    members_of = member_names or names
    members = {n: crypto.public_bytes(keys[n]).hex() for n in members_of}
    addrs = {n: f"/ip4/127.0.0.{10 + i}/tcp/{next(_port)}" for i, n in enumerate(names)}
    pids = {n: peer_id_of(crypto.public_bytes(keys[n])).to_base58() for n in names}
    nodes = {}
    for n in names:
        mapping: dict[str, object] = {
            "listen": addrs[n],
            "network_id": NET,
            "members": members
            if n in members_of
            else {**members, n: crypto.public_bytes(keys[n]).hex()},
            "network_key_file": "unused",
            "peers": [f"{addrs[m]}/p2p/{pids[m]}" for m in names if m != n],
            "heartbeat_ms": 300,
        }
        if state_root is not None:
            mapping["state_dir"] = str(state_root / n)
        st = P2PSettings.from_mapping(mapping, f"test:{n}")
        inbox: list[SignalPayload] = []
        lock = threading.Lock()

        def deliver(
            p: SignalPayload, inbox: list[SignalPayload] = inbox, lock: threading.Lock = lock
        ) -> None:
            with lock:
                inbox.append(p)

        nodes[n] = Node(P2PService(st, keys[n], RING, deliver), inbox, lock)
    return nodes, keys


def start_all(nodes: dict[str, Node], expect_peers: int) -> None:
    for node in nodes.values():
        node.svc.start()
    wait_for(
        lambda: all(
            n.svc.metrics()["p2p_connected_members"] >= expect_peers for n in nodes.values()
        ),
        what="full connectivity",
    )


def stop_all(nodes: dict[str, Node]) -> None:
    for node in nodes.values():
        node.svc.stop()
