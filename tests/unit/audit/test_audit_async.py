"""The audit log's committer thread (storage/audit_async.py, ADR 0506): acknowledgements
only for durable records, in order; a failed commit fails every waiter and every later
call; appends made while a commit runs ride the next one without waiting for the loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.adapters.storage.audit_async import AsyncAuditLog
from fraudnet.adapters.storage.audit_files import verify_log
from fraudnet.adapters.storage.audit_log import AuditLog, open_audit_log
from fraudnet.core.audit.schema import AuditRecord, encode_body, event_record
from fraudnet.errors import InternalError, UnavailableError


def rec(i: int) -> AuditRecord:
    return event_record("signal_sent", at_us=1_700_000_000_000_000 + i, actor="node:a",
                        action="send", resource=f"sig:{i}", signal_id=f"s{i}")  # fmt: skip


def test_every_acknowledged_seq_is_durable_when_it_returns(tmp_path: Path) -> None:
    log = open_audit_log(tmp_path / "audit", Ed25519PrivateKey.generate())
    seen: list[tuple[int, int]] = []

    async def one(alog: AsyncAuditLog, i: int) -> None:
        for j in range(20):
            seq = await alog.append_durable([rec(i * 100 + j)])
            seen.append((seq, alog.log.durable_size))

    async def main() -> None:
        alog = AsyncAuditLog(log)
        await asyncio.gather(*(one(alog, i) for i in range(10)))
        await alog.aclose()

    asyncio.run(main())
    assert sorted(s for s, _ in seen) == list(range(200))
    assert all(durable > seq for seq, durable in seen)
    r = verify_log(tmp_path / "audit")
    assert r.ok and r.records == 200


def test_appends_during_a_commit_ride_the_next_one_without_the_loop(tmp_path: Path) -> None:
    """The first commit is held inside the thread; the loop appends two more batches
    meanwhile and then blocks itself (it cannot run any callback): the thread still makes
    the second batch durable, because it loops on its own."""
    log = open_audit_log(tmp_path / "audit", Ed25519PrivateKey.generate())
    entered, release, second_done = threading.Event(), threading.Event(), threading.Event()
    real_commit = log.commit
    calls = 0

    def commit() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            release.wait(10)
        out = real_commit()
        if calls == 2:
            second_done.set()
        return out

    log.commit = commit  # type: ignore[method-assign]  # instrumented twin of the same method

    async def main() -> tuple[int, int, int]:
        alog = AsyncAuditLog(log)
        first = alog.start_bodies([])  # starts the thread; commit 1 holds
        assert await asyncio.to_thread(entered.wait, 10)
        a = alog.start_bodies([encode_body(rec(1))])  # appended now, in this loop step
        b = alog.start_bodies([encode_body(rec(2))])
        release.set()
        # block the loop: only the thread can make progress now
        assert second_done.wait(10), "the committer did not commit again on its own"
        out = (await first, await a, await b)
        await alog.aclose()
        return out

    assert asyncio.run(main()) == (-1, 0, 1)
    assert calls >= 2


class _FailingLog:
    """An AuditLog whose commits fail from the n-th on (disk gone)."""

    def __init__(self, log: AuditLog, fail_from: int) -> None:
        self._log, self._n, self._from = log, 0, fail_from

    def __getattr__(self, name: str) -> object:
        return getattr(self._log, name)

    def commit(self) -> int:
        self._n += 1
        if self._n >= self._from:
            raise UnavailableError("audit log test: write failed (No space left on device)")
        return self._log.commit()


def test_a_failed_commit_fails_every_waiter_and_every_later_call(tmp_path: Path) -> None:
    log = open_audit_log(tmp_path / "audit", Ed25519PrivateKey.generate())

    async def main() -> list[object]:
        alog = AsyncAuditLog(_FailingLog(log, fail_from=2))  # type: ignore[arg-type]  # duck-typed twin
        ok = await alog.append_durable([rec(0)])
        results = await asyncio.gather(
            *(alog.append_durable([rec(i)]) for i in range(1, 6)), return_exceptions=True
        )
        with pytest.raises(UnavailableError, match="No space"):
            await alog.append_durable([rec(9)])
        await alog.aclose()
        with pytest.raises(InternalError, match="after aclose"):
            alog.start_bodies([])
        return [ok, *results]

    out = asyncio.run(main())
    assert out[0] == 0
    assert all(isinstance(e, UnavailableError) for e in out[1:])
