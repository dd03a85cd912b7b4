"""Ingest in a second process: start it, feed it acknowledgements, supervise it.

:class:`IngestProcess` is the node-side twin of :class:`~.ingest.IngestService`
for ``ingest_process`` mode (ADR 0502): the consume/validate/pseudonymise
loop runs in :mod:`.ingest_worker`, a child process, and this service

* starts it with one end of a socket pair (``pass_fds``), restarts it after
  an unexpected exit (1 s, doubling to 30 s), and stops it on node stop:
  ``S`` on the socket, wait (bounded) for its ``bye``, then SIGTERM/SIGKILL;
* adds the child's per-fetch counts (received, dead-lettered, admission
  seconds) to the node's counters and metrics, so ``received == decided +
  dead_lettered + duplicates`` still reconciles node-wide;
* tells the child when each of its batches is decided (the runtime calls
  :meth:`batch_done` for ``x:<generation>:<seq>`` batch ids after their audit
  records are durable), which is what lets it commit ``tx-in`` offsets and
  bounds its in-flight batches.

The child dies with the node even on SIGKILL (``PR_SET_PDEATHSIG`` and the
socket's EOF): no orphan keeps consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from mode import Service

from ..runtime import EXTERNAL_BATCH_PREFIX, NodeRuntime

__all__ = ["IngestProcess"]

log = logging.getLogger("fraudnet.ingest")


class IngestProcess(Service):
    def __init__(self, runtime: NodeRuntime, *, node_dir: Path, bootstrap: str, **kw: Any) -> None:
        self.runtime = runtime
        self.node_dir = node_dir
        self.bootstrap = bootstrap
        self.generation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._bye: asyncio.Event | None = None
        self._paused = False
        self.restarts = 0
        self.consumed = 0
        runtime.on_external_done = self.batch_done
        super().__init__(**kw)

    # -- child lifecycle -----------------------------------------------------------
    async def on_start(self) -> None:
        await self._spawn()
        self.add_future(self._supervise())

    async def _spawn(self) -> None:
        self.generation += 1
        parent, child = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fraudnet.adapters.stream.ingest_worker",
                 "--node-dir", str(self.node_dir), "--bootstrap", self.bootstrap,
                 "--fd", str(child.fileno()), "--generation", str(self.generation)],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        finally:
            child.close()
        reader, self._writer = await asyncio.open_connection(sock=parent)
        self._bye = asyncio.Event()
        self._reader_task = asyncio.ensure_future(self._read(reader, self._bye))

    async def _supervise(self) -> None:
        backoff = 1.0
        while not self.should_stop:
            proc = self.proc
            if proc is None:
                return
            code = await asyncio.to_thread(proc.wait)
            if self.should_stop or self._paused:
                return
            log.error("ingest process exited with status %s; restarting in %.0f s", code, backoff)
            await asyncio.sleep(backoff)  # restart back-off (not a synchronisation)
            backoff = min(30.0, backoff * 2)
            if self.should_stop or self._paused:
                return
            self.restarts += 1
            await self._spawn()

    async def _read(self, reader: asyncio.StreamReader, bye: asyncio.Event) -> None:
        rt, core, m = self.runtime, self.runtime.core, self.runtime.metrics
        try:
            while line := await reader.readline():
                try:
                    msg = json.loads(line)
                except ValueError:
                    log.error("ingest process: unreadable line %r", line[:80])
                    continue
                if msg.get("t") == "count":
                    n, dead = int(msg["received"]), int(msg["dead"])
                    core.counters.received += n
                    core.counters.dead_lettered += dead
                    self.consumed += n
                    rt.admit_seconds += float(msg.get("admit_s", 0.0))
                    m.received.labels(path="kafka").inc(n)
                    for fld, k in dict(msg.get("fields", {})).items():
                        m.dead_letters.labels(field=str(fld)).inc(int(k))
                elif msg.get("t") == "bye":
                    if int(msg.get("inflight", 0)):
                        log.warning("ingest process stopped with %s batches undecided "
                                    "(their records are read again)", msg["inflight"])  # fmt: skip
                    bye.set()
        finally:
            bye.set()

    def batch_done(self, batch_id: str) -> None:
        """The runtime decided batch ``x:<generation>:<seq>``: tell the child."""
        gen, _, seq = batch_id[len(EXTERNAL_BATCH_PREFIX) :].partition(":")
        w = self._writer
        if w is None or gen != str(self.generation) or w.is_closing():
            return  # a batch of an earlier child: that child is gone, nobody waits
        w.write(f"A {seq}\n".encode())

    # -- node stop -------------------------------------------------------------------
    def pause(self) -> None:
        """Stop consuming: the child drains its in-flight batches, commits and exits."""
        self._paused = True
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"S\n")

    async def wait_stopped(self, timeout: float = 20.0) -> None:
        """After :meth:`pause`: wait (bounded) until the child said ``bye`` and exited."""
        if self._bye is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._bye.wait(), timeout)
        await self._reap(5.0)

    async def _reap(self, timeout: float) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
        except TimeoutError:
            proc.terminate()
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 5.0)
            except TimeoutError:
                proc.kill()
                await asyncio.to_thread(proc.wait)

    async def on_stop(self) -> None:
        self._paused = True
        if self.proc is not None and self.proc.poll() is None:
            self.pause()
            await self._reap(10.0)
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
