"""End-to-end: real `fraudnet node run` processes on the embedded broker (127.0.0.1)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import requests

from fraudnet.core.records import decode_decisions
from fraudnet.testing import read_topic, run_cli, running_node, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("node") / "n1"
    run_cli("node", "init", str(d), "--member", "bank-a")
    toml = (d / "node.toml").read_text().replace("# USD = 0.92", "USD = 0.92")
    (d / "node.toml").write_text(toml)
    with running_node(d) as ep:
        ep["dir"] = d
        yield ep


def _decisions(values: list[bytes]) -> list[Any]:
    return [d for v in values for d in decode_decisions(v)]


def test_ingest_file_then_exactly_one_decision_each(node: Any, tmp_path: Path) -> None:
    f = tmp_path / "tx.jsonl"
    run_cli("generate", "--out", str(f), "-n", "10000", "--seed", "3")
    out = run_cli(
        "ingest", str(f), "--node", str(node["dir"]), "-q", "--state", str(tmp_path / "p.json")
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary == {
        "records": 10000,
        "received": 10000,
        "decided": 10000,
        "duplicates": 0,
        "dead_lettered": 0,
    }
    values = read_topic(
        node["broker"], node["topics"]["decisions"],
        until=lambda vs: len({d.tx_id for d in _decisions(vs) if d.tx_id.startswith("g")}) >= 10000,
    )  # fmt: skip
    ids = [d.tx_id for d in _decisions(values) if d.tx_id.startswith("g")]
    assert len(ids) == 10000 == len(set(ids))
    # re-sending the whole file decides nothing twice
    out = run_cli(
        "ingest",
        str(f),
        "--node",
        str(node["dir"]),
        "-q",
        "--restart",
        "--state",
        str(tmp_path / "p.json"),
    )
    again = json.loads(out.stdout.strip().splitlines()[-1])
    assert again["decided"] == 0 and again["duplicates"] == 10000
    health = requests.get(f"{node['api']}/health", timeout=5).json()
    assert health["received"] == health["decided"] + health["dead_lettered"] + health["duplicates"]


def test_external_kafka_client_feeds_the_node(node: Any) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": node["broker"], "log_level": 3})
    good = [
        {"tx_id": f"ext-{i}", "timestamp": 1714564800 + i, "card": f"card-{i % 7}",
         "terminal_id": "T9", "amount_minor": 1000 + i, "currency": "USD"}
        for i in range(300)
    ]  # fmt: skip
    for r in good:
        p.produce(node["topics"]["tx_in"], json.dumps(r).encode())
    bad = [b"{not json", json.dumps({**good[0], "tx_id": "ext-bad", "amount_minor": -3}).encode(),
           json.dumps({**good[0], "tx_id": "ext-bad2", "currency": "XXX"}).encode()]  # fmt: skip
    for b in bad:
        p.produce(node["topics"]["tx_in"], b)
    assert p.flush(10) == 0
    values = read_topic(
        node["broker"], node["topics"]["decisions"],
        until=lambda vs: sum(d.tx_id.startswith("ext-") for d in _decisions(vs)) >= 300,
    )  # fmt: skip
    ext = [d for d in _decisions(values) if d.tx_id.startswith("ext-")]
    assert sorted(d.tx_id for d in ext) == sorted(r["tx_id"] for r in good)
    dls = read_topic(
        node["broker"], node["topics"]["dead_letters"],
        until=lambda vs: sum(b'"partition' in v for v in vs) >= 3,
    )  # fmt: skip
    reasons = [json.loads(v) for v in dls if b'"partition' in v]
    fields = sorted(str(r["field"]) for r in reasons)
    assert fields == ["None", "amount_minor", "currency"]
    assert all(
        r["source"] == node["topics"]["tx_in"] and "offset" in r["location"] for r in reasons
    )


def test_http_api_contract(node: Any) -> None:
    url, tok = node["api"], node["token"]
    auth = {"Authorization": f"Bearer {tok}"}
    tx = {"tx_id": "api-1", "timestamp": "2024-05-01T10:00:00Z", "card": "4111111111111111",
          "terminal_id": "T1", "amount": "999.00"}  # fmt: skip
    assert requests.post(f"{url}/v1/decide", json=tx, timeout=5).status_code == 401
    assert (
        requests.post(
            f"{url}/v1/decide", json=tx, headers={"Authorization": "Bearer nope"}, timeout=5
        ).status_code
        == 401
    )
    r = requests.post(f"{url}/v1/decide", json=tx, headers=auth, timeout=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["outcome"] == "block"
        and body["reasons"]
        and body["model_id"]
        and not body["duplicate"]
    )
    r2 = requests.post(f"{url}/v1/decide", json=tx, headers=auth, timeout=5).json()
    assert r2["duplicate"] and r2["outcome"] == "block"
    bad = requests.post(
        f"{url}/v1/decide", json={**tx, "tx_id": "api-2", "amount": "x"}, headers=auth, timeout=5
    )
    assert bad.status_code == 400 and bad.json()["field"] == "amount"
    notjson = requests.post(f"{url}/v1/decide", data=b"{", headers=auth, timeout=5)
    assert notjson.status_code == 400 and "JSON" in notjson.json()["error"]
    big = requests.post(f"{url}/v1/ingest", data=b"x" * (9 * 1024 * 1024), headers=auth, timeout=30)
    assert big.status_code == 413
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    assert 'fraudnet_decisions_total{outcome="block",path="api"}' in metrics
    assert "4111111111111111" not in metrics


def test_labels_endpoint(node: Any) -> None:
    auth = {"Authorization": f"Bearer {node['token']}"}
    r = requests.post(
        f"{node['api']}/v1/labels",
        json={"tx_id": "api-1", "kind": "fraud"},
        headers=auth,
        timeout=5,
    )
    assert r.status_code == 200 and r.json() == {"accepted": 1}
    bad = requests.post(
        f"{node['api']}/v1/labels",
        json={"tx_id": "api-1", "kind": "maybe"},
        headers=auth,
        timeout=5,
    )
    assert bad.status_code == 400
    vals = read_topic(node["broker"], node["topics"]["labels"], until=lambda vs: len(vs) >= 1)
    assert json.loads(vals[0])["kind"] == "fraud"


def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    d = tmp_path / "n2"
    run_cli("node", "init", str(d))
    with running_node(d) as ep:
        proc = ep["proc"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    log = (d / "node.log").read_text()
    assert '"event": "node_stop"' in log
    assert "Traceback" not in log


def test_bad_config_is_one_line_with_exit_code(tmp_path: Path) -> None:
    d = tmp_path / "n3"
    run_cli("node", "init", str(d))
    (d / "node.toml").write_text("[api]\nlisten = 'nope'\n")
    p = run_cli("node", "run", str(d), check=False)
    assert p.returncode == 3
    assert p.stderr.strip().count("\n") == 0 and "api.listen" in p.stderr
    (d / "node.toml").write_text("")
    (d / "node.key").chmod(0o644)
    p = run_cli("node", "run", str(d), check=False)
    assert p.returncode == 7 and "too open" in p.stderr


def test_label_reaches_the_scorer(node: Any) -> None:
    """A label for a decided transaction is applied (counted by kind), an unknown one is not."""
    auth = {"Authorization": f"Bearer {node['token']}"}
    tx = {"tx_id": "lab-1", "timestamp": "2024-05-01T10:00:00Z", "card": "card-lab",
          "terminal_id": "T7", "amount": "10.00"}  # fmt: skip
    assert (
        requests.post(f"{node['api']}/v1/decide", json=tx, headers=auth, timeout=5).status_code
        == 200
    )
    for tx_id in ("lab-1", "no-such-tx"):
        r = requests.post(f"{node['api']}/v1/labels", json={"tx_id": tx_id, "kind": "chargeback"},
                          headers=auth, timeout=5)  # fmt: skip
        assert r.status_code == 200

    def counted() -> bool:
        m = requests.get(f"{node['api']}/metrics", timeout=5).text
        return ('fraudnet_labels_total{kind="chargeback"} 1.0' in m
                and 'fraudnet_labels_total{kind="unknown_tx"} 1.0' in m)  # fmt: skip

    wait_for(counted, 30, "labels to be applied")
