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

from collections.abc import Awaitable, Callable
from typing import Any

from faust.transport.drivers import aiokafka as fa

__all__ = ["IDLE_AFTER_EMPTY_FETCHES", "FastTransport", "FetchWait"]

#: the fetch wait of an app without a FetchWait (the benchmark's floor agent)
DEFAULT_FETCH_WAIT_MS = 10
#: empty fetches in a row after which the consumer counts as idle (about 50 ms at 1 ms)
IDLE_AFTER_EMPTY_FETCHES = 50


class FetchWait:
    """The wait of the consumer's next fetch (sans-IO).

    ``busy_ms`` while fetches bring data; after ``idle_after`` empty fetches in a row,
    ``idle_ms`` until a fetch brings data again. On the embedded broker an empty fetch
    is held for the whole wait (new data does not end it), so the busy wait is short
    (1 ms) and an idle consumer polls 1,000 times a second; backing off when idle gives
    that CPU (and the GIL) back to the event loop, at the cost of up to ``idle_ms`` for
    the first message after a quiet spell (ADR 0505).
    """

    __slots__ = ("busy_ms", "empty", "idle_after", "idle_ms", "wait_ms")

    def __init__(self, busy_ms: int, idle_ms: int, idle_after: int = IDLE_AFTER_EMPTY_FETCHES):
        self.busy_ms = busy_ms
        self.idle_ms = max(idle_ms, busy_ms)
        self.idle_after = idle_after
        self.empty = 0
        self.wait_ms = busy_ms

    def after_fetch(self, got_data: bool) -> int:
        """Record one completed fetch; returns the wait for the next one."""
        if got_data:
            self.empty = 0
            self.wait_ms = self.busy_ms
        else:
            self.empty += 1
            if self.empty >= self.idle_after:
                self.wait_ms = self.idle_ms
        return self.wait_ms


class _Thread(fa.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        policy = getattr(self.app, "fraudnet_fetch_wait", None)  # NodeApp: from [broker]
        wait = policy.busy_ms if policy is not None else DEFAULT_FETCH_WAIT_MS
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # aiokafka changed: fail loudly
            raise RuntimeError("aiokafka consumer has no _fetch_max_wait_ms; update transport.py")
        consumer._fetch_max_wait_ms = wait
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        policy = getattr(self.app, "fraudnet_fetch_wait", None)
        consumer = self._consumer
        if policy is not None and policy.idle_ms > policy.busy_ms and consumer is not None:
            adapt_fetch_wait(consumer._fetcher, policy)


def adapt_fetch_wait(fetcher: Any, policy: FetchWait) -> None:
    """Let ``policy`` set the wait of each fetch of an aiokafka ``Fetcher``: its fetch
    task reads ``_fetch_max_wait_ms`` when it builds a request, and each request's
    ``_proc_fetch_request`` returns whether it brought data (or an error)."""
    if not hasattr(fetcher, "_fetch_max_wait_ms") or not hasattr(fetcher, "_proc_fetch_request"):
        raise RuntimeError("aiokafka Fetcher changed; update transport.py")
    proc: Callable[..., Awaitable[bool]] = fetcher._proc_fetch_request

    async def proc_fetch_request(*args: Any, **kwargs: Any) -> bool:
        got = await proc(*args, **kwargs)
        fetcher._fetch_max_wait_ms = policy.after_fetch(bool(got))
        return got

    fetcher._proc_fetch_request = proc_fetch_request


class _Consumer(fa.Consumer):
    def _new_consumer_thread(self) -> _Thread:
        return _Thread(self, loop=self.loop, beacon=self.beacon)


class FastTransport(fa.Transport):
    Consumer = _Consumer
