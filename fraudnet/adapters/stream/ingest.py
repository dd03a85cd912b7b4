"""The ingest adapter: one transaction per Kafka message in, batches out.

Members' systems send one transaction per message to ``<prefix>.tx-in``.
Faust would pay ~250 µs per message for those, so this service reads the
topic with a plain aiokafka consumer (``getmany``: tens of thousands of
messages/s), validates and pseudonymises each record, and re-publishes them
as one internal ``tx-batch`` message per card shard. ``getmany`` returns as
soon as records are available, so batches grow with load and add no fixed
delay when traffic is light.

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
from typing import Any

import msgpack
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from fraudnet.core.pipeline import DeadLetter
from fraudnet.core.records import TxRecord

from ..runtime import NodeRuntime

__all__ = ["IngestService", "decode_value"]

log = logging.getLogger("fraudnet.ingest")
MAX_VALUE_BYTES = 64 * 1024
#: at most one offset commit per this interval while fetches keep coming
COMMIT_EVERY_S = 0.2


def decode_value(value: bytes | None, fmt: str) -> Any:
    """Decode one ingest message value; raises ValueError with a clear reason."""
    if value is None:
        raise ValueError("empty message value")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueError(f"message of {len(value)} bytes exceeds {MAX_VALUE_BYTES}")
    if fmt == "json":
        try:
            return json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"not valid JSON ({e})") from None
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
        self._consumer: AIOKafkaConsumer | None = None
        self._commit_chain: asyncio.Future[None] | None = None
        self._chain_seq = 0
        self._acked: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self._paused = False
        self.consumed = 0
        super().__init__(**kw)

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self._consumer.start()
        self.add_future(self._run())

    def pause(self) -> None:
        """Stop fetching new records (in-flight batches still complete)."""
        self._paused = True

    async def on_stop(self) -> None:
        if self._commit_chain is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._commit_chain), 10.0)
            except (TimeoutError, asyncio.CancelledError, Exception) as e:  # noqa: BLE001
                log.warning("ingest: final commit did not complete: %r", e)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        core = self.runtime.core
        loop = asyncio.get_running_loop()
        while not self.should_stop and not self._paused:
            await self.runtime.wait_capacity()
            try:
                data = await consumer.getmany(timeout_ms=100, max_records=self.batch_max)
                if data:
                    # Linger: top the batch up for at most linger_ms after its first record.
                    deadline = loop.time() + self.linger_ms / 1000
                    n = sum(len(v) for v in data.values())
                    while n < self.batch_max and (left := deadline - loop.time()) > 0:
                        more = await consumer.getmany(
                            timeout_ms=max(1, int(left * 1000)), max_records=self.batch_max - n
                        )
                        if not more:
                            break
                        for tp, msgs in more.items():
                            data.setdefault(tp, []).extend(msgs)
                            n += len(msgs)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001  a broker error must not kill the node
                log.warning("ingest: fetch failed: %r", e)
                await self.sleep(0.5)
                continue
            if not data:
                continue
            records: list[TxRecord] = []
            arrivals: list[int] = []
            dead: list[DeadLetter] = []
            offsets: dict[TopicPartition, int] = {}
            now = self.runtime.clock()
            for tp, msgs in data.items():
                for m in msgs:
                    where = f"partition {tp.partition} offset {m.offset}"
                    try:
                        obj = decode_value(m.value, self.fmt)
                    except ValueError as e:
                        from fraudnet.errors import TransactionError

                        core.count_received_undecodable()
                        dead.append(
                            core.dead_letter(
                                TransactionError(str(e), source=self.topic, location=where),
                                payload=repr((m.value or b"")[:512]),
                                now_us=now,
                            )
                        )
                        continue
                    adm = core.admit_one(
                        obj, source=self.topic, location=where, now_us=now,
                        payload=(m.value or b"")[:2048].decode("utf-8", "replace"),
                    )  # fmt: skip
                    if isinstance(adm, DeadLetter):
                        dead.append(adm)
                    else:
                        records.append(adm)
                        arrivals.append(now)
                offsets[tp] = msgs[-1].offset + 1
            self.consumed += sum(len(v) for v in data.values())
            self.runtime.metrics.received.labels(path="kafka").inc(
                len(records) + len(dead)
            )
            await self.runtime.publish_dead_letters(dead)
            task = asyncio.ensure_future(self.runtime.publish_batch(records, arrivals, wait=True))
            self._chain_commit(task, offsets)

    def _chain_commit(self, task: asyncio.Future[Any], offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` once ``task`` and every earlier fetch's task are decided.

        Commits are coalesced: a link that already has a successor skips its own
        commit unless ``COMMIT_EVERY_S`` has passed since the last one, because the
        successor commits the merged offsets of every completed link (one Kafka
        request per interval instead of one per fetch). The newest link always
        commits, so the final position is committed once traffic stops.
        """
        prev = self._commit_chain
        consumer = self._consumer
        assert consumer is not None
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
            try:
                await consumer.commit(dict(self._acked))
            except Exception as e:  # noqa: BLE001  re-delivery is safe: de-duplicated
                log.warning("ingest: offset commit failed (will be re-read): %r", e)

        self._commit_chain = asyncio.ensure_future(commit_in_order())
