"""The HTTP API counts requests per route and status (cached metric children)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from fraudnet.adapters.http.api import build_http_app
from fraudnet.adapters.metrics import NodeMetrics
from fraudnet.adapters.runtime import NodeRuntime
from fraudnet.adapters.storage.dedup import DedupStore
from fraudnet.core.pipeline import NodeCore
from fraudnet.core.scoring import BaselineScorer


class Topics:
    partitions = 1

    async def send_tx_batch(self, value: bytes, partition: int) -> None: ...
    async def send_decisions(self, value: bytes) -> None: ...
    async def send_dead_letters(self, values: Sequence[bytes]) -> None: ...
    async def send_api_tx(self, value: bytes) -> None: ...


def test_requests_are_counted_per_route_and_status(tmp_path: Path) -> None:
    metrics = NodeMetrics()

    async def main() -> None:
        rt = NodeRuntime(NodeCore(BaselineScorer(), b"s" * 32), DedupStore(tmp_path / "d.sqlite"),
                         metrics)  # fmt: skip
        rt.attach(Topics())
        app = build_http_app(rt, token="tok", max_inflight=8)
        async with TestClient(TestServer(app)) as c:
            auth = {"Authorization": "Bearer tok"}
            for i in range(3):
                tx = {"tx_id": f"h{i}", "timestamp": 1_714_564_800, "card": "c1",
                      "terminal_id": "T1", "amount": "1.00"}  # fmt: skip
                assert (await c.post("/v1/decide", json=tx, headers=auth)).status == 200
            assert (await c.post("/v1/decide", json={"tx_id": "x"}, headers=auth)).status == 400
            assert (await c.post("/v1/decide", json={})).status == 401
        rt.dedup.close()

    asyncio.run(main())
    text = metrics.render().decode()
    assert 'route="/v1/decide",status="200"} 3.0' in text
    assert 'route="/v1/decide",status="400"} 1.0' in text
    assert 'route="/v1/decide",status="401"} 1.0' in text
