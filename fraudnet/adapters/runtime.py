"""NodeRuntime: the asyncio-side glue around :class:`~fraudnet.core.pipeline.NodeCore`.

It owns the de-duplication store, the output topics, metrics and the
waiters of HTTP callers. Everything here runs on the node's event-loop
thread, so the core is never entered concurrently: between de-duplication
and recording a decision there is no ``await``.

Two paths reach the same core and the same state:

* stream: ingest (Kafka ``tx-in`` or ``POST /v1/ingest``) -> one internal
  ``tx-batch`` message per batch -> the Faust agent calls
  :meth:`NodeRuntime.on_tx_batch` -> decisions -> one ``decisions`` message.
* sync: ``POST /v1/decide`` -> :meth:`NodeRuntime.decide_now` -> the core,
  directly (a broker round trip cannot meet an authorisation budget); the
  transaction and its decision are then published like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fraudnet.core.ids import key64
from fraudnet.core.pipeline import DeadLetter, NodeCore
from fraudnet.core.records import (
    Decision,
    TxRecord,
    decode_tx_batch,
    encode_decisions,
    encode_tx_batch,
)
from fraudnet.errors import InputError

from .metrics import NodeMetrics
from .storage.dedup import DedupStore
from .stream.dedup_filter import FilteredDedup

__all__ = [
    "EXTERNAL_BATCH_PREFIX", "BatchResult", "DecideResult", "NodeRuntime", "OutputTopics",
    "now_us",
]  # fmt: skip

#: POST /v1/decide groups that may wait for their audit commit at the same time
API_GROUPS = 2

#: batch ids of batches published by the ingest process (stream/ingest_proc.py): their
#: capacity is the child's to track; the runtime reports each one decided instead
EXTERNAL_BATCH_PREFIX = "x:"

log = logging.getLogger("fraudnet.node")

#: label kind -> label value (1 = fraud, 0 = retraction of a fraud label)
LABEL_VALUES = {"fraud": 1, "chargeback": 1, "false_positive": 0, "genuine": 0}

#: called with (decisions, path) right after scoring, in decision order, before anything
#: is acknowledged; e.g. the audit log's durable append. The call should start the work
#: (the audit log appends and starts its commit in the call) and return what to await;
#: an exception, raised or awaited, aborts the acknowledgement.
DecisionHook = Callable[[Sequence[Decision], str], Awaitable[Any]]


def now_us() -> int:
    return time.time_ns() // 1000


class OutputTopics(Protocol):
    """What the runtime needs from the stream layer (Faust topics in production)."""

    partitions: int

    async def send_tx_batch(self, value: bytes, partition: int) -> None: ...
    async def send_decisions(self, value: bytes) -> None: ...
    async def send_dead_letters(self, values: Sequence[bytes]) -> None: ...
    async def send_api_tx(self, value: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchResult:
    decided: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class DecideResult:
    decision: Decision | None
    dead_letter: DeadLetter | None = None
    duplicate_of: tuple[str, float, int] | None = None


class NodeRuntime:
    def __init__(
        self,
        core: NodeCore,
        dedup: DedupStore | FilteredDedup,
        metrics: NodeMetrics,
        *,
        max_inflight_batches: int = 32,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.core = core
        #: the SQLite store behind an exact in-memory filter (stream/dedup_filter.py)
        self.dedup = dedup if isinstance(dedup, FilteredDedup) else FilteredDedup(dedup)
        self.metrics = metrics
        self.clock = clock
        self.max_inflight_batches = max_inflight_batches
        self.decision_hooks: list[DecisionHook] = []
        #: called with (decisions, their records) once decisions are durable; must not
        #: block (e.g. the network bridge offers risk signals from them)
        self.decided_hooks: list[Callable[[Sequence[Decision], Sequence[TxRecord]], None]] = []
        self._topics: OutputTopics | None = None
        self._waiters: dict[str, asyncio.Future[BatchResult]] = {}
        self._inflight = 0
        self._capacity: asyncio.Condition | None = None
        self._api_decisions: list[Decision] = []
        self._api_txs: list[TxRecord] = []
        self._api_arrivals: list[int] = []
        self._api_flush: asyncio.Task[None] | None = None
        self._api_queue: list[tuple[TxRecord, int, asyncio.Future[DecideResult]]] = []
        self._api_scheduled = False
        self._api_tasks: set[asyncio.Future[None]] = set()
        self._notifies: set[asyncio.Future[None]] = set()
        self.batches_decided = 0
        #: seconds spent validating/pseudonymising (ingest) and deciding (core + scorer)
        self.admit_seconds = 0.0
        self.decide_seconds = 0.0
        self._pending: set[str] = set()
        self._tail: asyncio.Future[None] | None = None
        self._fatal = False
        #: periodic feature-state snapshots (stream/snapshots.py), written once more on drain
        self.snapshots: Any = None
        #: called (once per failure) when the node must stop: a durable write failed
        self.on_fatal: Callable[[BaseException], None] | None = None
        #: called with the id of each decided ``x:`` batch (the ingest process's), in order
        self.on_external_done: Callable[[str], None] | None = None

    # -- wiring ---------------------------------------------------------------
    def attach(self, topics: OutputTopics) -> None:
        self._topics = topics

    @property
    def topics(self) -> OutputTopics:
        if self._topics is None:
            raise RuntimeError("NodeRuntime used before attach()")
        return self._topics

    def _cond(self) -> asyncio.Condition:
        if self._capacity is None:
            self._capacity = asyncio.Condition()
        return self._capacity

    @property
    def inflight_batches(self) -> int:
        return self._inflight

    # -- ingest side ----------------------------------------------------------
    async def publish_batch(
        self, records: Sequence[TxRecord], arrivals: Sequence[int], *, wait: bool
    ) -> BatchResult | None:
        """Produce records as internal batches (one per card shard), bounded by capacity.

        With ``wait`` the call returns once every record has been decided (or found
        to be a duplicate); otherwise as soon as the batches are handed to the producer.
        """
        if not records:
            return BatchResult(0, 0) if wait else None
        parts = self.topics.partitions
        shards: dict[int, tuple[list[TxRecord], list[int]]] = {}
        for r, a in zip(records, arrivals, strict=True):
            recs, arrs = shards.setdefault(key64(r.card_ref) % parts, ([], []))
            recs.append(r)
            arrs.append(a)
        futures: list[asyncio.Future[BatchResult]] = []
        for part, (recs, arrs) in sorted(shards.items()):
            await self.wait_capacity()
            batch_id = ""
            if wait:
                batch_id = uuid.uuid4().hex
                fut: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
                self._waiters[batch_id] = fut
                futures.append(fut)
            self._inflight += 1
            self.metrics.inflight_batches.set(self._inflight)
            try:
                await self.topics.send_tx_batch(encode_tx_batch(recs, arrs, batch_id), part)
            except BaseException:
                self._release_one()
                if batch_id:
                    self._waiters.pop(batch_id, None)
                raise
        if not wait:
            return None
        results = await asyncio.gather(*futures)
        return BatchResult(
            decided=sum(r.decided for r in results), duplicates=sum(r.duplicates for r in results)
        )

    async def wait_capacity(self) -> None:
        cond = self._cond()
        async with cond:
            await cond.wait_for(lambda: self._inflight < self.max_inflight_batches)

    def _release_one(self) -> None:
        self._inflight = max(0, self._inflight - 1)
        self.metrics.inflight_batches.set(self._inflight)
        cond = self._cond()

        async def notify() -> None:
            async with cond:
                cond.notify_all()

        self._notifies.add(t := asyncio.ensure_future(notify()))
        t.add_done_callback(self._notifies.discard)

    async def publish_dead_letters(self, dls: Sequence[DeadLetter]) -> None:
        if not dls:
            return
        for d in dls:
            self.metrics.dead_letters.labels(field=d.field or "-").inc()
        await self.topics.send_dead_letters(
            [json.dumps(d.to_wire(), separators=(",", ":")).encode() for d in dls]
        )

    # -- stream decision path (the Faust agent) ----------------------------------
    async def on_tx_batch(self, value: bytes) -> None:
        """Decide one internal batch message. Never raises on bad data.

        Scoring happens here, in arrival order; making the decisions durable
        (audit log fsync, de-dup store) and acknowledging them (decisions
        topic, HTTP waiters, capacity) happens in :meth:`_complete`, chained
        in the same order, so the agent goes on to the next batch while the
        audit log's group commit batches many of them into one fsync.
        """
        now = self.clock()
        try:
            records, arrivals, batch_id = decode_tx_batch(value)
        except InputError as e:
            self.core.count_received_undecodable()
            dl = self.core.dead_letter(
                _as_tx_error(e, "tx-batch"), payload=repr(value[:200]), now_us=now
            )
            await self.publish_dead_letters([dl])
            self._release_one()
            return
        decisions, fresh, dups = self._decide_begin(records, arrivals, now, "stream")
        started = self._start_hooks(decisions, "stream")
        self.metrics.batch_size.observe(len(records))
        prev = self._tail
        self._tail = asyncio.ensure_future(
            self._complete(prev, decisions, fresh, dups, batch_id, "stream", started)
        )

    def _decide_begin(
        self, records: Sequence[TxRecord], arrivals: Sequence[int], now: int, path: str
    ) -> tuple[list[Decision], list[TxRecord], int]:
        """De-duplicate and decide (no await). Decided ids stay in ``_pending``
        until :meth:`_complete` has recorded them, so the API path and the
        stream path can never decide the same id twice concurrently."""
        ids = [r.tx_id for r in records]
        seen = self.dedup.seen_many(ids) | (self._pending.intersection(ids))
        fresh: list[TxRecord] = []
        fresh_arr: list[int] = []
        for r, a in zip(records, arrivals, strict=True):
            if r.tx_id in seen:
                continue
            seen.add(r.tx_id)  # a repeat inside the same batch is a duplicate too
            fresh.append(r)
            fresh_arr.append(a)
        dups = len(records) - len(fresh)
        if dups:
            self.core.note_duplicates(dups)
            self.metrics.duplicates.inc(dups)
        t0 = time.perf_counter()
        decisions = self.core.decide_many(fresh, fresh_arr, now)
        self.decide_seconds += time.perf_counter() - t0
        # journal the fold in this same loop step: a snapshot taken later covers it,
        # a crash before its audit fsync is settled at start (storage/journal.py)
        try:
            self.dedup.store.intend(decisions, fresh, path)
        except Exception as e:  # the journal is part of the durable record: fail-stop
            log.critical("cannot journal decided transactions; stopping the node: %r", e)
            if self.on_fatal is not None and not self._fatal:
                self._fatal = True
                self.on_fatal(e)
            raise
        self._pending.update(d.tx_id for d in decisions)
        return decisions, fresh, dups

    def _start_hooks(self, decisions: Sequence[Decision], path: str) -> list[Awaitable[Any]]:
        """Call the decision hooks now, in this loop step (so the audit log appends in
        decision order and its commit starts at once); a hook that raises gives an
        awaitable that raises, so the failure aborts the acknowledgement as before."""
        if not decisions:
            return []
        out: list[Awaitable[Any]] = []
        for hook in self.decision_hooks:
            try:
                out.append(hook(decisions, path))
            except Exception as e:
                failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                failed.set_exception(e)
                out.append(failed)
        return out

    async def _make_durable(
        self,
        decisions: Sequence[Decision],
        fresh: Sequence[TxRecord],
        path: str,
        started: Sequence[Awaitable[Any]],
    ) -> None:
        try:
            if decisions:
                for waiting in started:
                    await waiting
                self._record(decisions, fresh)
        finally:
            self._pending.difference_update(d.tx_id for d in decisions)
        # per batch, not per decision: a labelled child lookup costs more than the update
        outcomes = Counter(d.outcome for d in decisions)
        for outcome, n in outcomes.items():
            self.metrics.decisions.labels(outcome=outcome, path=path).inc(n)
        observe = self.metrics.latency.labels(path=path).observe
        for d in decisions:
            observe(d.latency_us / 1e6)
        for after in self.decided_hooks:
            try:
                after(decisions, fresh)
            except Exception:  # a bug in a consumer of decisions must not lose them
                log.exception("decided hook failed")

    async def _complete(
        self,
        prev: asyncio.Future[None] | None,
        decisions: list[Decision],
        fresh: list[TxRecord],
        dups: int,
        batch_id: str,
        path: str,
        started: Sequence[Awaitable[Any]],
    ) -> None:
        fut = self._waiters.pop(batch_id, None) if batch_id else None
        external = batch_id.startswith(EXTERNAL_BATCH_PREFIX)
        # This batch's audit records were appended when it was decided (_start_hooks),
        # in arrival order, and ride the group commit running then; it is recorded as
        # soon as they are durable, while earlier batches may still wait for theirs.
        # Awaiting the previous batch keeps acknowledgements in order. (Awaiting
        # ``prev`` before appending serialised one fsync per batch: ADR 0500.)
        durable = asyncio.ensure_future(self._make_durable(decisions, fresh, path, started))
        try:
            if prev is not None:
                await prev
            await durable
            if decisions:
                await self.topics.send_decisions(encode_decisions(decisions))
            self.batches_decided += 1
            if external and self.on_external_done is not None:
                self.on_external_done(batch_id)
        except Exception as e:
            # The audit log or the de-dup store failed: nothing of this batch was
            # acknowledged. Fail-stop rather than decide without a durable record.
            log.critical("cannot record decisions durably; stopping the node: %r", e)
            if fut is not None and not fut.done():
                fut.set_exception(e)
            if self.on_fatal is not None and not self._fatal:
                self._fatal = True
                self.on_fatal(e)
            return
        finally:
            if not external:
                self._release_one()
        if fut is not None and not fut.done():
            fut.set_result(BatchResult(decided=len(decisions), duplicates=dups))

    def _record(self, decisions: Sequence[Decision], records: Sequence[TxRecord]) -> None:
        self.dedup.add_many(
            (d.tx_id, d.outcome, d.score, d.decided_at_us, r.ts_us, r.card_ref, r.terminal_ref)
            for d, r in zip(decisions, records, strict=True)
        )

    # -- labels -------------------------------------------------------------------
    def on_label(self, value: bytes) -> None:
        """Apply one label event (JSON ``{tx_id, kind, event_time_us}``). Never raises.

        The transaction is looked up in the de-dup store (which keeps its event
        time and entity references); a scorer with ``apply_labels`` folds it into
        label-based features, which use it only once it is older than the label
        delay. ``fraud`` and ``chargeback`` mark fraud, ``false_positive`` and
        ``genuine`` retract it.
        """
        try:
            obj = json.loads(value)
            kind = str(obj["kind"])
            tx_id = str(obj["tx_id"])
        except (ValueError, KeyError, TypeError):
            self.metrics.labels.labels(kind="invalid").inc()
            return
        entity = self.dedup.lookup_entity(tx_id)
        if entity is None or kind not in LABEL_VALUES:
            self.metrics.labels.labels(kind="unknown_tx" if entity is None else "invalid").inc()
            return
        ts_us, _card_ref, terminal_ref = entity
        apply = getattr(self.core.scorer, "apply_labels", None)
        if apply is not None:
            import numpy as np

            apply(
                np.array([key64(terminal_ref)], dtype=np.uint64),
                np.array([ts_us / 1e6], dtype=np.float64),
                np.array([LABEL_VALUES[kind]], dtype=np.int8),
            )
        self.metrics.labels.labels(kind=kind).inc()

    # -- synchronous decision path (POST /v1/decide) -----------------------------
    async def decide_now(
        self, raw: Mapping[str, Any], *, source: str, arrival: int
    ) -> DecideResult:
        """Validate and decide one transaction now (``POST /v1/decide``).

        Requests that arrive while the loop is busy are decided together: one
        de-dup query, one scorer call, one audit append and one de-dup insert per
        group (see :meth:`_decide_api_group`), each answer after its audit fsync.
        """
        now = self.clock()
        adm = self.core.admit_one(
            raw, source=source, location="body", now_us=now, payload=_dump(raw)
        )
        self.metrics.received.labels(path="api").inc()
        if isinstance(adm, DeadLetter):
            await self.publish_dead_letters([adm])
            return DecideResult(decision=None, dead_letter=adm)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[DecideResult] = loop.create_future()
        self._api_queue.append((adm, arrival, fut))
        if not self._api_scheduled:
            # runs on the next loop iteration: every request parsed before then joins
            self._api_scheduled = True
            loop.call_soon(self._decide_api_group)
        return await fut

    def _decide_api_group(self) -> None:
        """Decide every queued request as one group (a loop callback); at most
        ``API_GROUPS`` groups wait for their audit commit at a time.

        The group is decided here, in this loop step (one de-dup query, one scorer
        call, one journal entry, and the audit append, which starts its commit), and
        handed to a task that answers each request after the commit that covers it.
        With one group waiting, the next is decided and appended during that group's
        fsync and rides the very next commit; beyond ``API_GROUPS`` waiting groups,
        requests stay queued and form one larger group when a group completes (each
        group costs two SQLite transactions and a scorer call, so under load fewer,
        larger groups keep up where one group per loop iteration would not). Either
        this callback or the completion of a waiting group takes the queue: no request
        is left behind.
        """
        self._api_scheduled = False
        if len(self._api_tasks) >= API_GROUPS:
            return  # a completing group schedules the next collection
        items, self._api_queue = self._api_queue, []
        if not items:
            return
        recs = [it[0] for it in items]
        try:
            decisions, fresh, _dups = self._decide_begin(recs, [it[1] for it in items],
                                                         self.clock(), "api")  # fmt: skip
            started = self._start_hooks(decisions, "api")
        except BaseException as e:
            for _, _, f in items:  # each caller answers 500; nothing was acknowledged
                if not f.done():
                    f.set_exception(e)
            return
        t = asyncio.ensure_future(self._answer_api_items(items, decisions, fresh, started))
        self._api_tasks.add(t)
        t.add_done_callback(self._api_group_done)

    def _api_group_done(self, t: asyncio.Future[None]) -> None:
        self._api_tasks.discard(t)
        if self._api_queue and not self._api_scheduled:
            self._api_scheduled = True
            asyncio.get_running_loop().call_soon(self._decide_api_group)

    async def _answer_api_items(
        self,
        items: list[tuple[TxRecord, int, asyncio.Future[DecideResult]]],
        decisions: list[Decision],
        fresh: list[TxRecord],
        started: Sequence[Awaitable[Any]],
    ) -> None:
        try:
            await self._make_durable(decisions, fresh, "api", started)
        except BaseException as e:
            for _, _, f in items:  # each caller answers 500; nothing was acknowledged
                if not f.done():
                    f.set_exception(e)
            return
        by_id = {d.tx_id: d for d in decisions}
        for adm, arrival, f in items:
            d = by_id.pop(adm.tx_id, None)
            if d is None:  # decided before, or right now by the stream path / this group
                res = DecideResult(decision=None, duplicate_of=self.dedup.get(adm.tx_id))
            else:
                self._api_decisions.append(d)
                self._api_txs.append(adm)
                self._api_arrivals.append(arrival)
                res = DecideResult(decision=d)
            if not f.done():
                f.set_result(res)
        if self._api_decisions and (self._api_flush is None or self._api_flush.done()):
            self._api_flush = asyncio.ensure_future(self._flush_api_soon())

    async def _flush_api_soon(self, delay: float = 0.005) -> None:
        await asyncio.sleep(delay)  # coalescing window: many API decisions, one message
        await self.flush_api()

    async def flush_api(self) -> None:
        """Publish the API path's decisions (and transactions) until none are left.

        Decisions made while a send is in flight are picked up by the next
        round of this loop: no flush task is scheduled for them meanwhile.
        """
        while self._api_decisions:
            decisions, self._api_decisions = self._api_decisions, []
            txs, self._api_txs = self._api_txs, []
            arrivals, self._api_arrivals = self._api_arrivals, []
            await self.topics.send_decisions(encode_decisions(decisions))
            await self.topics.send_api_tx(encode_tx_batch(txs, arrivals))

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for in-flight batches, then flush API outputs."""
        deadline = asyncio.get_running_loop().time() + timeout
        cond = self._cond()
        with contextlib.suppress(TimeoutError):
            async with cond:
                await asyncio.wait_for(
                    cond.wait_for(lambda: self._inflight == 0),
                    max(0.0, deadline - asyncio.get_running_loop().time()),
                )
        if self._api_flush is not None:
            self._api_flush.cancel()
        await self.flush_api()
        if self.snapshots is not None:
            try:
                await self.snapshots.snapshot_all()
            except Exception as e:
                log.error("final feature snapshot failed: %r", e)


def _dump(raw: Any) -> str:
    try:
        return json.dumps(raw, default=str)[:2048]
    except (TypeError, ValueError):
        return repr(raw)[:2048]


def _as_tx_error(e: InputError, source: str) -> Any:
    from fraudnet.errors import TransactionError

    return TransactionError(str(e), source=source, location="message")
