"""The ingest adapter: one transaction per Kafka message in, batches out.

Members' systems send one transaction per message to ``<prefix>.tx-in``.
Faust would pay ~250 µs per message for those, so this service reads the
topic with a plain confluent-kafka consumer, validates and pseudonymises
each record, and re-publishes them as one internal ``tx-batch`` message per
card shard. The consumer runs in its own thread (``consume(num_messages=...)``):
librdkafka's fetcher works without the GIL, so fetch round trips do not wait
for the busy event loop. That matters on the embedded broker, which returns
one producer message set per partition per fetch: with aiokafka on the loop,
a loaded node fetched fewer message sets per second than a low-rate
producer (linger 1 ms) creates, and fell behind at 1,000 tx/s (ADR 0500).
Lists of messages are handed to the loop through a bounded queue; offset
commits are handed back to the thread (the consumer is only touched there).

Offsets are committed only after every transaction up to them has been
decided (or dead-lettered), in order. Backpressure: at most
``max_inflight_batches`` internal batches are undecided at any time; while
that bound is reached this service stops fetching, so the lag between the
internal topic's produced and consumed offsets stays bounded (the
embedded broker silently drops the oldest records of a partition beyond
~5 MiB, so this bound is what keeps anything from being lost).
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from typing import Any

import msgpack
from confluent_kafka import Consumer, KafkaException, TopicPartition
from mode import Service

from fraudnet.core.pipeline import DeadLetter
from fraudnet.core.records import TxRecord

from ..runtime import NodeRuntime

__all__ = ["IngestService", "decode_value"]

log = logging.getLogger("fraudnet.ingest")
MAX_VALUE_BYTES = 64 * 1024
#: at most one offset commit per this interval while fetches keep coming
COMMIT_EVERY_S = 0.2
#: fetched message lists the consumer thread may hold before the loop takes them
FETCH_AHEAD = 2


def decode_value(value: bytes | None, fmt: str) -> Any:
    """Decode one ingest message value; raises ValueError with a clear reason."""
    if value is None:
        raise ValueError("empty message value")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueError(f"message of {len(value)} bytes exceeds {MAX_VALUE_BYTES}")
    if fmt == "json":
        try:
            return json.loads(value)
        except (ValueError, RecursionError) as e:  # also: >4300-digit numbers, deep nesting
            why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:120]
            raise ValueError(f"not valid JSON ({why})") from None
    try:
        return msgpack.unpackb(
            value, raw=False, max_str_len=4096, max_bin_len=4096, max_array_len=256,
            max_map_len=256,
        )  # fmt: skip
    except Exception as e:
        raise ValueError(f"not valid msgpack ({e})") from None


class IngestService(Service):
    def __init__(
        self,
        runtime: NodeRuntime,
        *,
        bootstrap: str,
        topic: str,
        group_id: str,
        fmt: str,
        batch_max: int,
        linger_ms: float = 2.0,
        fetch_max_wait_ms: int = 5,
        **kw: Any,
    ) -> None:
        self.runtime = runtime
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.fmt = fmt
        self.batch_max = batch_max
        self.linger_ms = linger_ms
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._consumer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fetched: asyncio.Queue[list[Any]] | None = None
        self._thread: threading.Thread | None = None
        self._stop_thread = threading.Event()
        #: lists fetched but not yet taken by the loop (bounds memory and lag)
        self._room = threading.Semaphore(FETCH_AHEAD)
        self._commits: queue.SimpleQueue[dict[int, int]] = queue.SimpleQueue()
        self._commit_chain: asyncio.Future[None] | None = None
        self._chain_seq = 0
        self._acked: dict[int, int] = {}
        self._last_commit = 0.0
        self._paused = False
        self.consumed = 0
        super().__init__(**kw)

    async def on_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._fetched = asyncio.Queue()
        try:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": self.group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": self.fetch_max_wait_ms,
                    "max.partition.fetch.bytes": 4 * 1024 * 1024,
                    "log_level": 3,
                }
            )
            self._consumer.subscribe([self.topic])
        except KafkaException as e:
            from fraudnet.errors import UnavailableError

            raise UnavailableError(f"ingest consumer for {self.topic}: {e}") from None
        self._thread = threading.Thread(target=self._fetch_loop, name="ingest-fetch", daemon=True)
        self._thread.start()
        self.add_future(self._run())

    def _fetch_loop(self) -> None:
        """Consumer thread: fetch lists of messages, apply commits; never raises."""
        c, loop, fetched = self._consumer, self._loop, self._fetched
        assert c is not None and loop is not None and fetched is not None
        while not self._stop_thread.is_set():
            self._apply_commits(c)
            if not self._room.acquire(timeout=0.1):
                continue  # the loop has FETCH_AHEAD lists it has not taken yet
            try:
                # Wait for the first message only, then take what is already queued:
                # consume(n, timeout) waits until n messages *or* the timeout, which
                # held every list for up to 50 ms below the batch size (the loop
                # lingers for the batch instead, bounded by linger_ms).
                msgs = c.consume(num_messages=1, timeout=0.05)
                if msgs:
                    msgs += c.consume(num_messages=self.batch_max - 1, timeout=0)
            except Exception as e:  # a broker error must not kill the node
                log.warning("ingest: fetch failed: %r", e)
                msgs = []
            good = [m for m in msgs if m.error() is None]
            if len(good) < len(msgs):
                for m in msgs:
                    if m.error() is not None:
                        log.warning("ingest: consumer error: %s", m.error())
            if good:
                try:
                    loop.call_soon_threadsafe(fetched.put_nowait, good)
                except RuntimeError:  # the loop is closed: the node is stopping
                    break
            else:
                self._room.release()
        self._apply_commits(c)
        try:
            c.close()  # also commits nothing: auto-commit is off
        except Exception as e:
            log.warning("ingest: consumer close failed: %r", e)

    def _apply_commits(self, c: Any) -> None:
        while True:
            try:
                offsets = self._commits.get_nowait()
            except queue.Empty:
                return
            tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
            try:
                c.commit(offsets=tps, asynchronous=False)
            except Exception as e:  # re-delivery is safe: de-duplicated
                log.warning("ingest: offset commit failed (will be re-read): %r", e)

    async def _take(self, timeout: float) -> list[Any] | None:
        assert self._fetched is not None
        try:
            msgs = await asyncio.wait_for(self._fetched.get(), timeout)
        except TimeoutError:
            return None
        self._room.release()
        return msgs

    def pause(self) -> None:
        """Stop fetching new records (in-flight batches still complete)."""
        self._paused = True

    async def on_stop(self) -> None:
        if self._commit_chain is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._commit_chain), 10.0)
            except (TimeoutError, asyncio.CancelledError, Exception) as e:
                log.warning("ingest: final commit did not complete: %r", e)
        self._stop_thread.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)

    async def _run(self) -> None:
        core = self.runtime.core
        loop = asyncio.get_running_loop()
        while not self.should_stop and not self._paused:
            await self.runtime.wait_capacity()
            first = await self._take(0.1)
            if first is None:
                continue
            msgs = first
            # Linger: top the batch up for at most linger_ms after its first record.
            deadline = loop.time() + self.linger_ms / 1000
            while len(msgs) < self.batch_max and (left := deadline - loop.time()) > 0:
                more = await self._take(left)
                if more is None:
                    break
                msgs = msgs + more
            records: list[TxRecord] = []
            arrivals: list[int] = []
            dead: list[DeadLetter] = []
            offsets: dict[int, int] = {}
            now = self.runtime.clock()
            t0 = time.perf_counter()
            for m in msgs:
                part, off, value = m.partition(), m.offset(), m.value()
                where = f"partition {part} offset {off}"
                try:
                    obj = decode_value(value, self.fmt)
                except ValueError as e:
                    from fraudnet.errors import TransactionError

                    core.count_received_undecodable()
                    dead.append(
                        core.dead_letter(
                            TransactionError(str(e), source=self.topic, location=where),
                            payload=repr((value or b"")[:512]),
                            now_us=now,
                        )
                    )
                else:
                    adm = core.admit_one(
                        obj, source=self.topic, location=where, now_us=now,
                        payload=(value or b"")[:2048].decode("utf-8", "replace"),
                    )  # fmt: skip
                    if isinstance(adm, DeadLetter):
                        dead.append(adm)
                    else:
                        records.append(adm)
                        arrivals.append(now)
                offsets[part] = off + 1
            self.runtime.admit_seconds += time.perf_counter() - t0
            self.consumed += len(msgs)
            self.runtime.metrics.received.labels(path="kafka").inc(len(records) + len(dead))
            await self.runtime.publish_dead_letters(dead)
            task = asyncio.ensure_future(self.runtime.publish_batch(records, arrivals, wait=True))
            self._chain_commit(task, offsets)

    def _chain_commit(self, task: asyncio.Future[Any], offsets: dict[int, int]) -> None:
        """Commit ``offsets`` once ``task`` and every earlier fetch's task are decided.

        Commits are coalesced: a link that already has a successor skips its own
        commit unless ``COMMIT_EVERY_S`` has passed since the last one, because the
        successor commits the merged offsets of every completed link (one Kafka
        request per interval instead of one per fetch). The newest link always
        commits, so the final position is committed once traffic stops.
        """
        prev = self._commit_chain
        self._chain_seq += 1
        seq = self._chain_seq
        loop = asyncio.get_running_loop()

        async def commit_in_order() -> None:
            if prev is not None:
                await prev
            await task
            self._acked.update(offsets)  # links complete in order: offsets only grow
            if seq != self._chain_seq and loop.time() - self._last_commit < COMMIT_EVERY_S:
                return
            self._last_commit = loop.time()
            self._commits.put(dict(self._acked))  # applied by the consumer thread

        self._commit_chain = asyncio.ensure_future(commit_in_order())
