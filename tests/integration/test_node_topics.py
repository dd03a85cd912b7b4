"""On the embedded broker the node creates its topics at start (ADR 0504).

Otherwise ``tx-in`` only came into existence with the first producer, and the ingest
consumer, subscribed to a missing topic, saw it ~4.6 s later (metadata refresh + group
rebalance): the first transactions waited that long.
"""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Producer

from fraudnet.testing import run_cli, running_node


def test_every_topic_exists_before_anything_is_produced(tmp_path: Path) -> None:
    d = tmp_path / "n1"
    run_cli("node", "init", str(d), "--member", "bank-a")
    with running_node(d) as ep:
        # a metadata request without a topic name creates nothing
        topics = set(Producer({"bootstrap.servers": ep["broker"], "log_level": 3})
                     .list_topics(timeout=10).topics)  # fmt: skip
    names = {f"fraudnet.{t}" for t in ("tx-in", "tx-batch", "decisions", "tx-api", "labels",
                                       "dead-letters")}  # fmt: skip
    assert names <= topics, sorted(names - topics)


def test_an_idle_consumer_backs_off_and_still_takes_the_next_transaction(tmp_path: Path) -> None:
    """The Faust consumer's fetch wait goes from 1 ms to the idle wait (5 ms, auto on the
    embedded broker) once nothing arrives (ADR 0505); a transaction then still goes through."""
    import json
    import time

    import requests

    from fraudnet.testing import wait_for

    d = tmp_path / "n1"
    run_cli("node", "init", str(d), "--member", "bank-a")
    with running_node(d) as ep:
        hdr = {"Authorization": f"Bearer {ep['token']}"}

        def stats() -> dict[str, object]:
            r = requests.get(f"{ep['api']}/v1/stats", headers=hdr, timeout=10).json()
            return dict(r)

        wait_for(lambda: stats()["fetch_wait_ms"] == 5, 60, "the idle fetch wait")
        us = time.time_ns() // 1000
        p = Producer({"bootstrap.servers": ep["broker"], "log_level": 3})
        p.produce("fraudnet.tx-in", json.dumps({"tx_id": "idle-1", "timestamp": us / 1e6,
                                                "card": "card-1", "terminal_id": "T1",
                                                "amount": "9.99"}).encode())  # fmt: skip
        assert p.flush(10) == 0
        wait_for(lambda: stats()["decided"] == 1, 60, "the transaction after the quiet spell")
