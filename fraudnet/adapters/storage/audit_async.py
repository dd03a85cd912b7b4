"""asyncio group commit for the audit log.

``await alog.append_durable(records)`` queues the records (encoding runs on
the event loop, it is cheap) and returns their last seq once a commit that
includes them has been fsynced. ``AuditLog.commit`` runs in a dedicated
committer thread, so the loop never blocks on ``fsync``; every caller that
appended while a commit was in flight rides the next one together -- one
fsync per batch of concurrent callers, not per caller. The thread starts
the next commit as soon as one ends if records were appended meanwhile,
without a round trip through the loop (ADR 0506). An idle log also
commits when a checkpoint falls due, so records are checkpointed within
``checkpoint_interval_us`` even if traffic stops.

If a commit fails, every waiting caller gets the error
(:class:`~fraudnet.errors.UnavailableError`) and so do later calls: a
decision whose record is not on disk must not be acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fraudnet.core.audit.schema import AuditRecord
from fraudnet.errors import InternalError

from .audit_log import AuditLog

__all__ = ["AsyncAuditLog"]


class AsyncAuditLog:
    """Group-commit wrapper around one :class:`AuditLog`; use from one event loop.

    Theory of operation. Appends run on the loop (in the caller's order) and queue
    a waiter ``(last seq, future)``, then set ``_wake``. The committer thread waits
    on ``_wake``, clears it, and commits everything appended so far; it posts the
    durable seq back with ``call_soon_threadsafe`` and loops. Rules:

    1. An append happens before its ``_wake.set()``, and the thread clears ``_wake``
       before ``commit`` takes the queued records: a wake-up lost to the clear
       belongs to records the commit takes anyway.
    2. Waiters are queued in seq order (appends are ordered on the loop), so the
       loop callback resolves a prefix: every waiter whose seq is durable.
    3. A failed commit fails every queued waiter and every later call (the thread
       stops): a decision whose record is not on disk must not be acknowledged.
    4. An idle log still commits when a checkpoint falls due (a loop timer wakes
       the thread), so records are checkpointed even if traffic stops.
    """

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._waiters: deque[tuple[int, asyncio.Future[int]]] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stop = False
        self._closing = False
        self._error: BaseException | None = None
        self.commits = 0  # fsync batches so far (for metrics and tests)

    async def append_durable(self, records: Iterable[AuditRecord]) -> int:
        """Append ``records`` and return the seq of the last one once it is on disk."""
        self._check("append_durable")
        return await self._waiter(self.log.append_many(records))

    async def append_bodies_durable(self, bodies: Sequence[bytes]) -> int:
        """Like :meth:`append_durable` for bodies encoded per batch
        (:func:`~fraudnet.core.audit.batch.decision_bodies`)."""
        self._check("append_bodies_durable")
        return await self._waiter(self.log.append_bodies(bodies))

    def start_bodies(self, bodies: Sequence[bytes]) -> asyncio.Future[int]:
        """Append now (in this loop step) and return a future of the last seq, done once
        the records are on disk: appends keep the caller's order, and the committer
        starts on them at once if it is idle. Raises like :meth:`append_bodies_durable`."""
        self._check("start_bodies")
        return self._waiter(self.log.append_bodies(bodies))

    def _check(self, what: str) -> None:
        if self._closing:
            raise InternalError(f"audit log: {what} after aclose()")
        if self._error is not None:
            raise self._error

    def _waiter(self, last: int) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._loop = loop
            self._thread = threading.Thread(target=self._run, name="audit-fsync", daemon=True)
            self._thread.start()
        fut: asyncio.Future[int] = loop.create_future()
        self._waiters.append((last, fut))
        self._wake.set()
        return fut

    # -- the committer thread (never raises; talks to the loop only by posting) ---------
    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                durable = self.log.commit()
            except BaseException as e:  # handed to every waiter by the loop, not swallowed
                self._post(self._failed, e)
                return
            self._post(self._durable, durable)

    def _post(self, fn: Callable[[Any], None], arg: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(fn, arg)

    # -- loop callbacks -------------------------------------------------------------------
    def _durable(self, durable: int) -> None:
        self.commits += 1
        waiters = self._waiters
        while waiters and waiters[0][0] <= durable:
            seq, fut = waiters.popleft()
            if not fut.done():
                fut.set_result(seq)
        if not waiters and self._timer is None and not self._closing:
            due = self.log.checkpoint_due_in_us()
            if due is not None and self._loop is not None:  # checkpoint even if traffic stops
                self._timer = self._loop.call_later(due / 1e6, self._checkpoint_tick)

    def _failed(self, exc: BaseException) -> None:
        self._error = exc
        while self._waiters:
            fut = self._waiters.popleft()[1]
            if not fut.done():
                fut.set_exception(exc)

    def _checkpoint_tick(self) -> None:
        self._timer = None
        if not self._closing and self._error is None:
            self._wake.set()

    async def aclose(self) -> None:
        """Wait for queued waiters, stop the committer, close the log (final checkpoint)."""
        if self._closing:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending = [fut for _, fut in self._waiters]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        thread = self._thread
        if thread is not None:
            self._stop = True
            self._wake.set()
            await asyncio.to_thread(thread.join)
        await asyncio.to_thread(self.log.close)
