"""asyncio group commit for the audit log.

``await alog.append_durable(records)`` queues the records (encoding runs on
the event loop, it is cheap) and returns their last seq once a commit that
includes them has been fsynced. One committer task runs ``AuditLog.commit``
in a dedicated worker thread, so the loop never blocks on ``fsync``; every
caller that appended while a commit was in flight rides the next one
together -- one fsync per batch of concurrent callers, not per caller.
The committer also wakes up when a checkpoint falls due, so records are
checkpointed within ``checkpoint_interval_us`` even if traffic stops.

If a commit fails, every waiting caller gets the error
(:class:`~fraudnet.errors.UnavailableError`) and so do later calls: a
decision whose record is not on disk must not be acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from fraudnet.core.audit.schema import AuditRecord
from fraudnet.errors import InternalError

from .audit_log import AuditLog

__all__ = ["AsyncAuditLog"]


class AsyncAuditLog:
    """Group-commit wrapper around one :class:`AuditLog`; use from one event loop."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-fsync")
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
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

    async def _await_durable(self, last: int) -> int:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._waiters.append((last, fut))
        self._ensure_task().set()
        return await fut

    async def aclose(self) -> None:
        """Flush waiters, stop the committer, close the log (final checkpoint)."""
        if self._closing:
            return
        self._closing = True
        if self._task is not None and self._wakeup is not None:
            self._wakeup.set()
            await self._task
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.log.close)
        finally:
            self._executor.shutdown(wait=True)

    def _ensure_task(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(self._wakeup))
        return self._wakeup

    async def _run(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiters and not self._closing:
                due = self.log.checkpoint_due_in_us()
                timeout = None if due is None else due / 1e6
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout)
            wakeup.clear()
            waiters, self._waiters = self._waiters, []
            try:
                durable = await loop.run_in_executor(self._executor, self.log.commit)
            except Exception as e:  # handed to every waiter, not swallowed
                self._error = e
                for _, fut in waiters + self._waiters:
                    if not fut.done():
                        fut.set_exception(e)
                self._waiters = []
                return
            self.commits += 1
            for seq, fut in waiters:
                if fut.done():
                    continue
                if seq <= durable:
                    fut.set_result(seq)
                else:  # appended after the swap but before commit took the queue
                    self._waiters.append((seq, fut))
            if self._closing and not self._waiters:
                return
