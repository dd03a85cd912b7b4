"""Delete what the node's consumers have committed from the embedded broker.

The embedded broker (librdkafka's mock cluster) keeps every partition's log
up to ~5 MiB and, on every fetch, walks that log from its oldest message set
to find where the fetch starts. A log kept at its cap -- thousands of small
sets from a member's one-transaction-per-message producer -- made each hop
slower the longer the node ran (ADR 0506). Kafka's answer for a topic that
is only a hand-off is to delete records once consumed; this does that, for
the node's transaction hand-off topics only (``tx-in`` read by the ingest
group, ``tx-batch`` read by the Faust group): every
``interval_s`` it asks the broker for each group's committed offsets and
deletes the records below them.

Safe by construction: a committed offset is where that group resumes after
any restart or rebalance, so nothing below it is read again by the node; the
embedded broker keeps data in memory only, so a node restart starts from an
empty broker anyway. Topics others read (decisions, dead letters, tx-api,
labels) are left to the broker's own cap, as before.

:class:`TrimPlan` is the pure part (which deletions are due);
:class:`ConsumedTrimmer` is the thread that asks and deletes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mode import Service

__all__ = ["ConsumedTrimmer", "TrimPlan"]

log = logging.getLogger("fraudnet.broker.trim")

#: seconds between passes: Faust commits every second, the ingest worker every 0.2 s
TRIM_INTERVAL_S = 0.25

TopicPartitionKey = tuple[str, int]


class TrimPlan:
    """Which (topic, partition) to delete below which offset (sans-IO).

    Rules: (1) a deletion is due only where the committed offset moved past the
    offset already trimmed to; (2) a group without a committed offset (negative:
    librdkafka's ``OFFSET_INVALID``) deletes nothing; (3) :meth:`done` records a
    deletion, and only a recorded one counts.
    """

    def __init__(self) -> None:
        self.trimmed_to: dict[TopicPartitionKey, int] = {}

    def due(self, committed: Mapping[TopicPartitionKey, int]) -> list[tuple[str, int, int]]:
        out = []
        for (topic, part), offset in sorted(committed.items()):
            if offset > self.trimmed_to.get((topic, part), 0):
                out.append((topic, part, offset))
        return out

    def done(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        self.trimmed_to[key] = max(offset, self.trimmed_to.get(key, 0))

    def snapshot(self) -> dict[str, dict[str, int]]:
        """{topic: {partition: offset trimmed to}} (for /v1/stats)."""
        out: dict[str, dict[str, int]] = {}
        for (topic, part), offset in sorted(self.trimmed_to.items()):
            out.setdefault(topic, {})[str(part)] = offset
        return out


class ConsumedTrimmer(Service):
    """Every ``interval_s``: committed offsets of ``groups`` -> ``delete(topic, part, below)``.

    ``groups`` maps a consumer group id to the topics it reads. ``delete`` returns
    False when there was nothing to delete (topic not created yet, offset past the
    end). Errors are counted and logged once per kind; the trimmer never stops the
    node -- without it the broker only runs slower, as before.
    """

    def __init__(
        self,
        bootstrap: str,
        groups: Mapping[str, Sequence[str]],
        delete: Callable[[str, int, int], bool],
        *,
        interval_s: float = TRIM_INTERVAL_S,
        **kw: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.groups = {g: list(ts) for g, ts in groups.items()}
        self.delete = delete
        self.interval_s = interval_s
        self.plan = TrimPlan()
        self.passes = 0
        self.errors = 0
        self._logged: set[str] = set()
        self._consumers: dict[str, Any] = {}
        self._partitions: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__(**kw)

    # -- one pass (the thread's body; tests call it directly) -----------------------
    def trim_once(self, timeout: float = 2.0) -> int:
        """Ask for the committed offsets and delete below them; returns the deletions made."""
        from confluent_kafka import TopicPartition

        made = 0
        for group, topics in self.groups.items():
            try:
                consumer = self._consumer(group)
                tps = [TopicPartition(t, p) for t in topics for p in self._parts(consumer, t)]
                if not tps:
                    continue
                got = consumer.committed(tps, timeout=timeout)
            except Exception as e:  # the broker is busy or stopping: next pass
                self._error(f"committed offsets of {group}", e)
                continue
            committed = {(tp.topic, tp.partition): tp.offset for tp in got if tp.error is None}
            for topic, part, below in self.plan.due(committed):
                try:
                    if self.delete(topic, part, below):
                        made += 1
                    self.plan.done(topic, part, below)
                except Exception as e:
                    self._error(f"delete {topic}[{part}]", e, f"below {below}")
        self.passes += 1
        return made

    def stats(self) -> dict[str, Any]:
        return {"passes": self.passes, "errors": self.errors,
                "trimmed_below": self.plan.snapshot()}  # fmt: skip

    def _consumer(self, group: str) -> Any:
        c = self._consumers.get(group)
        if c is None:
            from confluent_kafka import Consumer

            # never subscribes: it only reads the group's committed offsets (OffsetFetch)
            c = self._consumers[group] = Consumer({
                "bootstrap.servers": self.bootstrap, "group.id": group,
                "enable.auto.commit": False, "log_level": 3,
            })  # fmt: skip
        return c

    def _parts(self, consumer: Any, topic: str) -> list[int]:
        parts = self._partitions.get(topic)
        if not parts:
            md = consumer.list_topics(topic=topic, timeout=2.0).topics.get(topic)
            parts = sorted(md.partitions) if md is not None and md.error is None else []
            if parts:
                self._partitions[topic] = parts
        return parts

    def _error(self, what: str, e: BaseException, detail: str = "") -> None:
        self.errors += 1
        # once per kind (a fixed set: groups, topic-partitions): a stopping broker fails
        # every pass, and a kind that named the offset would grow this set without bound
        if what not in self._logged:
            self._logged.add(what)
            log.warning("embedded broker trim: %s %s failed: %r", what, detail, e)

    # -- the thread -------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):  # paced, not a synchronisation
            try:
                self.trim_once()
            except Exception as e:  # never raises out of the thread
                self._error("pass", e)

    async def on_start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="broker-trim", daemon=True)
        self._thread.start()

    async def on_stop(self) -> None:
        await asyncio.to_thread(self.close)  # joins a pass that may wait on the broker

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        for c in self._consumers.values():
            try:
                c.close()
            except Exception as e:
                log.debug("trim consumer close: %r", e)
        self._consumers = {}
