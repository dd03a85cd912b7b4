"""The ingest consumer thread takes the first message, then only what is already queued.

``consume(n, timeout)`` waits until *n* messages arrived or the timeout passed; asking for a
whole batch with a timeout held every fetched list for up to that timeout at moderate rates
(ADR 0504). The thread must block only for the first message of a list.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fraudnet.adapters.stream.ingest import IngestService


class _Msg:
    def __init__(self, i: int) -> None:
        self.i = i

    def error(self) -> None:
        return None


class _FakeConsumer:
    def __init__(self, n: int, done: threading.Event) -> None:
        self.queued = [_Msg(i) for i in range(n)]
        self.calls: list[tuple[int, float]] = []
        self.done = done

    def consume(self, num_messages: int, timeout: float) -> list[_Msg]:
        self.calls.append((num_messages, timeout))
        if not self.queued:
            self.done.set()
        out, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return out

    def commit(self, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass


def test_only_the_first_message_of_a_list_is_waited_for() -> None:
    async def main() -> tuple[list[int], list[tuple[int, float]]]:
        svc = IngestService(None, bootstrap="127.0.0.1:1", topic="t", group_id="g",  # type: ignore[arg-type]
                            fmt="json", batch_max=10)  # fmt: skip
        done = threading.Event()
        fake = _FakeConsumer(25, done)
        svc._consumer, svc._loop, svc._fetched = fake, asyncio.get_running_loop(), asyncio.Queue()
        t = threading.Thread(target=svc._fetch_loop, daemon=True)
        t.start()
        sizes: list[int] = []
        async with asyncio.timeout(10):
            while sum(sizes) < 25:
                got = await svc._take(1.0)  # also frees the thread's room for the next list
                if got is not None:
                    sizes.append(len(got))
            while not done.is_set():
                await asyncio.sleep(0.001)  # bounded by the timeout above
        svc._stop_thread.set()
        await asyncio.to_thread(t.join, 5)
        return sizes, fake.calls

    sizes, calls = asyncio.run(main())
    assert sizes == [10, 10, 5]
    # every list: block for one message, then take up to batch_max - 1 without waiting
    assert calls[:6] == [(1, 0.05), (9, 0), (1, 0.05), (9, 0), (1, 0.05), (9, 0)]
    assert all(timeout == 0 for n, timeout in calls if n > 1)
