"""``fraudnet bench gossip``: signal latency and loss across N node processes.

Each node is its own process (a :class:`~fraudnet.adapters.p2p.service.P2PService`
on 127.0.0.(10+i)); together they create ``--rate`` signals/s for ``--duration``
seconds with the default flush interval. Latency is measured per signal from its
creation (``observed_at_us`` carries the exact creation time here) to its arrival
at *every* other node (same host clock). ``loss`` = 1 - delivered / expected,
where expected = signals created x (nodes - 1).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from typing import Any

import click


def _node(
    i: int, n: int, rate: float, duration: float, start_at: float, base_port: int, q: Any
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fraudnet.adapters.p2p.host import peer_id_of
    from fraudnet.adapters.p2p.service import P2PService
    from fraudnet.adapters.p2p.settings import P2PSettings
    from fraudnet.core import crypto
    from fraudnet.core.signals import EpochKey, NetworkKeyring, Signal, SignalPayload

    keys = [Ed25519PrivateKey.from_private_bytes(bytes([j + 1]) * 32) for j in range(n)]
    pubs = [crypto.public_bytes(k) for k in keys]
    addrs = [f"/ip4/127.0.0.{10 + j}/tcp/{base_port + j}" for j in range(n)]
    peers = [f"{addrs[j]}/p2p/{peer_id_of(pubs[j]).to_base58()}" for j in range(n) if j != i]
    settings = P2PSettings.from_mapping(
        {
            "listen": addrs[i],
            "network_id": "bench",
            "members": {f"m{j}": pubs[j].hex() for j in range(n)},
            "network_key_file": "unused",
            "peers": peers,
            "member_rate_per_s": 100.0,
            "member_burst": 200.0,
        },
        "bench",
    )
    lat: list[float] = []
    seen: set[bytes] = set()

    def on_signals(p: SignalPayload) -> None:
        now = time.time() * 1e6
        for s in p.signals:
            if s.pseudonym not in seen:
                seen.add(s.pseudonym)
                lat.append((now - s.observed_at_us) / 1000.0)

    ring = NetworkKeyring([EpochKey(0, 0, b"\x01" * 32)], 0)
    svc = P2PService(settings, keys[i], ring, on_signals)
    svc.start()
    while time.time() < start_at:
        time.sleep(0.01)
    per_node = rate / n
    created = 0
    t0 = time.time()
    while True:
        elapsed = time.time() - t0
        if elapsed >= duration:
            break
        due = int(elapsed * per_node) + 1
        batch = []
        while created < due:
            now_us = int(time.time() * 1e6)
            ps = i.to_bytes(4, "big") + created.to_bytes(8, "big") + b"\x00" * 20
            batch.append(Signal("card", ps, 900, ("bench",), now_us, now_us + 600_000_000))
            created += 1
        if batch:
            svc.publish_nowait(batch)
        time.sleep(0.005)
    # let the last envelopes arrive everywhere (every node runs this same grace period)
    time.sleep(3.0)
    m = svc.metrics()
    svc.stop()
    q.put({"i": i, "created": created, "lat": lat, "envelopes": m["p2p_published_envelopes"],
           "connected": m["p2p_connected_members"]})  # fmt: skip


def run(nodes: int, rate: float, duration: float, warmup: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    base_port = 43000 + (os.getpid() % 400) * 20
    start_at = time.time() + warmup
    procs = [
        ctx.Process(target=_node, args=(i, nodes, rate, duration, start_at, base_port, q))
        for i in range(nodes)
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=warmup + duration + 60) for _ in procs]
    for p in procs:
        p.join(10)
    created = sum(r["created"] for r in results)
    lat = sorted(x for r in results for x in r["lat"])
    expected = created * (nodes - 1)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else float("nan")

    return {
        "nodes": nodes,
        "duration_s": duration,
        "offered_per_s": round(created / duration, 1),
        "envelopes_per_s": round(sum(r["envelopes"] for r in results) / duration, 1),
        "delivered": len(lat),
        "expected": expected,
        "loss": round(1 - len(lat) / expected, 5) if expected else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(lat[-1], 2) if lat else float("nan"),
        "min_connected": min(r["connected"] for r in results),
    }


@click.command("gossip")
@click.option("--nodes", default=5, show_default=True, type=click.IntRange(2, 20))
@click.option("--rate", default=1000.0, show_default=True, help="signals/s created in total")
@click.option("--duration", default=10.0, show_default=True, help="seconds of load")
@click.option("--warmup", default=6.0, show_default=True, help="seconds to form the mesh")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def cli(nodes: int, rate: float, duration: float, warmup: float, as_json: bool) -> None:
    """Latency (creation -> arrival at every other node) and loss of signals over GossipSub."""
    res = run(nodes, rate, duration, warmup)
    if as_json:
        click.echo(json.dumps(res))
    else:
        for k, v in res.items():
            click.echo(f"{k:>16}: {v}")
