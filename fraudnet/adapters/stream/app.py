"""The Faust app factory (no module-level app).

Topics (``<prefix>`` is ``[broker] topic_prefix``):

==========================  ==================================================
``<prefix>.tx-in``          external ingest: one transaction per message (JSON or msgpack)
``<prefix>.tx-batch``       internal: many pseudonymised transactions per message
``<prefix>.decisions``      one message per batch: msgpack array of decisions
``<prefix>.tx-api``         transactions decided through ``POST /v1/decide`` (batched)
``<prefix>.labels``         label events (fraud, chargeback, false positive)
``<prefix>.dead-letters``   invalid records with the reason (JSON, card numbers masked)
==========================  ==================================================

The agent on ``tx-batch`` makes one scoring call per message, so Faust's
~250 µs per-message cost is paid per batch, not per transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust

from fraudnet.config import Settings

from ..memtrace import heap_trimmer
from ..runtime import NodeRuntime
from .dedup_filter import generation_for
from .snapshots import FeatureSnapshots
from .transport import FastTransport, FetchWait

__all__ = ["NodeApp", "TopicNames", "create_app"]

log = logging.getLogger("fraudnet.stream")

#: seconds between checkpoints of the de-dup store's WAL (storage/dedup.py)
DEDUP_CHECKPOINT_S = 1.0


@dataclass(frozen=True, slots=True)
class TopicNames:
    tx_in: str
    tx_batch: str
    decisions: str
    tx_api: str
    labels: str
    dead_letters: str

    @classmethod
    def for_prefix(cls, prefix: str) -> TopicNames:
        return cls(
            tx_in=f"{prefix}.tx-in",
            tx_batch=f"{prefix}.tx-batch",
            decisions=f"{prefix}.decisions",
            tx_api=f"{prefix}.tx-api",
            labels=f"{prefix}.labels",
            dead_letters=f"{prefix}.dead-letters",
        )


class NodeApp(faust.App):
    """faust.App with the fetch-stall-free transport (see transport.py)."""

    fraudnet_topics: TopicNames
    fraudnet_outputs: _FaustOutputs
    fraudnet_worker: Any

    #: the consumer's fetch wait, idle back-off included (transport.py)
    fraudnet_fetch_wait: FetchWait | None = None

    def _new_transport(self) -> Any:
        return FastTransport(self.conf.broker_consumer, self)


class _FaustOutputs:
    """:class:`~fraudnet.adapters.runtime.OutputTopics` over Faust topics."""

    def __init__(self, app: NodeApp, names: TopicNames, partitions: int) -> None:
        self.partitions = partitions
        self.tx_batch = app.topic(names.tx_batch, value_serializer="raw", key_serializer="raw")
        self.decisions = app.topic(names.decisions, value_serializer="raw", key_serializer="raw")
        self.tx_api = app.topic(names.tx_api, value_serializer="raw", key_serializer="raw")
        self.dead = app.topic(names.dead_letters, value_serializer="raw", key_serializer="raw")
        self.labels = app.topic(names.labels, value_serializer="raw", key_serializer="raw")

    async def send_tx_batch(self, value: bytes, partition: int) -> None:
        await self.tx_batch.send(value=value, partition=partition)

    async def send_decisions(self, value: bytes) -> None:
        await self.decisions.send(value=value)

    async def send_dead_letters(self, values: Sequence[bytes]) -> None:
        for v in values:
            await self.dead.send(value=v)

    async def send_api_tx(self, value: bytes) -> None:
        await self.tx_api.send(value=value)


def create_app(settings: Settings, bootstrap: str, runtime: NodeRuntime) -> NodeApp:
    """Build the node's Faust app against ``bootstrap`` (host:port[,host:port])."""
    names = TopicNames.for_prefix(settings.broker.topic_prefix)
    app = NodeApp(
        f"fraudnet-{settings.node.name}",
        broker=",".join(f"kafka://{b}" for b in bootstrap.split(",")),
        store="memory://",
        datadir=str(settings.node_dir / "state" / "faust"),
        # The embedded broker cannot create topics (its controller id is no
        # broker); it auto-creates them with 4 partitions. A real cluster can.
        topic_allow_declare=not settings.embedded_broker,
        topic_partitions=settings.broker.topic_partitions(),
        topic_replication_factor=1 if settings.embedded_broker else 3,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.0005,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        autodiscover=False,
        loghandlers=[],
    )
    # the consumer's fetch wait, idle back-off included (transport.py; /v1/stats shows it)
    app.fraudnet_fetch_wait = runtime.fetch_wait = FetchWait(
        settings.broker.fetch_wait_ms(), settings.broker.idle_fetch_wait_ms()
    )
    outputs = _FaustOutputs(app, names, settings.broker.topic_partitions())
    runtime.attach(outputs)

    @app.agent(outputs.tx_batch, name="decide")
    async def decide(stream: Any) -> None:
        async for value in stream:
            await runtime.on_tx_batch(value)

    # On a real cluster the shard snapshots also go to a changelog-backed table, and
    # a recovered table newer than the files rebuilds the state (state_table.py).
    table = None
    if not settings.embedded_broker:
        from .state_table import StateTable

        table = StateTable(app, settings.broker.topic_partitions())
    store = runtime.dedup.store
    snaps = FeatureSnapshots(
        runtime.core.scorer, settings.node_dir / "state" / "features",
        settings.broker.snapshot_shards(), store=store, table=table,
    )  # fmt: skip
    if table is not None:
        table.on_recovered = snaps.adopt
    restored = snaps.restore()
    if any(restored.values()):
        log.info("feature state restored: %s", restored)
    runtime.snapshots = snaps

    @app.timer(interval=snaps.interval_s / snaps.shards)  # type: ignore[untyped-decorator]
    async def snapshot_features() -> None:
        # one shard per tick: the pause on the loop is 1/shards of a full snapshot
        try:
            await snaps.snapshot_next()
        except Exception as e:
            log.error("feature snapshot failed: %r", e)

    retention_us = int(settings.dedup.retention_days * 86_400 * 1_000_000)
    # one filter per quarter of a retention shorter than a day: memory follows the window
    runtime.dedup.generation_us = generation_for(retention_us)

    @app.timer(interval=settings.dedup.prune_interval_s)  # type: ignore[untyped-decorator]
    async def prune_dedup() -> None:
        # rows in chunks in a thread (the store's lock is held per chunk), then the
        # filters holding only pruned ids are dropped here, on the loop that owns them
        cutoff = runtime.clock() - retention_us
        dedup = runtime.dedup
        try:
            n = await asyncio.to_thread(dedup.store.prune, cutoff)
            dropped = dedup.drop_before(cutoff)
        except Exception as e:
            log.error("de-dup pruning failed: %r", e)
            return
        if n or dropped:
            log.info("de-dup: %d ids older than the retention deleted, %d filters dropped",
                     n, dropped)  # fmt: skip

    # the WAL is checkpointed here, in a worker thread, not inside the loop's commits
    store.defer_checkpoints()

    @app.timer(interval=DEDUP_CHECKPOINT_S)  # type: ignore[untyped-decorator]
    async def checkpoint_dedup() -> None:
        try:
            await asyncio.to_thread(store.checkpoint)
        except Exception as e:  # the WAL only grows until the next one succeeds
            log.error("de-dup WAL checkpoint failed: %r", e)

    trim = heap_trimmer() if settings.node.heap_trim_s > 0 else None
    if trim is not None:  # glibc: freed heap memory goes back to the kernel (memtrace.py)

        @app.timer(interval=settings.node.heap_trim_s)  # type: ignore[untyped-decorator]
        async def trim_heap() -> None:
            await asyncio.to_thread(trim, 0)

    @app.agent(outputs.labels, name="labels")
    async def labels(stream: Any) -> None:
        async for value in stream:
            runtime.on_label(value)

    app.fraudnet_topics = names
    app.fraudnet_outputs = outputs
    return app
