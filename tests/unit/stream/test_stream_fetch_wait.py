"""The Faust consumer's fetch wait backs off when idle and snaps back on data (ADR 0505)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudnet.adapters.stream.transport import FetchWait, adapt_fetch_wait


@given(st.lists(st.booleans(), max_size=300), st.integers(1, 5), st.integers(1, 50),
       st.integers(1, 60))  # fmt: skip
def test_the_wait_follows_the_run_of_empty_fetches(
    fetches: list[bool], busy: int, idle: int, after: int
) -> None:
    p = FetchWait(busy, idle, after)
    empty_run = 0
    for got in fetches:
        wait = p.after_fetch(got)
        empty_run = 0 if got else empty_run + 1
        # busy until `after` empty fetches in a row, then idle (never below busy)
        assert wait == (max(idle, busy) if empty_run >= after else busy)


class _FakeFetcher:
    """The two attributes of aiokafka's Fetcher that adapt_fetch_wait uses."""

    def __init__(self) -> None:
        self._fetch_max_wait_ms = 1

    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> bool:
        return bool(request)  # "request" stands for: did this fetch bring data


def test_the_fetcher_builds_its_next_request_with_the_policy_wait() -> None:
    f = _FakeFetcher()
    adapt_fetch_wait(f, FetchWait(1, 5, idle_after=3))

    async def run(results: list[bool]) -> list[int]:
        waits = []
        for got in results:
            assert await f._proc_fetch_request(None, 0, got) is got  # result passed through
            waits.append(f._fetch_max_wait_ms)
        return waits

    assert asyncio.run(run([True, False, False, False, False, True, False])) == [
        1, 1, 1, 5, 5, 1, 1,
    ]  # fmt: skip


def test_a_changed_fetcher_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match=r"update transport\.py"):
        adapt_fetch_wait(object(), FetchWait(1, 5))
