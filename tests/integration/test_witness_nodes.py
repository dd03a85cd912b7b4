"""Three real node processes cosign each other's audit checkpoints over libp2p; a rewrite shows."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import pytest
import requests

from fraudnet.adapters.storage.audit_log import open_audit_log
from fraudnet.adapters.storage.keys import load_node_key
from fraudnet.adapters.witness import read_witness_dir
from fraudnet.core import crypto
from fraudnet.core.audit.schema import event_record
from fraudnet.replay.generator import luhn_complete
from fraudnet.testing import init_network, run_cli, running_nodes, wait_for

pytestmark = pytest.mark.integration


def _cosigned_keys(d: Path, name: str) -> set[bytes]:
    f = d / "witness" / name
    if not f.exists():
        return set()
    with contextlib.suppress(Exception):  # a line being written right now: poll again
        return {c.witness_key if name == "received.jsonl" else c.log_key
                for c in read_witness_dir(f)[0]}  # fmt: skip
    return set()


def test_nodes_cosign_each_other_and_a_rewrite_is_detected(tmp_path: Path) -> None:
    dirs = init_network(tmp_path, 3, witness=True)
    keys = [crypto.public_bytes(load_node_key(d)) for d in dirs]
    with running_nodes(dirs) as eps:
        for k, ep in enumerate(eps):
            for i in range(5):
                r = requests.post(f"{ep['api']}/v1/decide", timeout=10,
                                  headers={"Authorization": f"Bearer {ep['token']}"},
                                  json={"tx_id": f"w{k}-{i}", "timestamp": int(time.time()),
                                        "card": luhn_complete(f"49995555{k:03d}{i:04d}"),
                                        "terminal_id": "T1", "amount": "10.00"})  # fmt: skip
                assert r.status_code == 200
        for i, d in enumerate(dirs):
            others = {k for j, k in enumerate(keys) if j != i}
            wait_for(lambda d=d, o=others: o <= _cosigned_keys(d, "cosigned.jsonl"), 60,
                     f"{d.name} cosigning both peers")  # fmt: skip
            wait_for(lambda d=d, o=others: o <= _cosigned_keys(d, "received.jsonl"), 60,
                     f"{d.name} receiving cosignatures from both peers")  # fmt: skip
    a, w1, w2 = dirs
    ok = run_cli("audit", "verify", str(a), "--key", keys[0].hex(), "--json",
                 "--witnesses", str(w1), str(w2))  # fmt: skip
    doc = json.loads(ok.stdout)["witnesses"]
    assert doc["ok"] and doc["checked"] >= 2 and len(doc["witness_keys"]) == 2
    # its own received cosignatures work as witness evidence too
    assert run_cli("audit", "verify", str(a), "--witnesses", str(a)).returncode == 0
    # the operator of node a rewrites its log and re-signs it with the node key
    shutil.rmtree(a / "audit")
    with open_audit_log(a / "audit", load_node_key(a), network_id="testnet") as log:
        for i in range(500):
            log.append_many([event_record("config_change", at_us=1_700_000_000_000_000 + i,
                                          actor="node:a", action="set", change=f"x{i}")])  # fmt: skip
    assert run_cli("audit", "verify", str(a), "--key", keys[0].hex()).returncode == 0
    bad = run_cli("audit", "verify", str(a), "--key", keys[0].hex(),
                  "--witnesses", str(w1), str(w2), check=False)  # fmt: skip
    assert bad.returncode != 0
    assert "witnesses disagree with the log: rewritten" in bad.stderr
