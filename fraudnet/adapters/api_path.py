"""The synchronous decision path of the node: ``POST /v1/decide``.

A request is validated and queued; every request parsed before the next loop iteration
is decided as one group (one de-dup query, one scorer call, one journal entry, one audit
append) through the same :class:`~fraudnet.adapters.runtime.NodeRuntime` steps as a
stream batch, and each is answered once the audit commit covering it is durable. The
decisions (and transactions) of the API path are then published in coalesced messages.
A broker round trip could not meet an authorisation budget, hence no topic on this path
before the answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fraudnet.core.pipeline import DeadLetter
from fraudnet.core.records import Decision, TxRecord, encode_decisions, encode_tx_batch

if TYPE_CHECKING:
    from .runtime import NodeRuntime

__all__ = ["API_GROUPS", "ApiPath", "DecideResult"]

#: POST /v1/decide groups that may wait for their audit commit at the same time
API_GROUPS = 2
#: the API path's decisions (already answered) are published in one message per this
#: window: each message is a Kafka produce request, ~0.2 ms of the event loop (ADR 0505)
API_PUBLISH_DELAY_S = 0.02


@dataclass(frozen=True, slots=True)
class DecideResult:
    decision: Decision | None
    dead_letter: DeadLetter | None = None
    duplicate_of: tuple[str, float, int] | None = None


class ApiPath:
    """The API path's queue, groups and coalesced publishing, on the runtime's loop."""

    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self._decisions: list[Decision] = []
        self._txs: list[TxRecord] = []
        self._arrivals: list[int] = []
        self._flush: asyncio.Task[None] | None = None
        self._queue: list[tuple[TxRecord, int, asyncio.Future[DecideResult]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Future[None]] = set()

    async def decide_now(
        self, raw: Mapping[str, Any], *, source: str, arrival: int
    ) -> DecideResult:
        """Validate and decide one transaction now (``POST /v1/decide``).

        Requests that arrive while the loop is busy are decided together: one
        de-dup query, one scorer call, one audit append and one de-dup insert per
        group (see :meth:`_decide_group`), each answer after its audit fsync.
        """
        now = self.rt.clock()
        adm = self.rt.core.admit_one(
            raw, source=source, location="body", now_us=now, payload=_dump(raw)
        )
        self.rt.metrics.received.labels(path="api").inc()
        if isinstance(adm, DeadLetter):
            await self.rt.publish_dead_letters([adm])
            return DecideResult(decision=None, dead_letter=adm)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[DecideResult] = loop.create_future()
        self._queue.append((adm, arrival, fut))
        if not self._scheduled:
            # runs on the next loop iteration: every request parsed before then joins
            self._scheduled = True
            loop.call_soon(self._decide_group)
        return await fut

    def _decide_group(self) -> None:
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
        self._scheduled = False
        if len(self._tasks) >= API_GROUPS:
            return  # a completing group schedules the next collection
        items, self._queue = self._queue, []
        if not items:
            return
        recs = [it[0] for it in items]
        try:
            decisions, fresh, _dups = self.rt.decide_begin(recs, [it[1] for it in items],
                                                         self.rt.clock(), "api")  # fmt: skip
            started = self.rt.start_hooks(decisions, "api")
        except BaseException as e:
            _fail(items, e)
            return
        t = asyncio.ensure_future(self._answer(items, decisions, fresh, started))
        self._tasks.add(t)
        t.add_done_callback(self._group_done)

    def _group_done(self, t: asyncio.Future[None]) -> None:
        self._tasks.discard(t)
        if self._queue and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._decide_group)

    async def _answer(
        self,
        items: list[tuple[TxRecord, int, asyncio.Future[DecideResult]]],
        decisions: list[Decision],
        fresh: list[TxRecord],
        started: Sequence[Awaitable[Any]],
    ) -> None:
        try:
            await self.rt.make_durable(decisions, fresh, "api", started)
        except BaseException as e:
            _fail(items, e)
            return
        by_id = {d.tx_id: d for d in decisions}
        for adm, arrival, f in items:
            d = by_id.pop(adm.tx_id, None)
            if d is None:  # decided before, or right now by the stream path / this group
                res = DecideResult(decision=None, duplicate_of=self.rt.decided_before(adm.tx_id))
            else:
                self._decisions.append(d)
                self._txs.append(adm)
                self._arrivals.append(arrival)
                res = DecideResult(decision=d)
            if not f.done():
                f.set_result(res)
        # the answers are written first (their handlers were woken above)
        self.rt.schedule_after_ack(decisions, fresh, "api")
        if self._decisions and (self._flush is None or self._flush.done()):
            self._flush = asyncio.ensure_future(self._flush_soon())

    async def _flush_soon(self, delay: float = API_PUBLISH_DELAY_S) -> None:
        await asyncio.sleep(delay)  # coalescing window: many API decisions, one message
        await self.flush()

    async def flush(self) -> None:
        """Publish the API path's decisions (and transactions) until none are left.

        Decisions made while a send is in flight are picked up by the next
        round of this loop: no flush task is scheduled for them meanwhile.
        """
        while self._decisions:
            decisions, self._decisions = self._decisions, []
            txs, self._txs = self._txs, []
            arrivals, self._arrivals = self._arrivals, []
            await self.rt.topics.send_decisions(encode_decisions(decisions))
            await self.rt.topics.send_api_tx(encode_tx_batch(txs, arrivals))

    def cancel_pending_flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()


def _fail(items: list[tuple[TxRecord, int, asyncio.Future[DecideResult]]],
          e: BaseException) -> None:  # fmt: skip
    """Each caller answers 500; nothing of the group was acknowledged."""
    for _, _, f in items:
        if not f.done():
            f.set_exception(e)


def _dump(raw: Any) -> str:
    try:
        return json.dumps(raw, default=str)[:2048]
    except (TypeError, ValueError):
        return repr(raw)[:2048]
