"""The demo driver: feeds a running node like a member's systems would, and checks it.

It produces generated transactions to the node's ``tx-in`` topic with a
plain confluent-kafka producer (an external Kafka client, one transaction
per message), sends a share through ``POST /v1/decide``, slips in some
invalid records, and reads the ``decisions`` and ``dead-letters`` topics
back to prove that every transaction got exactly one decision or one
dead-letter record. The producer never runs more than ``window``
transactions ahead of the decisions it has seen (the embedded broker drops
old records beyond ~5 MiB per partition).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer
from mode import Service

from fraudnet.core.records import decode_decisions
from fraudnet.replay.generator import GeneratorConfig, generate

from .node import Node

__all__ = ["DemoDriver", "DemoSummary"]


@dataclass
class DemoSummary:
    transactions: int = 0
    sent_stream: int = 0
    sent_api: int = 0
    invalid_sent: int = 0
    decided: int = 0
    decided_twice: int = 0
    dead_letters: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    e2e_ms: list[float] = field(default_factory=list)
    node_ms: list[float] = field(default_factory=list)
    api_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    frauds: int = 0
    frauds_flagged: int = 0
    flagged: int = 0
    error: str = ""

    @staticmethod
    def pct(xs: list[float], q: float) -> float:
        if not xs:
            return float("nan")
        s = sorted(xs)
        return s[min(len(s) - 1, int(q / 100 * len(s)))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "transactions": self.transactions,
            "decided": self.decided,
            "dead_letters": self.dead_letters,
            "decided_twice": self.decided_twice,
            "invalid_sent": self.invalid_sent,
            "via_kafka": self.sent_stream,
            "via_api": self.sent_api,
            "seconds": round(self.seconds, 3),
            "tx_per_s": round((self.decided + self.dead_letters) / self.seconds, 1)
            if self.seconds
            else 0.0,
            "outcomes": dict(self.outcomes),
            "e2e_p50_ms": round(self.pct(self.e2e_ms, 50), 2),
            "e2e_p99_ms": round(self.pct(self.e2e_ms, 99), 2),
            "node_p50_ms": round(self.pct(self.node_ms, 50), 3),
            "node_p99_ms": round(self.pct(self.node_ms, 99), 3),
            "api_p50_ms": round(self.pct(self.api_ms, 50), 2),
            "api_p99_ms": round(self.pct(self.api_ms, 99), 2),
            "frauds": self.frauds,
            "frauds_flagged": self.frauds_flagged,
            "flagged": self.flagged,
            "reconciled": self.decided + self.dead_letters == self.transactions
            and self.decided_twice == 0,
        }


_INVALID = (
    b'{"tx_id": "bad-%d", "timestamp": "yesterday", "card": "c", "terminal_id": "t", '
    b'"amount": "1"}',
    b'{"tx_id": "bad-%d", "card": "4999000000000001", "amount": "-5"}',
    b"not json at all %d",
)


class DemoDriver(Service):
    def __init__(
        self,
        node: Node,
        *,
        transactions: int,
        seed: int = 0,
        api_every: int = 50,
        invalid_every: int = 500,
        window: int = 2000,
        timeout_s: float = 600.0,
        progress: Any = None,
        **kw: Any,
    ) -> None:
        self.node = node
        self.total = transactions
        self.seed = seed
        self.api_every = api_every
        self.invalid_every = invalid_every
        self.window = window
        self.timeout_s = timeout_s
        self.progress = progress
        self.summary = DemoSummary()
        self._sent_at: dict[str, float] = {}
        self._labels: dict[str, int] = {}
        self._seen: set[str] = set()
        self._api_ids: set[str] = set()
        super().__init__(**kw)

    async def on_started(self) -> None:
        self.add_future(self._main())

    async def _main(self) -> None:
        try:
            await asyncio.wait_for(self._drive(), self.timeout_s)
        except TimeoutError:
            self.summary.error = f"timed out after {self.timeout_s:.0f} s"
        except Exception as e:
            self.summary.error = repr(e)
        worker = self.node.app.fraudnet_worker
        self._stopping = asyncio.ensure_future(worker.stop())

    async def _drive(self) -> None:
        import aiohttp

        node = self.node
        topics = node.app.fraudnet_topics
        s = self.summary
        consumer = AIOKafkaConsumer(
            topics.decisions,
            topics.dead_letters,
            bootstrap_servers=node.bootstrap,
            group_id=f"demo-reader-{time.time_ns()}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,
        )
        await consumer.start()
        producer = Producer({"bootstrap.servers": node.bootstrap, "linger.ms": 5, "log_level": 3})
        reader = asyncio.ensure_future(self._read(consumer, topics.decisions))
        token = (node.settings.node_dir / "api.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        t0 = time.perf_counter()
        api_tasks: list[asyncio.Task[None]] = []
        try:
            async with aiohttp.ClientSession() as http:
                gen = generate(
                    GeneratorConfig(seed=self.seed, days=max(7, int(self.total / 1500) + 2)),
                    limit=self.total,
                )
                for i, rec in enumerate(gen):
                    s.transactions += 1
                    while s.transactions - (s.decided + s.dead_letters) > self.window:
                        await self._progressed.wait()
                        self._progressed.clear()
                    if self.invalid_every and i % self.invalid_every == self.invalid_every - 1:
                        payload = _INVALID[(i // self.invalid_every) % len(_INVALID)] % i
                        producer.produce(topics.tx_in, payload)
                        s.invalid_sent += 1
                        continue
                    self._labels[rec["tx_id"]] = int(rec["label"])
                    if self.api_every and i % self.api_every == 0:
                        self._api_ids.add(rec["tx_id"])
                        api_tasks.append(asyncio.ensure_future(self._decide(http, rec, headers)))
                        s.sent_api += 1
                    else:
                        self._sent_at[rec["tx_id"]] = time.perf_counter()
                        value = json.dumps(rec).encode()
                        producer.produce(topics.tx_in, value, key=rec["card"][-8:])
                        s.sent_stream += 1
                    if s.sent_stream == 1 and s.transactions == i + 1 and i < self.api_every:
                        # Warm-up: wait for the first Kafka transaction's decision (the node's
                        # consumers joining their groups takes seconds); timing and latency
                        # figures start from there, so they describe the steady state.
                        producer.flush(10)
                        await asyncio.gather(*api_tasks)
                        while s.decided + s.dead_letters < s.transactions:
                            await self._progressed.wait()
                            self._progressed.clear()
                        t0 = time.perf_counter()
                        s.e2e_ms.clear()
                        s.node_ms.clear()
                        s.api_ms.clear()
                    if i % 256 == 0:
                        producer.poll(0)
                        await asyncio.sleep(0)  # let the node run: the producer is in-process
                producer.flush(10)
                await asyncio.gather(*api_tasks)
                while s.decided + s.dead_letters < s.transactions:
                    await self._progressed.wait()
                    self._progressed.clear()
        finally:
            s.seconds = time.perf_counter() - t0
            reader.cancel()
            await consumer.stop()

    @property
    def _progressed(self) -> asyncio.Event:
        ev: asyncio.Event | None = getattr(self, "_ev", None)
        if ev is None:
            ev = self._ev = asyncio.Event()
        return ev

    def _tick(self) -> None:
        self._progressed.set()
        if self.progress is not None:
            self.progress(self.summary)

    def _count(self, tx_id: str, outcome: str, score: float) -> None:
        s = self.summary
        if tx_id in self._seen:
            s.decided_twice += 1
            return
        self._seen.add(tx_id)
        s.decided += 1
        s.outcomes[outcome] += 1
        label = self._labels.get(tx_id, 0)
        flagged = outcome != "allow"
        s.frauds += label
        s.flagged += flagged
        s.frauds_flagged += label and flagged

    async def _decide(self, http: Any, rec: dict[str, Any], headers: dict[str, str]) -> None:
        t = time.perf_counter()
        async with http.post(f"{self.node.http.url}/v1/decide", json=rec, headers=headers) as r:
            body = await r.json()
        self.summary.api_ms.append((time.perf_counter() - t) * 1000)
        if r.status == 200:
            self._count(rec["tx_id"], body["outcome"], body["score"])
        else:
            self.summary.dead_letters += 1
        self._tick()

    async def _read(self, consumer: AIOKafkaConsumer, decisions_topic: str) -> None:
        s = self.summary
        while True:
            data = await consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.perf_counter()
            for tp, msgs in data.items():
                for m in msgs:
                    if tp.topic == decisions_topic:
                        for d in decode_decisions(m.value):
                            if d.tx_id in self._api_ids:
                                continue  # counted from its HTTP answer
                            sent = self._sent_at.pop(d.tx_id, None)
                            if sent is not None:
                                s.e2e_ms.append((now - sent) * 1000)
                                s.node_ms.append(d.latency_us / 1000)
                            self._count(d.tx_id, d.outcome, d.score)
                    else:
                        s.dead_letters += 1
            if data:
                self._tick()
