"""NodeRuntime: the asyncio-side glue around :class:`~fraudnet.core.pipeline.NodeCore`.

It owns the de-duplication store, the output topics, metrics and the
waiters of HTTP callers. Everything here runs on the node's event-loop
thread, so the core is never entered concurrently: between de-duplication
and recording a decision there is no ``await``.

Two paths reach the same core and the same state:

* stream: ingest (Kafka ``tx-in`` or ``POST /v1/ingest``) -> one internal
  ``tx-batch`` message per batch -> the Faust agent calls
  :meth:`NodeRuntime.on_tx_batch` -> decisions -> one ``decisions`` message.
* sync: ``POST /v1/decide`` -> :meth:`NodeRuntime.decide_now` (``api_path.py``) -> the core,
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

from .api_path import ApiPath, DecideResult
from .labels import apply_label
from .metrics import NodeMetrics
from .storage.dedup import DedupStore
from .stream.dedup_filter import FilteredDedup

__all__ = [
    "EXTERNAL_BATCH_PREFIX", "BatchResult", "DecideResult", "NodeRuntime", "OutputTopics",
    "now_us",
]  # fmt: skip

#: batch ids of batches published by the ingest process (stream/ingest_proc.py): their
#: capacity is the child's to track; the runtime reports each one decided instead
EXTERNAL_BATCH_PREFIX = "x:"

log = logging.getLogger("fraudnet.node")

#: called with (decisions, path) right after scoring, in decision order, before anything
#: is acknowledged; e.g. the audit log's durable append. The call should start the work
#: (the audit log appends and starts its commit in the call) and return what to await;
#: an exception, raised or awaited, aborts the acknowledgement.
DecisionHook = Callable[[Sequence[Decision], str], Awaitable[Any]]


#: the de-dup rows of acknowledged decisions are written in one SQLite transaction per
#: this window, or as soon as this many wait: at 1,000 POST /v1/decide requests/s one
#: transaction per group wrote ~8 MB/s of WAL, whose write-back then stalled the audit
#: log's fdatasync for 25-35 ms (ADR 0505); ids stay seen through the pending map meanwhile
RECORD_DELAY_S = 0.02
RECORD_MAX_ROWS = 2048


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
        #: POST /v1/decide (api_path.py)
        self.api = ApiPath(self)
        self._notifies: set[asyncio.Future[None]] = set()
        self.batches_decided = 0
        #: seconds spent validating/pseudonymising (ingest) and deciding (core + scorer)
        self.admit_seconds = 0.0
        self.decide_seconds = 0.0
        #: decided ids whose de-dup rows are not committed yet (count as seen)
        self._pending: dict[str, tuple[Decision, TxRecord]] = {}
        #: decided batches whose de-dup rows wait for flush_records, and their row count
        self._unrecorded: list[tuple[Sequence[Decision], Sequence[TxRecord]]] = []
        self._unrecorded_n = 0
        self._record_timer: asyncio.TimerHandle | None = None
        #: after_ack calls scheduled and not yet run (see :meth:`recorded`)
        self._acks_due = 0
        self._no_acks_due: asyncio.Event | None = None
        self._tail: asyncio.Future[None] | None = None
        self._fatal = False
        #: periodic feature-state snapshots (stream/snapshots.py), written once more on drain
        self.snapshots: Any = None
        #: called (once per failure) when the node must stop: a durable write failed
        self.on_fatal: Callable[[BaseException], None] | None = None
        #: the stream consumer's fetch wait policy (stream/transport.py FetchWait), if any
        self.fetch_wait: Any = None
        #: the embedded broker's ConsumedTrimmer, if any (/v1/stats shows its progress)
        self.broker_trim: Any = None
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
        decisions, fresh, dups = self.decide_begin(records, arrivals, now, "stream")
        started = self.start_hooks(decisions, "stream")
        self.metrics.batch_size.observe(len(records))
        prev = self._tail
        self._tail = asyncio.ensure_future(
            self._complete(prev, decisions, fresh, dups, batch_id, "stream", started)
        )

    def decide_begin(
        self, records: Sequence[TxRecord], arrivals: Sequence[int], now: int, path: str
    ) -> tuple[list[Decision], list[TxRecord], int]:
        """De-duplicate and decide (no await). Decided ids stay in ``_pending``
        until their de-dup rows are written (:meth:`flush_records`), so the API
        path and the stream path can never decide the same id twice concurrently."""
        ids = [r.tx_id for r in records]
        seen = self.dedup.seen_many(ids) | (self._pending.keys() & ids)
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
            self._fail_stop("cannot journal decided transactions", e)
            raise
        for d, r in zip(decisions, fresh, strict=True):
            self._pending[d.tx_id] = (d, r)
        return decisions, fresh, dups

    def start_hooks(self, decisions: Sequence[Decision], path: str) -> list[Awaitable[Any]]:
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

    async def make_durable(
        self,
        decisions: Sequence[Decision],
        fresh: Sequence[TxRecord],
        path: str,
        started: Sequence[Awaitable[Any]],
    ) -> None:
        """Wait until the decisions are durable (the awaitables of :meth:`start_hooks`:
        the audit log's fsync). The caller then acknowledges them and calls
        :meth:`after_ack`; if this raises, nothing may be acknowledged."""
        try:
            for waiting in started if decisions else ():
                await waiting
        except BaseException:
            self._forget(decisions)
            raise

    def schedule_after_ack(
        self, decisions: Sequence[Decision], fresh: Sequence[TxRecord], path: str
    ) -> None:
        """Run :meth:`after_ack` in a later loop step (``call_soon``: after the callbacks
        already queued, such as the woken HTTP handlers or the producer's send)."""
        self._acks_due += 1
        if self._no_acks_due is not None:
            self._no_acks_due.clear()
        asyncio.get_running_loop().call_soon(self.after_ack, decisions, fresh, path)

    async def recorded(self) -> None:
        """Return once every scheduled :meth:`after_ack` has run and the de-dup rows it
        buffered are written (drain, tests)."""
        if self._acks_due:
            if self._no_acks_due is None:
                self._no_acks_due = asyncio.Event()
            await self._no_acks_due.wait()
        self.flush_records()

    def after_ack(
        self, decisions: Sequence[Decision], fresh: Sequence[TxRecord], path: str
    ) -> None:
        """After the acknowledgement (scheduled with ``call_soon`` once the answers or the
        decisions message are on their way): metrics, decided hooks, and the de-dup rows
        with the journal confirmation, buffered and written together by
        :meth:`flush_records` (one SQLite transaction per ``RECORD_DELAY_S`` or
        ``RECORD_MAX_ROWS``). Until then the ids count as seen through the pending map; a
        crash before the de-dup commit is settled at start from the journal
        (storage/journal.py); a failed commit stops the node."""
        try:
            if decisions:
                self._unrecorded.append((decisions, fresh))
                self._unrecorded_n += len(decisions)
                if self._unrecorded_n >= RECORD_MAX_ROWS:
                    self.flush_records()
                elif self._record_timer is None:
                    self._record_timer = asyncio.get_running_loop().call_later(
                        RECORD_DELAY_S, self.flush_records
                    )
        finally:
            self._acks_due -= 1
            if not self._acks_due and self._no_acks_due is not None:
                self._no_acks_due.set()
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

    def flush_records(self) -> None:
        """Write the buffered de-dup rows and journal confirmations (one transaction)."""
        if self._record_timer is not None:
            self._record_timer.cancel()
            self._record_timer = None
        batches, self._unrecorded = self._unrecorded, []
        self._unrecorded_n = 0
        if not batches:
            return
        try:
            self.dedup.add_batches([
                [(d.tx_id, d.outcome, d.score, d.decided_at_us, r.ts_us, r.card_ref,
                  r.terminal_ref) for d, r in zip(decisions, records, strict=True)]
                for decisions, records in batches
            ])  # fmt: skip
        except Exception as e:
            self._fail_stop("cannot record decided transactions", e)
        finally:
            for decisions, _ in batches:
                self._forget(decisions)

    def _forget(self, decisions: Sequence[Decision]) -> None:
        pending = self._pending
        for d in decisions:
            pending.pop(d.tx_id, None)

    def decided_before(self, tx_id: str) -> tuple[str, float, int] | None:
        """(outcome, score, decided_at_us) of an id decided earlier: from SQLite, or from
        the pending map while its de-dup row is not written yet."""
        p = self._pending.get(tx_id)
        if p is not None:
            return (p[0].outcome, p[0].score, p[0].decided_at_us)
        return self.dedup.get(tx_id)

    def lookup_entity(self, tx_id: str) -> tuple[int, bytes, bytes] | None:
        """(ts_us, card_ref, terminal_ref) of a decided transaction (labels by tx id):
        from SQLite, or from the pending map while its de-dup row is not written yet."""
        p = self._pending.get(tx_id)
        if p is not None:
            return (p[1].ts_us, p[1].card_ref, p[1].terminal_ref)
        return self.dedup.lookup_entity(tx_id)

    def _fail_stop(self, what: str, e: BaseException) -> None:
        """Stop the node (once) rather than decide without a durable record."""
        if self._fatal:
            return
        log.critical("%s; stopping the node: %r", what, e)
        self._fatal = True
        if self.on_fatal is not None:
            self.on_fatal(e)

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
        # This batch's audit records were appended when it was decided (start_hooks),
        # in arrival order, and ride the group commit running then; it is recorded as
        # soon as they are durable, while earlier batches may still wait for theirs.
        # Awaiting the previous batch keeps acknowledgements in order. (Awaiting
        # ``prev`` before appending serialised one fsync per batch: ADR 0500.)
        durable = asyncio.ensure_future(self.make_durable(decisions, fresh, path, started))
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
            # The journal or the audit log failed: nothing of this batch was
            # acknowledged. Fail-stop rather than decide without a durable record.
            if fut is not None and not fut.done():
                fut.set_exception(e)
            self._fail_stop("cannot record decisions durably", e)
            return
        finally:
            if not external:
                self._release_one()
            if durable.done() and not durable.cancelled() and durable.exception() is None:
                # after the decisions message is handed to the producer (its send task
                # runs first): de-dup rows, metrics, decided hooks
                self.schedule_after_ack(decisions, fresh, path)
        if fut is not None and not fut.done():
            fut.set_result(BatchResult(decided=len(decisions), duplicates=dups))

    # -- labels and the synchronous path (labels.py, api_path.py) ---------------------
    def on_label(self, value: bytes) -> None:
        """Apply one label event (see :func:`~fraudnet.adapters.labels.apply_label`)."""
        apply_label(self, value)

    async def decide_now(
        self, raw: Mapping[str, Any], *, source: str, arrival: int
    ) -> DecideResult:
        """Validate and decide one transaction now (``POST /v1/decide``; api_path.py)."""
        return await self.api.decide_now(raw, source=source, arrival=arrival)

    async def flush_api(self) -> None:
        """Publish the API path's decisions (and transactions) until none are left."""
        await self.api.flush()

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
        self.api.cancel_pending_flush()
        await self.flush_api()
        await self.recorded()  # de-dup rows and journal confirmations before the snapshots
        if self.snapshots is not None:
            try:
                await self.snapshots.snapshot_all()
            except Exception as e:
                log.error("final feature snapshot failed: %r", e)


def _as_tx_error(e: InputError, source: str) -> Any:
    from fraudnet.errors import TransactionError

    return TransactionError(str(e), source=source, location="message")
