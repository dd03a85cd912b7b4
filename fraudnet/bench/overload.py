"""``fraudnet bench overload``: a node past its capacity (and the parts ``soak`` shares).

``overload`` (issue 10, item 3):

1. starts a node (``fraudnet node run``, embedded broker, the given model or a
   freshly trained ``rf``) with a small HTTP admission bound
   (``api.max_inflight``, default 32 here) so shedding is visible;
2. measures the node's capacity ``C`` with a max-rate Kafka phase (one
   transaction per message from a separate producer process);
3. offers ``factor x C`` (default 2x) on Kafka for ``--seconds`` while a
   client sends ``POST /v1/decide`` open-loop at ``--http-rate`` and re-sends
   every 503 after the ``Retry-After`` it was given (a well-behaved member);
4. waits (bounded) until every transaction is accounted for, then reconciles:
   every valid Kafka transaction and every HTTP request has exactly one
   decision on the decisions topic, every invalid one a dead letter, nothing
   decided twice, the node's own counters agree, it exits 0 on SIGTERM.

A sampler thread reads the node's RSS (``VmRSS``) and open file descriptors
(``/proc/PID/fd``) every ``--sample-s`` for the whole run; the result reports
them per phase and the least-squares RSS slope during the overload.

Kafka backpressure means the node consumes at its own pace: the backlog sits
in the broker, not in the node's memory. On a real cluster the backlog is
bounded by retention only; the embedded broker drops the oldest records of a
partition beyond ~5 MiB, so here the producer may run at most ``--backlog``
transactions ahead of the decisions (default 40,000, ~2.3 MiB per partition
at ~230 B per message over 4 partitions): beyond that it waits, as a producer
in front of a full broker would. ``producer_window_waits`` says how often.

``fraudnet bench soak`` (:mod:`.soak`) runs the same node (:func:`bench_node`) at
a steady rate for a long time.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .pipeline import Reader, _train_model, _warm_up, pct, run_and_report, stream_phase

__all__ = ["Sampler", "bench_node", "cli_overload", "proc_sample", "run_overload", "slope"]


def proc_sample(pid: int) -> tuple[float, int]:
    """(RSS in MB, open file descriptors) of process ``pid``."""
    rss = float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
            break
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0.0 for fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


class Sampler(threading.Thread):
    """Samples a process's RSS and fd count every ``interval`` seconds, tagged with a phase."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True, name="bench-sampler")
        self.pid = pid
        self.interval = interval
        self.phase = "start"
        self.samples: list[tuple[float, str, float, int]] = []
        self.stop_ev = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop_ev.wait(self.interval):
            try:
                rss, fds = proc_sample(self.pid)
            except OSError:  # the process is gone
                return
            self.samples.append((time.monotonic() - self.t0, self.phase, rss, fds))

    def summary(self, phase: str | None = None, skip_first: float = 0.0) -> dict[str, Any]:
        rows = [s for s in self.samples if phase is None or s[1] == phase]
        if skip_first and rows:
            t_start = rows[0][0] + skip_first * (rows[-1][0] - rows[0][0])
            rows = [s for s in rows if s[0] >= t_start]
        if not rows:
            return {"samples": 0}
        return rss_fd_summary([r[0] for r in rows], [r[2] for r in rows],
                              [float(r[3]) for r in rows])  # fmt: skip


def rss_fd_summary(ts: list[float], rss: list[float], fds: list[float]) -> dict[str, Any]:
    """First/last/max and slope per hour of RSS (MB) and open descriptors (non-empty)."""
    return {
        "samples": len(ts), "seconds": round(ts[-1] - ts[0], 1),
        "rss_mb_first": round(rss[0], 1), "rss_mb_last": round(rss[-1], 1),
        "rss_mb_max": round(max(rss), 1),
        "rss_mb_per_hour": round(slope(ts, rss) * 3600, 2),
        "fds_first": int(fds[0]), "fds_last": int(fds[-1]), "fds_max": int(max(fds)),
        "fds_per_hour": round(slope(ts, fds) * 3600, 2),
    }  # fmt: skip


