"""A node process with a risk policy: rule reason codes, review queue, hot reload, audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from fraudnet.testing import run_cli, running_node, wait_for

pytestmark = pytest.mark.integration

POLICY = """
[policy]
name = "itest"
version = {version}
description = "integration test policy"

[thresholds]
review_at = 0.5
block_at = 0.9

[[rules]]
id = "mid_amount"
version = {version}
description = "Amount above {limit}: review"
action = "review"
when = "amount > {limit}"
"""


def _decide(ep: dict[str, object], tx_id: str, amount: str) -> dict[str, object]:
    r = requests.post(
        f"{ep['api']}/v1/decide",
        headers={"Authorization": f"Bearer {ep['token']}"},
        json={"tx_id": tx_id, "timestamp": 1714564800, "card": "card-1", "terminal_id": "T1",
              "amount": amount},
        timeout=10,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    out: dict[str, object] = r.json()
    return out


def test_policy_review_queue_and_hot_reload(tmp_path: Path) -> None:
    d = tmp_path / "n"
    run_cli("node", "init", str(d))
    p1 = tmp_path / "p1.toml"
    p1.write_text(POLICY.format(version=1, limit=100))
    run_cli("policy", "deploy", str(p1), "--node", str(d))
    with running_node(d) as ep:
        first = _decide(ep, "t1", "150.00")
        assert first["outcome"] == "review"
        assert str(first["reasons"][0]).startswith("rule:mid_amount@v1")  # type: ignore[index]
        assert _decide(ep, "t2", "50.00")["outcome"] == "allow"
        # the review transaction is in the analysts' queue once durable
        listed = run_cli("review", "list", "--node", str(d), "--json")
        queue = json.loads(listed.stdout)
        assert [i["tx_id"] for i in queue["items"]] == ["t1"]
        assert queue["items"][0]["reasons"][0].startswith("rule:mid_amount@v1")
        # resolving it emits a label that reaches the node's scorer through the labels topic
        run_cli("review", "resolve", "t1", "fraud", "--node", str(d), "--note", "confirmed")

        def label_applied() -> bool:
            m = requests.get(f"{ep['api']}/metrics", timeout=5).text
            return 'fraudnet_labels_total{kind="fraud"} 1.0' in m

        wait_for(label_applied, 30, "the review label to reach the scorer", interval=0.2)
        # hot reload: a new version of the policy replaces the live one, no restart
        p2 = tmp_path / "p2.toml"
        p2.write_text(POLICY.format(version=2, limit=40))
        run_cli("policy", "deploy", str(p2), "--node", str(d))
        n = iter(range(1000))

        def reloaded() -> bool:
            return _decide(ep, f"probe-{next(n)}", "50.00")["outcome"] == "review"

        wait_for(reloaded, 30, "the new policy to be live", interval=0.2)
        # shadow: a stricter candidate is compared on live traffic without changing decisions
        p3 = tmp_path / "p3.toml"
        p3.write_text(
            POLICY.format(version=3, limit=5).replace('action = "review"', 'action = "block"')
        )
        run_cli("policy", "deploy", str(p3), "--node", str(d), "--shadow")

        def shadowed() -> bool:
            out = _decide(ep, f"probe-{next(n)}", "20.00")
            assert out["outcome"] == "allow"  # live (limit 40) allows 20.00
            m = requests.get(f"{ep['api']}/metrics", timeout=5).text
            return 'fraudnet_policy_shadow_transactions_total{candidate="block",live="allow"}' in m

        wait_for(shadowed, 30, "shadow comparison counted", interval=0.2)
        shadow_file = d / "run" / "shadow.json"
        wait_for(shadow_file.exists, 10, "the shadow comparison file")
        assert json.loads(shadow_file.read_text())["total"] >= 1
    shown = run_cli("audit", "show", str(d), "--kind", "policy_change", "--format", "jsonl")
    changes = [json.loads(x) for x in shown.stdout.splitlines() if x.strip()]
    assert changes and changes[-1]["details"]["policy_id"]
    assert run_cli("audit", "verify", str(d)).returncode == 0
