"""``fraudnet bench pipeline``: the whole node under a member's traffic, reconciled.

What runs (every part a separate process except the reader and the HTTP load):

1. ceiling: ``pipeline_workers ceiling`` -- plain confluent-kafka consume +
   ``json.loads`` of the same messages on an embedded broker (msgs/s);
2. floor: ``pipeline_workers floor`` -- a naive one-event-at-a-time Faust
   agent with the same scorer (tx/s);
3. the node: ``fraudnet node run`` (embedded broker, Faust, features, model,
   decisions topic, audit log), with a trained model;
4. throughput phase ``t``: a producer process sends one JSON transaction per
   message to ``tx-in`` as fast as the node keeps up (bounded window);
5. latency phase ``l``: the same at a fixed offered rate (default 5,000 tx/s), the
   producer lingering ``--latency-linger-ms`` (1 ms, docs/operations.md); then phase
   ``d``, the same again at ``--reference-linger-ms`` (librdkafka's default, 5 ms);
6. HTTP phase ``h``: ``POST /v1/decide`` open-loop at a fixed request rate.

A reader thread consumes the ``decisions`` and ``dead-letters`` topics for
the whole run; end-to-end latency is the reader's receipt time minus the
send time the producer wrote into the ``tx_id``. Reconciliation: per phase,
decided == valid transactions sent, dead letters == invalid sent, no id
decided twice; node-wide, ``received == decided + dead_lettered +
duplicates`` and the node's duplicates == re-sends; the node exits 0 on
SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

__all__ = ["cli", "run_bench"]

_WORKERS = [sys.executable, "-m", "fraudnet.bench.pipeline_workers"]
_BAD = re.compile(rb"bad-([a-z])-")


@dataclass
class PhaseStats:
    decided: int = 0
    decided_twice: int = 0
    dead: int = 0
    lat_ms: array[float] = field(default_factory=lambda: array("d"))
    #: the node's own part: ingest arrival -> decision (Decision.latency_us)
    node_ms: array[float] = field(default_factory=lambda: array("d"))
    #: decision -> the reader (audit fsync, decisions send, broker, fetch)
    out_ms: array[float] = field(default_factory=lambda: array("d"))
    seen: bytearray = field(default_factory=bytearray)
    first_us: int = 0
    last_us: int = 0

    def mark(self, seq: int) -> bool:
        if seq >= len(self.seen):
            self.seen.extend(bytes(max(seq + 1 - len(self.seen), 65536)))
        if self.seen[seq]:
            self.decided_twice += 1
            return False
        self.seen[seq] = 1
        return True


class Reader(threading.Thread):
    """Consumes decisions + dead letters for the whole run (confluent, own thread)."""

    def __init__(self, bootstrap: str, decisions: str, dead: str) -> None:
        super().__init__(daemon=True, name="bench-reader")
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.decisions = decisions
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time_ns()}",
                           "enable.auto.commit": False, "log_level": 3,
                           "fetch.wait.max.ms": 1})  # fmt: skip
        # Manual assignment (no group join delay); the topics exist: see _warm_up.
        md = self.c.list_topics(timeout=10)
        tps = []
        for t in (decisions, dead):
            if t not in md.topics:
                raise RuntimeError(f"bench reader: topic {t} does not exist")
            tps += [TopicPartition(t, p, OFFSET_BEGINNING) for p in md.topics[t].partitions]
        self.c.assign(tps)
        self.phases: dict[str, PhaseStats] = {}
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.errors: list[str] = []

    def phase(self, name: str) -> PhaseStats:
        ps = self.phases.get(name)
        if ps is None:
            ps = self.phases[name] = PhaseStats()
        return ps

    def run(self) -> None:
        import msgpack

        while not self.stop_ev.is_set():
            # first message, then what is queued: consume(n, t) would wait for n or t
            batch = self.c.consume(num_messages=1, timeout=0.05)
            if batch:
                batch += self.c.consume(num_messages=1999, timeout=0)
            now_us = time.time_ns() // 1000
            with self.lock:
                for m in batch:
                    if m.error() is not None:
                        self.errors.append(str(m.error()))
                        continue
                    if m.topic() != self.decisions:
                        g = _BAD.search(m.value() or b"")
                        self.phase(g.group(1).decode() if g else "?").dead += 1
                        continue
                    for d in msgpack.unpackb(m.value(), raw=False):
                        tid = str(d["tx_id"])
                        seq, _, rest = tid[1:].partition("x")
                        secs, _, frac = rest.partition("s")
                        sent_us = int(secs) * 1_000_000 + int(frac)
                        ps = self.phase(tid[0])
                        if not ps.mark(int(seq)):
                            continue
                        ps.decided += 1
                        ps.lat_ms.append((now_us - sent_us) / 1000)
                        ps.node_ms.append(int(d["latency_us"]) / 1000)
                        ps.out_ms.append((now_us - int(d["decided_at_us"])) / 1000)
                        ps.first_us = ps.first_us or now_us
                        ps.last_us = now_us
        self.c.close()

    def acked(self, name: str) -> int:
        with self.lock:
            ps = self.phase(name)
            return ps.decided + ps.dead


def pct(xs: Any, q: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q / 100 * len(s)))], 3) if s else float("nan")


def _worker(*args: str, timeout: float) -> dict[str, Any]:
    p = subprocess.run([*_WORKERS, *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)  # fmt: skip
    if p.returncode != 0:
        raise RuntimeError(f"pipeline worker {args[0]} failed: {p.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


#: the latency phase's producer linger: what docs/operations.md recommends to a member whose
#: producer sits in the authorisation path. ADR 0504 had to use librdkafka's default (5 ms):
#: with 1 ms the embedded broker's partitions filled with thousands of small message sets and
#: every fetch walked them; since the node deletes consumed tx-in records (ADR 0506) a 1 ms
#: producer runs for minutes without that slowdown.
LATENCY_PRODUCER_LINGER_MS = 1.0
#: a second latency phase, same rate and length, at librdkafka's default linger (0 = none):
#: the number for a member that keeps the default, reported next to the headline
REFERENCE_PRODUCER_LINGER_MS = 5.0


def stream_phase(ep: dict[str, Any], reader: Reader, name: str, *, rate: float, seconds: float,
                 count: int, window: int, linger_ms: float) -> dict[str, Any]:  # fmt: skip
    """Run one producer process and wait (bounded) until all its traffic is accounted for."""
    args = [*_WORKERS, "producer", "--bootstrap", ep["broker"], "--topic", ep["topics"]["tx_in"],
            "--phase", name, "--rate", str(rate), "--seconds", str(seconds), "--count", str(count),
            "--window", str(window), "--linger-ms", str(linger_ms)]  # fmt: skip
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    t0 = time.time_ns() // 1000
    node = ep["proc"]
    while proc.poll() is None:
        if node.poll() is not None:
            proc.kill()
            raise RuntimeError(f"the node exited ({node.returncode}) during phase {name}")
        try:
            proc.stdin.write(f"{reader.acked(name)}\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            break
        time.sleep(0.02)
    out = json.loads(proc.stdout.read().strip().splitlines()[-1])
    # the producer may have exited between a write and its flush: the text still buffered
    # then raises here, not in the loop (a full in-process run once failed on it)
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.close()
    expect = out["valid"] + out["invalid"]
    deadline = time.monotonic() + 120
    while reader.acked(name) < expect and time.monotonic() < deadline and node.poll() is None:
        time.sleep(0.05)
    ps = reader.phase(name)
    with reader.lock:
        secs = max(1e-9, (ps.last_us - t0) / 1e6)
        lat = list(ps.lat_ms)
        res = {"offered_rate": rate or "max", "producer_linger_ms": linger_ms,
               "sent": out, "decided": ps.decided,
               "dead_letters": ps.dead, "decided_twice": ps.decided_twice,
               "seconds": round(secs, 3), "tx_per_s": round(ps.decided / secs, 1),
               "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "p999_ms": pct(lat, 99.9),
               "max_ms": round(max(lat), 3) if lat else None,
               "node_p50_ms": pct(ps.node_ms, 50), "node_p99_ms": pct(ps.node_ms, 99),
               "out_p50_ms": pct(ps.out_ms, 50), "out_p99_ms": pct(ps.out_ms, 99),
               "reconciled": ps.decided == out["valid"] and ps.dead == out["invalid"]
               and ps.decided_twice == 0}  # fmt: skip
    return res


async def _http_load(url: str, token: str, rate: float, seconds: float) -> dict[str, Any]:
    import aiohttp

    from .pipeline_workers import tx_templates

    tpl = tx_templates(5000, seed=23)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    lat: list[float] = []
    sched: list[float] = []
    status: dict[int, int] = {}
    errors: dict[str, int] = {}
    n = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as s:

        async def one(i: int, due: float) -> None:
            c, t, m, a, cur, mcc, ch, co = tpl[i % len(tpl)]
            us = time.time_ns() // 1000
            tx_id = f"h{i}x{us // 1_000_000}s{us % 1_000_000}"
            body = json.dumps({"tx_id": tx_id, "timestamp": us / 1e6, "card": c,
                               "terminal_id": t, "merchant_id": m, "amount": a, "currency": cur,
                               "mcc": mcc, "channel": ch, "country": co})  # fmt: skip
            t0 = time.perf_counter()
            try:
                async with s.post(f"{url}/v1/decide", data=body, headers=headers) as r:
                    await r.read()
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                # counted, not fatal: the reconciliation then shows the gap
                key = type(e).__name__
                errors[key] = errors.get(key, 0) + 1
                return
            t1 = time.perf_counter()
            status[r.status] = status.get(r.status, 0) + 1
            lat.append((t1 - t0) * 1000)
            sched.append((t1 - due) * 1000)

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i, due)))
        await asyncio.gather(*tasks)
        secs = time.perf_counter() - start
    return {"requests": n, "rate": rate, "seconds": round(secs, 3), "status": status,
            "client_errors": errors,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "p999_ms": pct(lat, 99.9),
            "p99_ms_from_schedule": pct(sched, 99)}  # fmt: skip


def _warm_up(ep: dict[str, Any]) -> dict[str, int]:
    """One valid and one invalid POST /v1/decide and one transaction through ``tx-in``
    (phase ``w``; the node created its topics at start)."""
    import requests

    hdr = {"Authorization": f"Bearer {ep['token']}"}
    us = time.time_ns() // 1000
    good = {"tx_id": f"w0x{us // 1_000_000}s{us % 1_000_000}", "timestamp": us / 1e6,
            "card": "card-w", "terminal_id": "T-w", "amount": "1.00"}  # fmt: skip
    bad = {"tx_id": "bad-w-1", "card": "c", "amount": "-5"}
    codes = [requests.post(f"{ep['api']}/v1/decide", json=b, headers=hdr, timeout=10).status_code
             for b in (good, bad)]  # fmt: skip
    if codes != [200, 400]:
        raise RuntimeError(f"bench warm-up: POST /v1/decide answered {codes}, expected [200, 400]")
    # One transaction through tx-in, decided before any phase starts: both consumer
    # groups (ingest and Faust's) have joined, so no phase pays the ~3 s initial
    # rebalance of the embedded broker in its first records' latency.
    from confluent_kafka import Producer

    us = time.time_ns() // 1000
    p = Producer({"bootstrap.servers": ep["broker"], "log_level": 3})
    p.produce(ep["topics"]["tx_in"], json.dumps(
        {"tx_id": f"w1x{us // 1_000_000}s{us % 1_000_000}", "timestamp": us / 1e6,
         "card": "card-w", "terminal_id": "T-w", "amount": "1.00"}).encode())  # fmt: skip
    if p.flush(10):
        raise RuntimeError("bench warm-up: could not produce to the ingest topic")
    deadline = time.monotonic() + 60
    while requests.get(f"{ep['api']}/health", timeout=10).json()["decided"] < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("bench warm-up: a tx-in transaction was not decided within 60 s")
        time.sleep(0.05)
    return {"decided": 2, "invalid": 1}


def _train_model(workdir: Path) -> Path:
    """Train an ``rf`` model on generated data (FDH column layout) into ``workdir``."""
    import csv

    from fraudnet.replay.generator import GeneratorConfig, generate
    from fraudnet.testing import run_cli

    data = workdir / "train_fdh.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT",
                    "TX_FRAUD"])  # fmt: skip
        for i, r in enumerate(generate(GeneratorConfig(seed=7, days=30), limit=60_000)):
            ts = str(r["timestamp"]).replace("T", " ").rstrip("Z")
            w.writerow([i, ts, int(str(r["card"])[-9:]), int(str(r["terminal_id"])[1:]),
                        r["amount"], r["label"]])  # fmt: skip
    out = workdir / "model.fnm"
    run_cli("model", "train", "--data", str(data), "--train-start", "2024-04-05", "--train-days",
            "14", "--delay-days", "7", "--model", "rf", "--out", str(out),
            timeout=1800)  # fmt: skip
    return out


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def fsync_probe(directory: Path, n: int = 300) -> dict[str, float]:
    """``fdatasync`` latency of ``n`` appends of 8 KiB in ``directory`` (the audit log's disk):
    the floor under any answer that waits for its audit record to be durable."""
    path = directory / ".fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lat: list[float] = []
    try:
        buf = os.urandom(8192)
        for _ in range(n):
            os.write(fd, buf)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return {"fsync_p50_ms": pct(lat, 50), "fsync_p99_ms": pct(lat, 99),
            "fsync_max_ms": round(max(lat), 3)}  # fmt: skip


def run_bench(*, model: Path | None, seconds: float, max_tx: int, latency_rate: float,
              latency_seconds: float, http_rate: float, http_seconds: float, window: int,
              floor_tx: int, workdir: Path, ingest_process: bool = False,
              audit_fsync: bool = True, linger_ms: float = LATENCY_PRODUCER_LINGER_MS,
              reference_linger_ms: float = REFERENCE_PRODUCER_LINGER_MS,
              ) -> dict[str, Any]:  # fmt: skip
    from fraudnet.testing import run_cli, running_node

    load0 = os.getloadavg()
    fsync = fsync_probe(workdir)
    ceiling = _worker("ceiling", "--count", "60000", "--rounds", "3", timeout=600)
    if model is None:
        model = _train_model(workdir)
    # best of two fresh runs, as the ceiling takes its best round: about one floor run in
    # three (sessions 5-6) stalled ~10 s after its first event and reported ~420 tx/s
    rounds = [_worker("floor", "--count", str(floor_tx), "--model", str(model), "--datadir",
                      str(workdir / f"floor{i}"), timeout=600) for i in range(2)]  # fmt: skip
    floor = dict(max(rounds, key=lambda r: float(r["floor_tx_per_s"])))
    floor["rounds"] = [r["floor_tx_per_s"] for r in rounds]
    node_dir = workdir / "node"
    run_cli("node", "init", str(node_dir), "--member", "bench")
    toml = (node_dir / "node.toml").read_text().replace("# USD = 0.92", "USD = 0.92")
    if not audit_fsync:  # the opt-in of ADR 0503: answers before the disk flush
        toml += "\n[audit]\nfsync = false\n"
    (node_dir / "node.toml").write_text(toml)
    res: dict[str, Any] = {}
    from fraudnet.adapters.node import INGEST_PROCESS_ENV

    before = os.environ.get(INGEST_PROCESS_ENV)
    os.environ[INGEST_PROCESS_ENV] = "1" if ingest_process else "0"
    try:
        with running_node(node_dir, "--model", str(model.resolve()), "--log-level",
                          "warning") as ep:  # fmt: skip
            res = _run_node_phases(ep, seconds=seconds, max_tx=max_tx, window=window,
                                   latency_rate=latency_rate, latency_seconds=latency_seconds,
                                   http_rate=http_rate, http_seconds=http_seconds,
                                   linger_ms=linger_ms,
                                   reference_linger_ms=reference_linger_ms)  # fmt: skip
            proc = ep["proc"]
    finally:
        if before is None:
            os.environ.pop(INGEST_PROCESS_ENV, None)
        else:
            os.environ[INGEST_PROCESS_ENV] = before
    t, lt, lr, http, stats, rss, warm = (res.pop(k) for k in ("t", "lt", "lr", "http",
                                                               "stats", "rss", "warm"))  # fmt: skip
    ok = http["status"].get(200, 0)
    exit_code = proc.returncode
    load1 = os.getloadavg()
    return _summary(t, lt, lr, http, stats, rss, warm, ok, exit_code, load0, load1, ceiling,
                    floor, model, fsync, ingest_process=ingest_process,
                    audit_fsync=audit_fsync)  # fmt: skip


def _run_node_phases(ep: dict[str, Any], *, seconds: float, max_tx: int, window: int,
                     latency_rate: float, latency_seconds: float, http_rate: float,
                     http_seconds: float, linger_ms: float,
                     reference_linger_ms: float) -> dict[str, Any]:  # fmt: skip
    import requests

    warm = _warm_up(ep)
    reader = Reader(ep["broker"], ep["topics"]["decisions"], ep["topics"]["dead_letters"])
    reader.start()
    with _no_collector():
        t = stream_phase(ep, reader, "t", rate=0, seconds=seconds, count=max_tx, window=window,
                         linger_ms=5)  # fmt: skip
        lt = stream_phase(ep, reader, "l", rate=latency_rate, seconds=latency_seconds,
                          count=10**9, window=window, linger_ms=linger_ms)  # fmt: skip
        lr = None
        if reference_linger_ms:
            lr = stream_phase(ep, reader, "d", rate=latency_rate, seconds=latency_seconds,
                              count=10**9, window=window,
                              linger_ms=reference_linger_ms)  # fmt: skip
        http = asyncio.run(_http_load(ep["api"], ep["token"], http_rate, http_seconds))
    ok = http["status"].get(200, 0)
    deadline = time.monotonic() + 30
    while reader.acked("h") < ok and time.monotonic() < deadline:
        time.sleep(0.05)
    http["decisions_on_topic"] = reader.phase("h").decided
    stats = requests.get(f"{ep['api']}/v1/stats", timeout=10,
                         headers={"Authorization": f"Bearer {ep['token']}"}).json()  # fmt: skip
    rss = _peak_rss_mb(ep["pid"])
    for child in _child_pids(ep["pid"]):  # the ingest process, when there is one
        rss = round(rss + _peak_rss_mb(child), 1)
    reader.stop_ev.set()
    reader.join(60)  # closes its consumer while the broker still runs
    if reader.is_alive():
        raise RuntimeError("bench reader did not stop within 60 s")
    return {"t": t, "lt": lt, "lr": lr, "http": http, "stats": stats, "rss": rss, "warm": warm}


@contextlib.contextmanager
def _no_collector() -> Iterator[None]:
    """The measuring process (HTTP client, decisions reader) runs its phases without its
    cyclic garbage collector: a full collection in it once stopped the client for tens of
    milliseconds ~15 s into the HTTP phase and ~50 answers were timed late, which is not
    the node's latency (ADR 0505). What it allocates is freed by reference counting."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def _child_pids(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _summary(t: dict[str, Any], lt: dict[str, Any], lr: dict[str, Any] | None,
             http: dict[str, Any], stats: dict[str, Any],
             rss: float, warm: dict[str, int], ok: int, exit_code: int | None,
             load0: tuple[float, float, float], load1: tuple[float, float, float],
             ceiling: dict[str, Any], floor: dict[str, Any], model: Path,
             fsync: dict[str, float], *, ingest_process: bool,
             audit_fsync: bool) -> dict[str, Any]:  # fmt: skip
    res: dict[str, Any] = {}
    streams = [t, lt] + ([lr] if lr is not None else [])
    dups = sum(p["sent"]["dup"] for p in streams)
    node_ok = (stats["received"] == stats["decided"] + stats["dead_lettered"] + stats["duplicates"]
               and stats["duplicates"] == dups
               and stats["decided"] == sum(p["decided"] for p in streams) + ok + warm["decided"]
               and stats["dead_lettered"]
               == sum(p["dead_letters"] for p in streams) + warm["invalid"])  # fmt: skip
    state = stats.get("state") or {}
    total = sum(p["decided"] for p in streams) + ok
    phases = {"throughput": t, "latency": lt, "http": http}
    if lr is not None:
        phases["latency_reference_linger"] = lr
    res.update(
        tx_per_s=t["tx_per_s"], p50_ms=lt["p50_ms"], p99_ms=lt["p99_ms"], p999_ms=lt["p999_ms"],
        http_p99_ms=http["p99_ms"], peak_rss_mb=rss,
        state_bytes_per_entity=state.get("bytes_per_entity"),
        ceiling_tx_per_s=ceiling["ceiling_msgs_per_s"], floor_tx_per_s=floor["floor_tx_per_s"],
        transactions=total,
        seconds=round(sum(p["seconds"] for p in streams) + http["seconds"], 3),
        ratio_to_ceiling=round(t["tx_per_s"] / ceiling["ceiling_msgs_per_s"], 4),
        ratio_to_floor=round(t["tx_per_s"] / floor["floor_tx_per_s"], 1)
        if floor["floor_tx_per_s"] else None,
        reconciled=bool(all(p["reconciled"] for p in streams) and node_ok
                        and http["decisions_on_topic"] == ok == http["requests"]
                        and exit_code == 0),
        node_exit_code=exit_code, latency_offered_tx_per_s=lt["offered_rate"],
        # the member producer's linger in the headline latency phase, and the same phase at
        # librdkafka's default linger (ADR 0506)
        latency_producer_linger_ms=lt["producer_linger_ms"],
        reference_linger_ms=lr["producer_linger_ms"] if lr is not None else None,
        reference_linger_p50_ms=lr["p50_ms"] if lr is not None else None,
        reference_linger_p99_ms=lr["p99_ms"] if lr is not None else None,
        http_rate=http["rate"],
        # shares of the node's CPU time (whole process, start-up included)
        decide_share=round(stats["decide_seconds"] / max(1e-9, stats["cpu_seconds"]), 3),
        admit_share=round(stats.get("admit_seconds", 0.0) / max(1e-9, stats["cpu_seconds"]), 3),
        loadavg_start=[round(x, 2) for x in load0], loadavg_end=[round(x, 2) for x in load1],
        phases=phases,
        ceiling=ceiling, floor=floor, node_stats=stats, state=state, model=str(model),
        cpus=os.cpu_count(), ingest_process=ingest_process, audit_fsync=audit_fsync, **fsync,
    )  # fmt: skip
    return res