async def http_retrying(
    url: str, token: str, rate: float, seconds: float, *, prefix: str = "r",
    give_up_s: float = 120.0, concurrency: int = 512,
) -> dict[str, Any]:  # fmt: skip
    """Open-loop ``POST /v1/decide`` at ``rate``; every 503 is re-sent after its Retry-After.

    Returns counts per status, how many 503s carried ``Retry-After``, retries,
    latency of the final (200) answer from the first send, and ``lost`` --
    requests that never got a 200 within ``give_up_s`` of their first send.
    """
    import aiohttp

    from .pipeline_workers import tx_templates

    tpl = tx_templates(5000, seed=29)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status: dict[int, int] = {}
    errors: dict[str, int] = {}
    counts = {"retry_after_missing": 0, "retries": 0, "ok": 0, "lost": 0}
    lat: list[float] = []
    n = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def one(i: int) -> None:
            c, t, m, a, cur, mcc, ch, co = tpl[i % len(tpl)]
            us = time.time_ns() // 1000
            tx_id = f"{prefix}{i}x{us // 1_000_000}s{us % 1_000_000}"
            body = json.dumps({"tx_id": tx_id, "timestamp": us / 1e6, "card": c,
                               "terminal_id": t, "merchant_id": m, "amount": a, "currency": cur,
                               "mcc": mcc, "channel": ch, "country": co})  # fmt: skip
            first = time.perf_counter()
            while time.perf_counter() - first < give_up_s:
                try:
                    async with s.post(f"{url}/v1/decide", data=body, headers=headers) as r:
                        await r.read()
                        code, retry_after = r.status, r.headers.get("Retry-After")
                except (aiohttp.ClientError, OSError, TimeoutError) as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    counts["retries"] += 1
                    await asyncio.sleep(0.2)
                    continue
                status[code] = status.get(code, 0) + 1
                if code == 200:
                    counts["ok"] += 1
                    lat.append((time.perf_counter() - first) * 1000)
                    return
                if code != 503:
                    return  # a 4xx for a valid transaction: counted in status, never retried
                if retry_after is None:
                    counts["retry_after_missing"] += 1
                counts["retries"] += 1
                try:
                    wait = float(retry_after or "1")
                except ValueError:
                    wait = 1.0
                await asyncio.sleep(min(max(wait, 0.05), 5.0))
            counts["lost"] += 1

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
        secs = time.perf_counter() - start
    return {"requests": n, "rate": rate, "seconds": round(secs, 3), "status": status,
            "client_errors": errors, **counts,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}  # fmt: skip


def _node_dir(workdir: Path, max_inflight: int, keys: dict[str, str] | None = None) -> Path:
    """``fraudnet node init`` + the bench's settings; ``keys`` replaces the value of each
    named ``key = value`` line of the default node.toml (e.g. ``{"retention_days": "0.01"}``)."""
    import re

    from fraudnet.testing import run_cli

    node_dir = workdir / "node"
    run_cli("node", "init", str(node_dir), "--member", "bench")
    toml = (node_dir / "node.toml").read_text().replace("# USD = 0.92", "USD = 0.92")
    toml = toml.replace("max_inflight = 256", f"max_inflight = {max_inflight}")
    for key, value in (keys or {}).items():
        toml, n = re.subn(rf"(?m)^{re.escape(key)} = \S+", f"{key} = {value}", toml)
        if n != 1:
            raise RuntimeError(f"bench: node.toml has {n} '{key} = ...' lines, expected 1")
    (node_dir / "node.toml").write_text(toml)
    return node_dir


def _stats(ep: dict[str, Any]) -> dict[str, Any]:
    import requests

    r = requests.get(f"{ep['api']}/v1/stats", timeout=30,
                     headers={"Authorization": f"Bearer {ep['token']}"})  # fmt: skip
    out: dict[str, Any] = r.json()
    return out


