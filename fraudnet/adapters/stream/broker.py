"""The embedded broker: librdkafka's mock cluster, in this process.

``confluent_kafka.Producer({'test.mock.num.brokers': 1})`` starts a real
Kafka-protocol broker on 127.0.0.1 that lives as long as the producer
handle. It keeps data in memory only and drops the oldest records of a
partition beyond about 5 MiB, so every producer into it must be bounded by
the consumer's progress (see ``ingest.py``). Topics are auto-created with
4 partitions; CreateTopics fails against it, hence Faust's
``topic_allow_declare=False``.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaException, Producer

from fraudnet.errors import UnavailableError

__all__ = ["EmbeddedBroker"]


class EmbeddedBroker:
    """Start with :meth:`start`; :attr:`bootstrap` is ``host:port``."""

    def __init__(self) -> None:
        self._handle: Producer | None = None
        self.bootstrap = ""

    def start(self, timeout: float = 10.0) -> str:
        try:
            handle = Producer({"test.mock.num.brokers": 1, "log_level": 3})
            md = handle.list_topics(timeout=timeout)
        except KafkaException as e:
            raise UnavailableError(f"embedded broker did not start: {e}") from None
        brokers = sorted(f"{b.host}:{b.port}" for b in md.brokers.values())
        if not brokers:
            raise UnavailableError("embedded broker reported no broker address")
        self._handle = handle
        self.bootstrap = brokers[0]
        return self.bootstrap

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

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
