"""POST /v1/decide groups: a request that arrives while a group awaits its fsync is decided too.

Regression: the last requests of a burst used to wait forever when they arrived
while the previous group was in its audit append (found by the demo in CI).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from fraudnet.adapters.metrics import NodeMetrics
from fraudnet.adapters.runtime import NodeRuntime
from fraudnet.adapters.storage.dedup import DedupStore
from fraudnet.core.pipeline import NodeCore
from fraudnet.core.records import Decision
from fraudnet.core.scoring import BaselineScorer


class _Topics:
    partitions = 4

    async def send_tx_batch(self, value: bytes, partition: int) -> None:
        raise AssertionError("not used")

    async def send_decisions(self, value: bytes) -> None:
        pass

    async def send_dead_letters(self, values: Sequence[bytes]) -> None:
        pass

    async def send_api_tx(self, value: bytes) -> None:
        pass


def _tx(i: int) -> dict[str, object]:
    return {"tx_id": f"api-{i}", "timestamp": 1_714_564_800 + i, "card": f"c{i}",
            "terminal_id": "T1", "amount": "12.50"}  # fmt: skip


def test_requests_arriving_during_a_group_fsync_are_decided(tmp_path: Path) -> None:
    async def main() -> list[str]:
        rt = NodeRuntime(NodeCore(BaselineScorer(), b"s" * 32), DedupStore(tmp_path / "d.sqlite"),
                         NodeMetrics())  # fmt: skip
        rt.attach(_Topics())
        in_fsync = asyncio.Event()
        release = asyncio.Event()

        async def slow_audit(decisions: Sequence[Decision], path: str) -> None:
            in_fsync.set()
            await release.wait()  # the first group's "fsync" takes a while

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