def _wait_http_decisions(reader: Reader, prefix: str, ok: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while reader.acked(prefix) < ok and time.monotonic() < deadline:
        time.sleep(0.05)
    return reader.phase(prefix).decided


def _stream_and_http(ep: dict[str, Any], reader: Reader, *, name: str, http_prefix: str,
                     rate: float, seconds: float, backlog: int, http_rate: float,
                     give_up_s: float) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """A Kafka producer phase and, concurrently, the retrying HTTP client."""
    http: dict[str, Any] = {}

    def run_http() -> None:
        load = http_retrying(ep["api"], ep["token"], http_rate, seconds, prefix=http_prefix,
                             give_up_s=give_up_s)  # fmt: skip
        http.update(asyncio.run(load))

    th = threading.Thread(target=run_http, daemon=True, name="bench-http")
    if http_rate > 0:
        th.start()
    kafka = stream_phase(ep, reader, name, rate=rate, seconds=seconds, count=10**9,
                         window=backlog, linger_ms=5)  # fmt: skip
    if http_rate > 0:
        th.join(seconds + give_up_s + 60)
        if th.is_alive():
            raise RuntimeError("bench: the HTTP client did not finish")
        http["decisions_on_topic"] = _wait_http_decisions(reader, http_prefix, http["ok"])
    return kafka, http


def _reconcile(stats: dict[str, Any], phases: list[dict[str, Any]], https: list[dict[str, Any]],
               warm: dict[str, int]) -> bool:  # fmt: skip
    dups = sum(p["sent"]["dup"] for p in phases)
    decided = sum(p["decided"] for p in phases) + sum(h.get("ok", 0) for h in https)
    dead = sum(p["dead_letters"] for p in phases)
    node_ok = (stats["received"] == stats["decided"] + stats["dead_lettered"] + stats["duplicates"]
               and stats["duplicates"] == dups
               and stats["decided"] == decided + warm["decided"]
               and stats["dead_lettered"] == dead + warm["invalid"])  # fmt: skip
    http_ok = all(h.get("lost", 0) == 0 and h.get("decisions_on_topic") == h.get("ok")
                  == h.get("requests") for h in https)  # fmt: skip
    return bool(node_ok and http_ok and all(p["reconciled"] for p in phases))


@dataclass
class NodeRun:
    """A benchmark node with its sampler and decisions reader; filled in as the run ends."""

    ep: dict[str, Any]
    sampler: Sampler
    reader: Reader
    warm: dict[str, int]
    stats: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


@contextmanager
def bench_node(model: Path, workdir: Path, max_inflight: int, sample_s: float,
               keys: dict[str, str] | None = None) -> Iterator[NodeRun]:  # fmt: skip
    """Start a node, its RSS/fd sampler and a decisions reader; stop all three afterwards.

    ``keys``: node.toml values to set (see :func:`_node_dir`). On leaving, ``stats``
    holds the node's ``/v1/stats`` and ``exit_code`` its exit status after SIGTERM.
    """
    from fraudnet.testing import running_node

    node_dir = _node_dir(workdir, max_inflight, keys)
    with running_node(node_dir, "--model", str(model.resolve()), "--log-level", "warning") as ep:
        sampler = Sampler(ep["pid"], sample_s)
        sampler.start()
        warm = _warm_up(ep)
        reader = Reader(ep["broker"], ep["topics"]["decisions"], ep["topics"]["dead_letters"])
        reader.start()
        run = NodeRun(ep, sampler, reader, warm)
        try:
            yield run
        finally:
            sampler.phase = "after"
            reader.stop_ev.set()
            reader.join(60)
        run.stats = _stats(ep)
        if reader.is_alive():
            raise RuntimeError("bench reader did not stop within 60 s")
        proc = ep["proc"]
    sampler.stop_ev.set()
    sampler.join(10)
    run.exit_code = proc.returncode


def run_overload(*, model: Path | None, capacity_seconds: float, factor: float, seconds: float,
                 http_rate: float, max_inflight: int, backlog: int, sample_s: float,
                 workdir: Path) -> dict[str, Any]:  # fmt: skip
    load0 = os.getloadavg()
    model = model or _train_model(workdir)
    with bench_node(model, workdir, max_inflight, sample_s) as run:
        run.sampler.phase = "capacity"
        cap = stream_phase(run.ep, run.reader, "c", rate=0, seconds=capacity_seconds,
                           count=10**9, window=backlog, linger_ms=5)  # fmt: skip
        capacity = float(cap["tx_per_s"])
        run.sampler.phase = "overload"
        over, http = _stream_and_http(run.ep, run.reader, name="o", http_prefix="r",
                                      rate=factor * capacity, seconds=seconds, backlog=backlog,
                                      http_rate=http_rate, give_up_s=120.0)  # fmt: skip
    sampler = run.sampler
    sent_rate = over["sent"]["sent"] / max(1e-9, over["sent"]["seconds"])
    return {
        "capacity_tx_per_s": capacity, "factor": factor,
        "offered_tx_per_s": round(factor * capacity, 1),
        "producer_sent_per_s": round(sent_rate, 1),
        "producer_window_waits": over["sent"]["window_waits"], "backlog_bound": backlog,
        "overload_seconds": over["seconds"], "overload_decided_tx_per_s": over["tx_per_s"],
        "transactions": cap["decided"] + over["decided"] + http.get("ok", 0),
        "http": http, "http_503": http.get("status", {}).get(503, 0),
        "http_max_inflight": max_inflight,
        "memory": {"capacity": sampler.summary("capacity"),
                   "overload": sampler.summary("overload"),
                   "overload_second_half": sampler.summary("overload", skip_first=0.5)},
        "peak_rss_mb": max((s[2] for s in sampler.samples), default=float("nan")),
        "reconciled": _reconcile(run.stats, [cap, over], [http] if http else [], run.warm)
        and run.exit_code == 0,
        "node_exit_code": run.exit_code, "node_stats": run.stats,
        "phases": {"capacity": cap, "overload": over},
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }  # fmt: skip


_model_opt = click.option(
    "--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="Model file (default: train an rf model on generated data first).")  # fmt: skip
_dir_opt = click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path),
                        default=None)  # fmt: skip


