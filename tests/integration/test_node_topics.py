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


def test_consumed_input_records_are_deleted_from_the_embedded_broker(tmp_path: Path) -> None:
    """tx-in and tx-batch records the node's groups committed are deleted (ADR 0506): the
    broker's log walk stays short; every transaction is still decided exactly once, and
    the decisions topic (read by others) keeps all its records."""
    import json
    import time

    import requests
    from confluent_kafka import Consumer, TopicPartition

    from fraudnet.testing import wait_for

    d = tmp_path / "n1"
    run_cli("node", "init", str(d), "--member", "bank-a")
    n = 300
    with running_node(d) as ep:
        hdr = {"Authorization": f"Bearer {ep['token']}"}

        def stats() -> dict[str, object]:
            return dict(requests.get(f"{ep['api']}/v1/stats", headers=hdr, timeout=10).json())

        us = time.time_ns() // 1000
        p = Producer({"bootstrap.servers": ep["broker"], "linger.ms": 1, "log_level": 3})
        for i in range(n):
            p.produce("fraudnet.tx-in", json.dumps({
                "tx_id": f"trim-{i}", "timestamp": us / 1e6 + i / 1000, "card": f"card-{i % 7}",
                "terminal_id": f"T{i % 3}", "amount": "12.50"}).encode())  # fmt: skip
        assert p.flush(10) == 0
        wait_for(lambda: stats()["decided"] == n, 60, "every transaction decided")

        def trimmed() -> dict[str, dict[str, int]]:
            t = stats()["broker_trim"]
            assert isinstance(t, dict)
            below: dict[str, dict[str, int]] = t["trimmed_below"]
            done_in = sum(below.get("fraudnet.tx-in", {}).values()) == n
            return below if done_in and "fraudnet.tx-batch" in below else {}

        below = wait_for(trimmed, 60, "tx-in and tx-batch trimmed below the commits")
        c = Consumer({"bootstrap.servers": ep["broker"], "group.id": "probe", "log_level": 3})
        try:
            for part, offset in below["fraudnet.tx-in"].items():
                lo, _ = c.get_watermark_offsets(TopicPartition("fraudnet.tx-in", int(part)), 10)
                assert lo == offset
            lo, hi = c.get_watermark_offsets(TopicPartition("fraudnet.tx-batch", 0), 10)
            assert 0 < lo == below["fraudnet.tx-batch"]["0"] <= hi
            md = c.list_topics("fraudnet.decisions", timeout=10).topics["fraudnet.decisions"]
            for part in md.partitions:
                lo, _ = c.get_watermark_offsets(TopicPartition("fraudnet.decisions", part), 10)
                assert lo == 0  # output topics are not trimmed
        finally:
            c.close()
        assert stats()["decided"] == n and stats()["dead_lettered"] == 0


def test_trimming_can_be_switched_off(tmp_path: Path) -> None:
    import requests

    d = tmp_path / "n1"
    run_cli("node", "init", str(d), "--member", "bank-a")
    toml = (d / "node.toml").read_text()
    (d / "node.toml").write_text(toml.replace("trim_consumed = true", "trim_consumed = false"))
    with running_node(d) as ep:
        r = requests.get(f"{ep['api']}/v1/stats", timeout=10,
                         headers={"Authorization": f"Bearer {ep['token']}"})  # fmt: skip
        assert r.json()["broker_trim"] is None
