"""Three real node processes exchanging signed risk signals over libp2p on 127.0.0.x."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import requests

from fraudnet.testing import init_network, run_cli, running_node, wait_for

pytestmark = pytest.mark.integration


def _metric(api: str, name: str) -> float:
    for line in requests.get(f"{api}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_signals_flow_between_node_processes(tmp_path: Path) -> None:
    dirs = init_network(tmp_path, 3)
    with contextlib.ExitStack() as stack:
        eps = [stack.enter_context(running_node(d)) for d in dirs]
        for ep in eps:
            assert (
                ep["p2p"].startswith("/ip4/127.0.0.")
                and "/tcp/" in ep["p2p"]
                and "/p2p/" in ep["p2p"]
            )
        wait_for(lambda: all(_metric(ep["api"], "fraudnet_p2p_connected_members") >= 2 for ep in eps),
                 60, "mesh of 3")  # fmt: skip
        a = eps[0]
        auth = {"Authorization": f"Bearer {a['token']}"}
        cards = [f"49990000000{i:04d}" for i in range(30)]
        from fraudnet.replay.generator import luhn_complete

        cards = [luhn_complete(c) for c in cards]
        # 30 ordinary transactions, then 3 cards with an amount over the limit (score 0.92)
        for i, card in enumerate(cards):
            r = requests.post(f"{a['api']}/v1/decide", headers=auth, timeout=10, json={
                "tx_id": f"n-{i}", "timestamp": 1714564800 + i, "card": card,
                "terminal_id": "T1", "amount": "300.00" if i < 3 else "20.00"})  # fmt: skip
            assert r.status_code == 200
        for ep in eps[1:]:
            wait_for(lambda ep=ep: _metric(ep["api"], "fraudnet_network_evidence_entities") >= 1,
                     30, "signals at the other members")  # fmt: skip
        # budget: at most 5 % of 30 transactions + burst 5 -> the 3 high-risk cards at most
        assert _metric(a["api"], "fraudnet_policy_signalled_total") <= 3
        assert _metric(eps[1]["api"], "fraudnet_network_evidence_entities") <= 3
        # the raw card numbers never reach another node's state, logs or metrics
        for ep in eps[1:]:
            assert all(c not in requests.get(f"{ep['api']}/metrics", timeout=5).text for c in cards)
    for d in dirs:
        log = (d / "node.log").read_text()
        assert all(c not in log for c in cards)
    shown = run_cli("audit", "show", str(dirs[1]), "--kind", "signal_received", "--format", "jsonl")
    recs = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
    assert recs and recs[0]["details"]["peer"] == "member-0"
    assert run_cli("audit", "verify", str(dirs[1])).returncode == 0
