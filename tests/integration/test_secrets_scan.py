"""No key, raw card number or network key in logs, metrics, topics or audit records (issue 10, item 5).

A three-member network runs a short replay with realistic Luhn-valid card numbers; then every
artefact a member or an auditor can see is scanned for the secrets.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import requests

from fraudnet.adapters.storage.keys import load_api_token, load_local_secret
from fraudnet.replay.generator import GeneratorConfig, generate
from fraudnet.testing import init_network, read_topic, run_cli, running_node, wait_for

pytestmark = pytest.mark.integration


def test_no_secret_or_card_number_leaks(tmp_path: Path) -> None:
    dirs = init_network(tmp_path, 3)
    for d in dirs:
        toml = d / "node.toml"
        # tx-batch is scanned below: keep it after the node consumed it (ADR 0506)
        text = toml.read_text().replace("# USD = 0.92", "USD = 0.92")
        text = text.replace("trim_consumed = true", "trim_consumed = false")
        assert "trim_consumed = false" in text
        toml.write_text(text)
    recs = list(generate(GeneratorConfig(customers=60, terminals=90, days=5, seed=9), limit=400))
    assert len(recs) == 400
    cards = sorted({r["card"] for r in recs})
    artefacts: dict[str, bytes] = {}
    with contextlib.ExitStack() as stack:
        eps = [stack.enter_context(running_node(d)) for d in dirs]
        wait_for(lambda: all("fraudnet_p2p_connected_members 2.0" in
                             requests.get(f"{ep['api']}/metrics", timeout=5).text for ep in eps),
                 60, "mesh")  # fmt: skip
        auth = {"Authorization": f"Bearer {eps[0]['token']}"}
        body = "\n".join(json.dumps(r) for r in recs)
        r = requests.post(f"{eps[0]['api']}/v1/ingest", data=body, headers=auth, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["decided"] == 400, r.text
        bad = json.dumps({**recs[0], "tx_id": "bad-1", "amount": "nope"})
        requests.post(f"{eps[0]['api']}/v1/ingest", data=bad, headers=auth, timeout=30)
        for i, ep in enumerate(eps):
            artefacts[f"metrics-{i}"] = requests.get(f"{ep['api']}/metrics", timeout=5).content
            artefacts[f"health-{i}"] = requests.get(f"{ep['api']}/health", timeout=5).content
        for topic in ("decisions", "dead_letters", "tx_batch"):
            vals = read_topic(
                eps[0]["broker"], eps[0]["topics"][topic], until=lambda vs: len(vs) >= 1
            )
            artefacts[f"topic-{topic}"] = b"\n".join(vals)
    for i, d in enumerate(dirs):
        artefacts[f"log-{i}"] = (d / "node.log").read_bytes()
        shown = run_cli("audit", "show", str(d), "--format", "jsonl", "--limit", "100000")
        artefacts[f"audit-{i}"] = shown.stdout.encode()
        for f in (d / "audit").rglob("*"):
            if f.is_file():
                artefacts[f"auditfile-{i}-{f.name}"] = f.read_bytes()
    secrets: dict[str, bytes] = {}
    for i, d in enumerate(dirs):
        secrets[f"node.key-{i}"] = "".join((d / "node.key").read_text().splitlines()[1:-1]).encode()
        secrets[f"local.secret-{i}"] = load_local_secret(d).hex().encode()
        secrets[f"api.token-{i}"] = load_api_token(d).encode()
        secrets[f"network.key-{i}"] = (d / "network.key").read_text().split()[2].encode()
    assert len(artefacts) > 10
    for name, blob in artefacts.items():
        for card in cards:
            assert card.encode() not in blob, f"card number in {name}"
        for sname, s in secrets.items():
            assert s not in blob, f"{sname} in {name}"
    # the invalid record was dead-lettered with its card number masked
    assert b"bad-1" in artefacts["topic-dead_letters"]
