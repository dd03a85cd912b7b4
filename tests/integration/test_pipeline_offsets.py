"""Ingest commits the tx-in offsets (coalesced) once everything before them is decided."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from fraudnet.core.records import decode_decisions
from fraudnet.testing import committed_offsets, read_topic, run_cli, running_node

pytestmark = pytest.mark.integration


def test_offsets_committed_after_decisions_and_counts_reconcile(tmp_path: Path) -> None:
    from confluent_kafka import Producer

    d = tmp_path / "n1"
    run_cli("node", "init", str(d), "--member", "bank-a")
    with running_node(d) as ep:
        topic = ep["topics"]["tx_in"]
        p = Producer({"bootstrap.servers": ep["broker"], "log_level": 3, "linger.ms": 2})
        n = 3000
        for i in range(n):
            rec = {"tx_id": f"off-{i}", "timestamp": 1714564800 + i, "card": f"card-{i % 97}",
                   "terminal_id": f"T{i % 13}", "amount_minor": 100 + i, "currency": "EUR"}  # fmt: skip
            p.produce(topic, json.dumps(rec).encode(), key=rec["card"].encode())
            if i % 500 == 499:  # a re-send and an invalid record now and then
                p.produce(topic, json.dumps(rec).encode(), key=rec["card"].encode())
                p.produce(topic, b'{"tx_id": "off-bad", "amount": "x"}')
        assert p.flush(10) == 0
        produced = n + 2 * (n // 500)

        def all_decided(vs: list[bytes]) -> bool:
            return len({x.tx_id for v in vs for x in decode_decisions(v)}) >= n

        values = read_topic(ep["broker"], ep["topics"]["decisions"], until=all_decided)
        ids = [x.tx_id for v in values for x in decode_decisions(v)]
        assert len(ids) == n == len(set(ids))
        group = "fraudnet-n1-ingest"
        deadline = time.monotonic() + 30
        committed = 0
        while time.monotonic() < deadline:
            committed = committed_offsets(ep["broker"], group, topic)
            if committed == produced:
                break
            time.sleep(0.1)
        assert committed == produced
        h: dict[str, Any] = requests.get(f"{ep['api']}/health", timeout=5).json()
        assert h["received"] == produced
        assert h["decided"] == n and h["duplicates"] == n // 500
        assert h["dead_lettered"] == n // 500
        assert h["received"] == h["decided"] + h["dead_lettered"] + h["duplicates"]
    assert ep["proc"].returncode == 0  # SIGTERM drained and exited 0
