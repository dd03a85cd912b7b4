"""A node gossips two different histories; witnesses catch the split view over real libp2p.

P2PService + WitnessBridge per node in threads of this process on 127.0.0.x (deliveries
run on the p2p thread: no event loop), real audit logs on disk, the CLI in-process.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.adapters.p2p.host import peer_id_of
from fraudnet.adapters.p2p.service import P2PService
from fraudnet.adapters.p2p.settings import P2PSettings
from fraudnet.adapters.storage.audit_log import open_audit_log
from fraudnet.adapters.witness import (
    WitnessBridge,
    WitnessSettings,
    latest_signed_checkpoint,
)
from fraudnet.cli.main import main
from fraudnet.core import crypto
from fraudnet.core.audit.schema import event_record
from fraudnet.core.audit.witness import encode_checkpoint_msg
from fraudnet.core.signals import EpochKey, NetworkKeyring

pytestmark = pytest.mark.integration

NET = "wsplit"
RING = NetworkKeyring([EpochKey(0, 0, b"\x09" * 32)], 0)
_port = itertools.count(49000 + (os.getpid() % 300) * 10)
NAMES = ["evil", "w1", "w2"]


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)  # bounded polling with a deadline
    raise AssertionError(f"timed out waiting for {what}")


def fork(d: Path, key: Ed25519PrivateKey, tag: str, n: int) -> bytes:
    with open_audit_log(d / "audit", key, network_id=NET) as log:
        for i in range(n):
            log.append_many([event_record("config_change", at_us=1_700_000_000_000_000 + i,
                                          actor="node:evil", action="set",
                                          change=f"{tag}-{i}")])  # fmt: skip
    signed = latest_signed_checkpoint(d / "audit")
    assert signed is not None
    return signed


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_split_view_over_gossip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = {n: Ed25519PrivateKey.from_private_bytes(bytes([80 + i]) * 32)
            for i, n in enumerate(NAMES)}  # fmt: skip
    pids = {n: peer_id_of(crypto.public_bytes(k)).to_base58() for n, k in keys.items()}
    addrs = {n: f"/ip4/127.0.0.{50 + i}/tcp/{next(_port)}" for i, n in enumerate(NAMES)}
    members = {n: crypto.public_bytes(k).hex() for n, k in keys.items()}
    # the evil node keeps two forks of its log: A (its real directory) and B (elsewhere)
    a = fork(tmp_path / "evil", keys["evil"], "a", 5)
    b = fork(tmp_path / "evil-fork-b", keys["evil"], "b", 5)
    assert a[37:45] == b[37:45] and a[53:85] != b[53:85]  # same size, different roots
    bridges, svcs = {}, {}
    for n in NAMES:
        st = P2PSettings.from_mapping(
            {"listen": addrs[n], "network_id": NET, "members": members,
             "network_key_file": "unused", "heartbeat_ms": 200,
             "peers": [f"{addrs[m]}/p2p/{pids[m]}" for m in NAMES if m != n]},
            f"test:{n}",
        )  # fmt: skip
        node = tmp_path / n
        log = open_audit_log(node / "audit", keys[n], network_id=NET)
        log.close()  # the bridge only needs the directory and the network id
        wb = WitnessBridge(WitnessSettings(1.0, node / "witness"), st, keys[n], log, node)
        svc = P2PService(st, keys[n], RING, lambda p: None)
        wb.attach(svc)
        bridges[n], svcs[n] = wb, svc
    for s in svcs.values():
        s.start()
    try:
        wait_for(lambda: all(s.metrics()["p2p_connected_members"] >= 2 for s in svcs.values()),
                 what="connectivity")  # fmt: skip
        topic = bridges["evil"].ckpt_topic

        def cosigned_by_both() -> bool:  # the mesh forms on the first heartbeats: repeat
            svcs["evil"].publish_nowait(topic, encode_checkpoint_msg(a))
            return all(lines(tmp_path / w / "witness" / "cosigned.jsonl") for w in ("w1", "w2"))

        wait_for(cosigned_by_both, what="both witnesses cosigning fork A")
        wait_for(lambda: len(lines(tmp_path / "evil" / "witness" / "received.jsonl")) >= 2,
                 what="cosignatures back at the evil node")  # fmt: skip
        # now it shows fork B (same size, another root) -- to whoever listens
        svcs["evil"].publish_nowait(topic, encode_checkpoint_msg(b))
        for w in ("w1", "w2"):
            wait_for(lambda w=w: bool(lines(tmp_path / w / "witness" / "conflicts.jsonl")),
                     what=f"split view detected at {w}")  # fmt: skip
            assert bridges[w].counters["observed_split-view"] >= 1
        # no witness ever cosigned fork B
        for w in ("w1", "w2"):
            roots = {
                r["checkpoint"][106:170] for r in lines(tmp_path / w / "witness" / "cosigned.jsonl")
            }
            assert b[53:85].hex() not in roots
    finally:
        for s in svcs.values():
            s.stop()
    pub = crypto.public_bytes(keys["evil"]).hex()
    code = 0
    try:
        main(["audit", "verify", str(tmp_path / "evil"), "--key", pub, "--json",
              "--witnesses", str(tmp_path / "w1"), str(tmp_path / "w2")])  # fmt: skip
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    assert code != 0 and "split-view at tree size 5" in err
    doc = json.loads(out)["witnesses"]
    assert [sv["tree_size"] for sv in doc["split_views"]] == [5]  # one proof, de-duplicated
