"""asyncio group commit for the audit log.

``await alog.append_durable(records)`` queues the records (encoding runs on
the event loop, it is cheap) and returns their last seq once a commit that
includes them has been fsynced. ``AuditLog.commit`` runs in a dedicated
worker thread, so the loop never blocks on ``fsync``; every caller that
appended while a commit was in flight rides the next one together -- one
fsync per batch of concurrent callers, not per caller. An idle log also
commits when a checkpoint falls due, so records are checkpointed within
``checkpoint_interval_us`` even if traffic stops.

If a commit fails, every waiting caller gets the error
(:class:`~fraudnet.errors.UnavailableError`) and so do later calls: a
decision whose record is not on disk must not be acknowledged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from fraudnet.core.audit.schema import AuditRecord
from fraudnet.errors import InternalError

from .audit_log import AuditLog

__all__ = ["AsyncAuditLog"]


class AsyncAuditLog:
    """Group-commit wrapper around one :class:`AuditLog`; use from one event loop.

    The first append while no commit runs submits one at once to the committer
    thread; appends made while it runs wait for the next, which the completion
    callback starts immediately. A commit costs two thread hops and one loop
    callback: no committer task has to be woken first (that task used to cost the
    answer one more event-loop iteration, which on a busy loop is most of a
    millisecond). An idle log still commits when a checkpoint falls due.
    """

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-fsync")
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committing = False
        self._idle: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._error: BaseException | None = None
        self.commits = 0  # fsync batches so far (for metrics and tests)

    async def append_durable(self, records: Iterable[AuditRecord]) -> int:
        """Append ``records`` and return the seq of the last one once it is on disk."""
        if self._closing:
            raise InternalError("audit log: append_durable after aclose()")
        if self._error is not None:
            raise self._error
        return await self._await_durable(self.log.append_many(records))

    async def append_bodies_durable(self, bodies: Sequence[bytes]) -> int:
        """Like :meth:`append_durable` for bodies encoded per batch
        (:func:`~fraudnet.core.audit.batch.decision_bodies`)."""
        if self._closing:
            raise InternalError("audit log: append_bodies_durable after aclose()")
        if self._error is not None:
            raise self._error
        return await self._await_durable(self.log.append_bodies(bodies))

    def start_bodies(self, bodies: Sequence[bytes]) -> asyncio.Future[int]:
        """Append now (in this loop step) and return a future of the last seq, done once
        the records are on disk: appends keep the caller's order, and the commit starts
        at once when none is running. Raises like :meth:`append_bodies_durable`."""
        if self._closing:
            raise InternalError("audit log: start_bodies after aclose()")
        if self._error is not None:
            raise self._error
        return self._waiter(self.log.append_bodies(bodies))

    async def _await_durable(self, last: int) -> int:
        return await self._waiter(last)

    def _waiter(self, last: int) -> asyncio.Future[int]:
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._waiters.append((last, fut))
        if not self._committing:
            self._start_commit(loop)
        return fut

    def _start_commit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Submit one commit for every waiter queued so far (on the loop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._committing = True
        if self._idle is not None:
            self._idle.clear()
        waiters, self._waiters = self._waiters, []

        def done(cf: concurrent.futures.Future[int]) -> None:  # committer thread; never raises
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._committed, cf, waiters)

        self._executor.submit(self.log.commit).add_done_callback(done)

    def _committed(
        self, cf: concurrent.futures.Future[int], waiters: list[tuple[int, asyncio.Future[int]]]
    ) -> None:
        loop = asyncio.get_running_loop()
        self._committing = False
        exc = cf.exception()
        if exc is not None:  # handed to every waiter, not swallowed
            self._error = exc
            for _, fut in waiters + self._waiters:
                if not fut.done():
                    fut.set_exception(exc)
            self._waiters = []
            self._set_idle()
            return
        self.commits += 1
        durable = cf.result()
        for seq, fut in waiters:
            if fut.done():
                continue
            if seq <= durable:
                fut.set_result(seq)
            else:  # appended after the swap but before commit took the queue
                self._waiters.append((seq, fut))
        if self._waiters:
            self._start_commit(loop)
            return
        self._set_idle()
        if not self._closing:
            due = self.log.checkpoint_due_in_us()
            if due is not None:  # records are checkpointed even if traffic stops
                self._timer = loop.call_later(due / 1e6, self._checkpoint_tick)

    def _checkpoint_tick(self) -> None:
        self._timer = None
        if not self._committing and not self._closing and self._error is None:
            assert self._loop is not None
            self._start_commit(self._loop)

    def _set_idle(self) -> None:
        if self._idle is not None:
            self._idle.set()

    async def aclose(self) -> None:
        """Flush waiters, stop the committer, close the log (final checkpoint)."""
        if self._closing:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._committing:
            self._idle = self._idle or asyncio.Event()
            while self._committing:
                await self._idle.wait()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.log.close)
        finally:
            self._executor.shutdown(wait=True)