@click.command()
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Model file (default: train an rf model on generated data first).",
)
@click.option("--seconds", default=60.0, show_default=True, help="Throughput phase length.")
@click.option(
    "--max-transactions",
    default=1_000_000,
    show_default=True,
    help="Throughput phase stops after this many messages even before --seconds.",
)
@click.option("--latency-rate", default=5000.0, show_default=True, help="Offered tx/s.")
@click.option("--latency-seconds", default=30.0, show_default=True)
@click.option(
    "--latency-linger-ms",
    default=LATENCY_PRODUCER_LINGER_MS,
    show_default=True,
    help="The producer's linger.ms in the latency phase (docs/operations.md).",
)
@click.option(
    "--reference-linger-ms",
    default=REFERENCE_PRODUCER_LINGER_MS,
    show_default=True,
    help="Repeat the latency phase with this producer linger.ms (librdkafka's default); 0 = no.",
)
@click.option("--http-rate", default=1000.0, show_default=True, help="POST /v1/decide req/s.")
@click.option("--http-seconds", default=15.0, show_default=True)
@click.option(
    "--window",
    default=20_000,
    show_default=True,
    help="Producer may run this many transactions ahead of the decisions.",
)
@click.option("--floor-transactions", default=5000, show_default=True)
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option(
    "--ingest-process",
    is_flag=True,
    help="Run ingest in a second process (FRAUDNET_INGESTPROC=1, ADR 0502).",
)
@click.option(
    "--no-audit-fsync",
    is_flag=True,
    help="Node with [audit] fsync = false (the opt-in of ADR 0503; not durable).",
)
@click.option("--json", "as_json", is_flag=True)
def cli(model: Path | None, seconds: float, max_transactions: int, latency_rate: float,
        latency_seconds: float, latency_linger_ms: float, reference_linger_ms: float,
        http_rate: float, http_seconds: float, window: int,
        floor_transactions: int, workdir: Path | None, ingest_process: bool,
        no_audit_fsync: bool, as_json: bool) -> None:  # fmt: skip
    """The whole node under one-transaction-per-message traffic + POST /v1/decide."""
    run_and_report(run_bench, workdir, as_json,
                   ("tx_per_s", "p50_ms", "p99_ms", "p999_ms", "reference_linger_p99_ms",
                    "http_p99_ms", "peak_rss_mb",
                    "state_bytes_per_entity", "ceiling_tx_per_s", "floor_tx_per_s",
                    "ratio_to_ceiling", "transactions", "seconds", "reconciled"),
                   "pipeline", model=model, seconds=seconds, max_tx=max_transactions,
                   latency_rate=latency_rate, latency_seconds=latency_seconds,
                   http_rate=http_rate, http_seconds=http_seconds, window=window,
                   floor_tx=floor_transactions, ingest_process=ingest_process,
                   audit_fsync=not no_audit_fsync, linger_ms=latency_linger_ms,
                   reference_linger_ms=reference_linger_ms)  # fmt: skip


def run_and_report(fn: Any, workdir: Path | None, as_json: bool, keys: tuple[str, ...],
                   name: str, **kw: Any) -> None:  # fmt: skip
    """Run a bench function in ``workdir`` (a temporary one if None) and print its result:
    one JSON object with ``--json``, else ``keys`` one per line; exit non-zero (one line,
    no traceback) when it fails or its counts do not reconcile."""
    from fraudnet.errors import InternalError

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"fraudnet-{name}-")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        res = fn(workdir=workdir, **kw)
    except Exception as e:  # one line with the cause, not a traceback
        raise InternalError(f"bench {name}: {type(e).__name__}: {e}") from None
    finally:
        if tmp is not None:
            tmp.cleanup()
    if as_json:
        click.echo(json.dumps(res))
    else:
        for k in keys:
            click.echo(f"{k:>26}: {res[k]}")
    if not res["reconciled"]:
        raise InternalError(f"bench {name}: counts do not reconcile (see the JSON output)")
