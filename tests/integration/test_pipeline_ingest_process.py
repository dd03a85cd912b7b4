"""Ingest in a second process (FRAUDNET_INGESTPROC=1): same guarantees, no orphans."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from fraudnet.core.records import decode_decisions
from fraudnet.testing import committed_offsets, read_topic, run_cli, running_node, wait_for

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


def _worker_pid(node_pid: int) -> int:
    def find() -> int | None:
        for c in _children(node_pid):
            try:
                cmd = Path(f"/proc/{c}/cmdline").read_bytes()
            except OSError:
                continue
            if b"ingest_worker" in cmd:
                return c
        return None

    pid: int = wait_for(find, 30, "ingest worker process")
    return pid


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _produce(ep: dict[str, Any], n: int) -> int:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": ep["broker"], "log_level": 3, "linger.ms": 2})
    topic = ep["topics"]["tx_in"]
    for i in range(n):
        rec = {"tx_id": f"ip-{i}", "timestamp": 1714564800 + i, "card": f"card-{i % 97}",
               "terminal_id": f"T{i % 13}", "amount_minor": 100 + i, "currency": "EUR"}  # fmt: skip
        p.produce(topic, json.dumps(rec).encode())
        if i % 250 == 249:  # a re-send, an invalid record and an undecodable one now and then
            p.produce(topic, json.dumps(rec).encode())
            p.produce(topic, b'{"tx_id": "ip-bad", "amount": "x"}')
            p.produce(topic, b"\xff not json")
    assert p.flush(10) == 0
    return n + 3 * (n // 250)


def test_ingest_process_decides_everything_once_and_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDNET_INGESTPROC", "1")
    d = tmp_path / "n1"
    run_cli("node", "init", str(d), "--member", "bank-a")
    with running_node(d) as ep:
        worker = _worker_pid(ep["pid"])
        n = 2000
        produced = _produce(ep, n)

        def all_decided(vs: list[bytes]) -> bool:
            return len({x.tx_id for v in vs for x in decode_decisions(v)}) >= n

        values = read_topic(ep["broker"], ep["topics"]["decisions"], until=all_decided)
        ids = [x.tx_id for v in values for x in decode_decisions(v)]
        assert len(ids) == n == len(set(ids))

        def reconciled() -> dict[str, Any] | None:
            h: dict[str, Any] = requests.get(f"{ep['api']}/health", timeout=5).json()
            return h if h["received"] == produced else None

        h = wait_for(reconciled, 30, "node counts")
        assert h["decided"] == n and h["duplicates"] == n // 250
        assert h["dead_lettered"] == 2 * (n // 250)
        assert h["received"] == h["decided"] + h["dead_lettered"] + h["duplicates"]
        wait_for(lambda: committed_offsets(ep["broker"], "fraudnet-n1-ingest", ep["topics"]["tx_in"])
                 == produced, 30, "offsets committed by the ingest process")  # fmt: skip
        assert _alive(worker)
    assert ep["proc"].returncode == 0  # SIGTERM: the child drained, said bye, the node exited 0
    assert not _alive(worker)


def test_sigkill_of_the_node_leaves_no_ingest_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDNET_INGESTPROC", "1")
    d = tmp_path / "n2"
    run_cli("node", "init", str(d), "--member", "bank-b")
    with running_node(d) as ep:
        worker = _worker_pid(ep["pid"])
        os.kill(ep["pid"], signal.SIGKILL)
        ep["proc"].wait(10)
        deadline = time.monotonic() + 15
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)  # bounded polling for the child's exit
        assert not _alive(worker), "the ingest process outlived a SIGKILLed node"


@pytest.mark.slow
def test_a_killed_ingest_process_is_restarted_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDNET_INGESTPROC", "1")
    d = tmp_path / "n3"
    run_cli("node", "init", str(d), "--member", "bank-c")
    with running_node(d) as ep:
        first = _worker_pid(ep["pid"])
        os.kill(first, signal.SIGKILL)
        second: int = wait_for(lambda: next((c for c in [_worker_pid(ep["pid"])] if c != first),
                                            None), 30, "a restarted ingest process")  # fmt: skip
        assert second != first
        n = 500
        produced = _produce(ep, n)

        def all_decided(vs: list[bytes]) -> bool:
            return len({x.tx_id for v in vs for x in decode_decisions(v)}) >= n

        values = read_topic(ep["broker"], ep["topics"]["decisions"], until=all_decided)
        assert len({x.tx_id for v in values for x in decode_decisions(v)}) == n
        h = wait_for(lambda: (r := requests.get(f"{ep['api']}/health", timeout=5).json())
                     ["received"] == produced and r, 30, "node counts")  # fmt: skip
        assert h["received"] == h["decided"] + h["dead_lettered"] + h["duplicates"]
    assert ep["proc"].returncode == 0
