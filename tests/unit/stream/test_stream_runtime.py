"""NodeRuntime: the API path's decisions always reach the decisions topic."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from fraudnet.adapters.metrics import NodeMetrics
from fraudnet.adapters.runtime import NodeRuntime
from fraudnet.adapters.storage.dedup import DedupStore
from fraudnet.core.pipeline import NodeCore
from fraudnet.core.records import Decision, decode_decisions
from fraudnet.core.scoring import BaselineScorer


class BlockingTopics:
    """The first decisions send blocks until released (a slow broker)."""

    partitions = 4

    def __init__(self) -> None:
        self.decisions: list[str] = []
        self.first_send_started = asyncio.Event()
        self.release = asyncio.Event()

    async def send_tx_batch(self, value: bytes, partition: int) -> None:
        raise AssertionError("not used")

    async def send_decisions(self, value: bytes) -> None:
        if not self.first_send_started.is_set():
            self.first_send_started.set()
            await self.release.wait()
        self.decisions += [d.tx_id for d in decode_decisions(value)]

    async def send_dead_letters(self, values: Sequence[bytes]) -> None:
        pass

    async def send_api_tx(self, value: bytes) -> None:
        pass


def _tx(i: int) -> dict[str, object]:
    return {"tx_id": f"api-{i}", "timestamp": 1_714_564_800 + i, "card": f"c{i}",
            "terminal_id": "T1", "amount": "12.50"}  # fmt: skip


def test_decisions_made_during_a_slow_flush_are_published(tmp_path: Path) -> None:
    async def main() -> list[str]:
        rt = NodeRuntime(NodeCore(BaselineScorer(), b"s" * 32), DedupStore(tmp_path / "d.sqlite"),
                         NodeMetrics())  # fmt: skip
        topics = BlockingTopics()
        rt.attach(topics)
        assert (await rt.decide_now(_tx(1), source="t", arrival=1)).decision is not None
        await asyncio.wait_for(topics.first_send_started.wait(), 5)
        # decided while the first flush is stuck in its send: no new flush task starts
        for i in range(2, 5):
            assert (await rt.decide_now(_tx(i), source="t", arrival=1)).decision is not None
        topics.release.set()
        async with asyncio.timeout(5):
            while len(topics.decisions) < 4:
                await asyncio.sleep(0)  # yield to the flush task (bounded by the timeout)
        rt.dedup.close()
        return topics.decisions

    assert asyncio.run(main()) == ["api-1", "api-2", "api-3", "api-4"]


def test_metrics_count_decisions_per_outcome(tmp_path: Path) -> None:
    async def main() -> NodeRuntime:
        rt = NodeRuntime(NodeCore(BaselineScorer(), b"s" * 32), DedupStore(tmp_path / "d.sqlite"),
                         NodeMetrics())  # fmt: skip
        topics = BlockingTopics()
        topics.release.set()
        rt.attach(topics)
        for i in range(10):
            await rt.decide_now(_tx(i), source="t", arrival=1)
        await rt.flush_api()
        return rt

    rt = asyncio.run(main())
    text = rt.metrics.render().decode()
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fraudnet_decisions_total{")
    )
    assert total == 10
    assert 'fraudnet_decision_latency_seconds_count{path="api"} 10.0' in text
    assert rt.core.counters.reconciles()


def test_concurrent_api_requests_are_decided_once_each_in_groups(tmp_path: Path) -> None:
    async def main() -> tuple[list[object], NodeRuntime, list[str]]:
        rt = NodeRuntime(NodeCore(BaselineScorer(), b"s" * 32), DedupStore(tmp_path / "d.sqlite"),
                         NodeMetrics())  # fmt: skip
        topics = BlockingTopics()
        topics.release.set()
        rt.attach(topics)
        calls = [rt.decide_now(_tx(i % 40), source="t", arrival=1) for i in range(50)]
        res = await asyncio.gather(*calls)  # ids 0..9 are sent twice in the same group
        again = await rt.decide_now(_tx(3), source="t", arrival=1)  # after it is durable
        await rt.flush_api()
        await rt.recorded()  # the de-dup rows are written in batches after the answers
        return [*res, again], rt, topics.decisions

    res, rt, published = asyncio.run(main())
    decided = [r.decision.tx_id for r in res if r.decision is not None]  # type: ignore[attr-defined]
    dups = [r for r in res if r.decision is None]  # type: ignore[attr-defined]
    assert sorted(decided) == sorted(f"api-{i}" for i in range(40))
    assert len(dups) == 11 and all(r.duplicate_of is not None for r in dups)  # type: ignore[attr-defined]
    assert sorted(published) == sorted(decided)
    c = rt.core.counters
    assert (c.received, c.decided, c.duplicates) == (51, 40, 11) and c.reconciles()
    assert rt.dedup.count() == 40


def test_requests_arriving_during_a_group_fsync_are_decided(tmp_path: Path) -> None:
    """Regression: the last requests of a burst, arriving while the previous group awaited
    its audit fsync, used to wait forever (found by the demo in a clean-clone CI run)."""

    async def main() -> list[str]:
        rt = NodeRuntime(NodeCore(BaselineScorer(), b"s" * 32), DedupStore(tmp_path / "d.sqlite"),
                         NodeMetrics())  # fmt: skip
        topics = BlockingTopics()
        topics.release.set()  # the broker is fast here; the audit log is slow
        rt.attach(topics)
        in_fsync, release = asyncio.Event(), asyncio.Event()

        async def slow_audit(decisions: Sequence[Decision], path: str) -> None:
            in_fsync.set()
            await release.wait()

        rt.decision_hooks.append(slow_audit)
        first = asyncio.ensure_future(rt.decide_now(_tx(1), source="t", arrival=1))
        await asyncio.wait_for(in_fsync.wait(), 5)
        later = [asyncio.ensure_future(rt.decide_now(_tx(i), source="t", arrival=1))
                 for i in range(2, 6)]  # fmt: skip
        await asyncio.sleep(0)  # let them queue behind the running group
        release.set()
        results = await asyncio.wait_for(asyncio.gather(first, *later), 5)
        return [r.decision.tx_id for r in results if r.decision is not None]

    assert asyncio.run(main()) == [f"api-{i}" for i in range(1, 6)]


def test_hooks_run_in_the_deciding_step_in_decision_order(tmp_path: Path) -> None:
    """The audit hook is called when a group is decided, before any completion task
    runs: groups decided while an earlier group's hook is still pending are appended
    after it, in order."""

    async def main() -> tuple[list[list[str]], list[str]]:
        rt = NodeRuntime(NodeCore(BaselineScorer(), b"s" * 32), DedupStore(tmp_path / "d.sqlite"),
                         NodeMetrics())  # fmt: skip
        topics = BlockingTopics()
        topics.release.set()
        rt.attach(topics)
        calls: list[list[str]] = []
        release = asyncio.get_running_loop().create_future()

        def hook(decisions: Sequence[Decision], path: str) -> asyncio.Future[None]:
            calls.append([d.tx_id for d in decisions])  # runs now, not when awaited
            return release

        rt.decision_hooks.append(hook)
        first = asyncio.ensure_future(rt.decide_now(_tx(1), source="t", arrival=1))
        async with asyncio.timeout(5):
            while not calls:
                await asyncio.sleep(0)
        later = [asyncio.ensure_future(rt.decide_now(_tx(i), source="t", arrival=1))
                 for i in (2, 3)]  # fmt: skip
        async with asyncio.timeout(5):
            while len(calls) < 2:  # decided and appended while the first still waits
                await asyncio.sleep(0)
        assert not first.done()
        release.set_result(None)
        res = await asyncio.wait_for(asyncio.gather(first, *later), 5)
        return calls, [r.decision.tx_id for r in res if r.decision is not None]

    calls, answered = asyncio.run(main())
    assert calls == [["api-1"], ["api-2", "api-3"]]
    assert answered == ["api-1", "api-2", "api-3"]


def test_a_hook_that_raises_aborts_the_acknowledgement(tmp_path: Path) -> None:
    """A failing durable write (raised by the hook when called) answers the caller with
    the error; nothing is recorded as decided and nothing is published."""

    async def main() -> tuple[BaseException | None, NodeRuntime, list[str]]:
        rt = NodeRuntime(NodeCore(BaselineScorer(), b"s" * 32), DedupStore(tmp_path / "d.sqlite"),
                         NodeMetrics())  # fmt: skip
        topics = BlockingTopics()
        topics.release.set()
        rt.attach(topics)

        def broken(decisions: Sequence[Decision], path: str) -> asyncio.Future[None]:
            raise OSError("disk full")

        rt.decision_hooks.append(broken)
        err: BaseException | None = None
        try:
            await asyncio.wait_for(rt.decide_now(_tx(1), source="t", arrival=1), 5)
        except OSError as e:
            err = e
        await rt.flush_api()
        return err, rt, topics.decisions

    err, rt, published = asyncio.run(main())
    assert isinstance(err, OSError) and "disk full" in str(err)
    assert rt.dedup.count() == 0 and published == []