@click.command("overload")
@_model_opt
@click.option(
    "--capacity-seconds",
    default=15.0,
    show_default=True,
    help="Max-rate phase that measures the node's capacity.",
)
@click.option("--factor", default=2.0, show_default=True, help="Offered rate / capacity.")
@click.option("--seconds", default=30.0, show_default=True, help="Overload phase length.")
@click.option(
    "--http-rate",
    default=300.0,
    show_default=True,
    help="POST /v1/decide req/s during the overload (503s are retried).",
)
@click.option(
    "--max-inflight",
    default=32,
    show_default=True,
    help="The node's api.max_inflight for this run.",
)
@click.option(
    "--backlog",
    default=40_000,
    show_default=True,
    help="Most transactions the producer runs ahead (embedded-broker retention).",
)
@click.option("--sample-s", default=0.5, show_default=True)
@_dir_opt
@click.option("--json", "as_json", is_flag=True)
def cli_overload(model: Path | None, capacity_seconds: float, factor: float, seconds: float,
                 http_rate: float, max_inflight: int, backlog: int, sample_s: float,
                 workdir: Path | None, as_json: bool) -> None:  # fmt: skip
    """A node at FACTOR x its measured capacity: 503 + Retry-After, bounded memory, nothing lost."""
    run_and_report(run_overload, workdir, as_json,
         ("capacity_tx_per_s", "offered_tx_per_s", "producer_sent_per_s",
          "overload_decided_tx_per_s", "http_503", "peak_rss_mb", "transactions", "reconciled"),
         "overload", model=model, capacity_seconds=capacity_seconds, factor=factor,
         seconds=seconds, http_rate=http_rate, max_inflight=max_inflight, backlog=backlog,
         sample_s=sample_s)  # fmt: skip


cli = cli_overload
