"""``fraudnet bench hop``: the latency floor of one broker hop on the embedded broker.

One message at a time (ping-pong): produce with aiokafka (acks=1, no linger),
consume with an aiokafka consumer that is already assigned and polling, and
time send -> receipt. Repeated for each ``fetch_max_wait_ms`` given, because
the mock broker holds an empty fetch for its full wait: that wait is a floor
under a hop's latency when traffic is light.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import click

__all__ = ["cli", "measure_hop"]


async def _hop(bootstrap: str, topic: str, n: int, wait_ms: int) -> list[float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await prod.start()
    await prod.send_and_wait(topic, b"warm", partition=0)
    cons = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=wait_ms,
                            enable_auto_commit=False)  # fmt: skip
    await cons.start()
    tp = TopicPartition(topic, 0)
    cons.assign([tp])
    await cons.seek_to_end(tp)
    out: list[float] = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            await prod.send(topic, str(i).encode(), partition=0)
            got = False
            while not got:
                data = await cons.getmany(tp, timeout_ms=2000)
                got = any(m.value == str(i).encode() for m in data.get(tp, []))
            out.append((time.perf_counter() - t0) * 1000)
    finally:
        await cons.stop()
        await prod.stop()
    return out


def measure_hop(n: int = 300, waits: tuple[int, ...] = (10, 100, 1500)) -> dict[str, Any]:
    from fraudnet.adapters.stream.broker import EmbeddedBroker

    res: dict[str, Any] = {"messages": n, "runs": []}
    with EmbeddedBroker() as broker:
        for w in waits:
            lat = asyncio.run(_hop(broker.bootstrap, f"hop-{w}", n, w))
            lat.sort()
            res["runs"].append(
                {
                    "fetch_max_wait_ms": w,
                    "p50_ms": round(statistics.median(lat), 3),
                    "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3),
                    "min_ms": round(lat[0], 3),
                }
            )
    return res


@click.command()
@click.option("--messages", "-n", default=300, show_default=True)
@click.option(
    "--wait", "waits", multiple=True, type=int, default=(10, 100, 1500), show_default=True
)
@click.option("--json", "as_json", is_flag=True)
def cli(messages: int, waits: tuple[int, ...], as_json: bool) -> None:
    """Latency floor of one broker hop (produce -> consume) on the embedded broker."""
    res = measure_hop(messages, tuple(waits))
    if as_json:
        click.echo(json.dumps(res))
    else:
        for r in res["runs"]:
            click.echo(
                f"fetch_max_wait_ms={r['fetch_max_wait_ms']:>5}: p50 {r['p50_ms']} ms, "
                f"p99 {r['p99_ms']} ms, min {r['min_ms']} ms"
            )
