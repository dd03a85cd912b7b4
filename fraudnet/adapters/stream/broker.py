"""The embedded broker: librdkafka's mock cluster, in this process.

librdkafka's mock cluster is a real Kafka-protocol broker on 127.0.0.1. It
is started through librdkafka's mock C API (``mock_cluster.py``), which also
lets the node delete records its consumers have committed
(``broker_trim.py``, ADR 0506); where that API cannot be loaded it falls
back to ``confluent_kafka.Producer({'test.mock.num.brokers': 1})``, the same
broker without deletion. It keeps data in memory only and drops the oldest
records of a partition beyond about 5 MiB, so every producer into it must be
bounded by the consumer's progress (see ``ingest.py``). Topics are
auto-created with 4 partitions; CreateTopics fails against it, hence
Faust's ``topic_allow_declare=False``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaException, Producer

from fraudnet.errors import UnavailableError

from .mock_cluster import MockCluster, MockClusterUnavailable

log = logging.getLogger("fraudnet.broker")

__all__ = ["EmbeddedBroker"]


class EmbeddedBroker:
    """Start with :meth:`start`; :attr:`bootstrap` is ``host:port``."""

    def __init__(self, *, use_c_api: bool = True) -> None:
        self._handle: Producer | None = None
        self._cluster: MockCluster | None = None
        self._use_c_api = use_c_api
        self.bootstrap = ""

    @property
    def can_delete(self) -> bool:
        """Whether :meth:`delete_records` works (the mock C API was loaded)."""
        return self._cluster is not None

    def start(self, timeout: float = 10.0) -> str:
        cluster = None
        if self._use_c_api:
            try:
                cluster = MockCluster()
            except MockClusterUnavailable as e:
                log.info("embedded broker without record deletion (mock C API: %s)", e)
        conf = ({"bootstrap.servers": cluster.bootstrap} if cluster is not None
                else {"test.mock.num.brokers": 1})  # fmt: skip
        try:
            handle = Producer({**conf, "log_level": 3})
            md = handle.list_topics(timeout=timeout)
            brokers = sorted(f"{b.host}:{b.port}" for b in md.brokers.values())
            if not brokers:
                raise KafkaException("no broker address reported")
        except KafkaException as e:
            if cluster is not None:
                cluster.close()
            raise UnavailableError(f"embedded broker did not start: {e}") from None
        self._handle = handle
        self._cluster = cluster
        self.bootstrap = brokers[0]
        return self.bootstrap

    def delete_records(self, topic: str, partition: int, before: int) -> bool:
        """Delete ``topic`` [``partition``] records below offset ``before`` (see
        ``mock_cluster.py``); False if there was nothing to delete or deletion is
        unavailable."""
        cluster = self._cluster
        return cluster.delete_records(topic, partition, before) if cluster is not None else False

    def create_topics(self, names: Iterable[str], timeout: float = 10.0) -> None:
        """Create ``names`` now (a producer's metadata request auto-creates a topic).

        Otherwise the first producer into ``tx-in`` creates it, and the ingest
        consumer, subscribed to a topic that did not exist, only sees it at its next
        metadata refresh and group rebalance: the first records waited ~4.6 s.
        """
        if self._handle is None:
            raise RuntimeError("EmbeddedBroker.create_topics before start()")
        for name in names:
            try:
                self._handle.list_topics(topic=name, timeout=timeout)
            except KafkaException as e:
                msg = f"embedded broker: cannot create topic {name}: {e}"
                raise UnavailableError(msg) from None

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.flush(1.0)
            self._handle = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
