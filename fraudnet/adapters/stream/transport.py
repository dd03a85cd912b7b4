"""Faust's aiokafka transport with the fetch stall removed.

Faust 0.15 hard-codes ``fetch_max_wait_ms=1500`` for worker consumers, and
every worker also subscribes to its idle ``<app>-__assignor-__leader``
topic. An empty fetch of that topic then holds the data partitions for
1.5 s (measured: throughput halves; see docs/adr/0001). This transport
builds the same consumer and only lowers that wait to the configured
value. Re-check it when upgrading Faust or aiokafka: it sets a private
attribute of ``AIOKafkaConsumer`` before the consumer starts.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as fa

__all__ = ["FastTransport"]


class _Thread(fa.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = int(getattr(self.app, "fraudnet_fetch_max_wait_ms", 10))
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # aiokafka changed: fail loudly
            raise RuntimeError("aiokafka consumer has no _fetch_max_wait_ms; update transport.py")
        consumer._fetch_max_wait_ms = wait
        return consumer


class _Consumer(fa.Consumer):
    def _new_consumer_thread(self) -> _Thread:
        return _Thread(self, loop=self.loop, beacon=self.beacon)


class FastTransport(fa.Transport):
    Consumer = _Consumer
