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
