"""``fraudnet bench soak``: a node at a steady rate for a long time; does its memory grow?

What runs (issue 10, item 3: "a soak of at least 30 minutes shows no growth in RSS or
open file descriptors"):

1. a node (``fraudnet node run``, embedded broker, a trained ``rf`` model) with a
   de-dup retention of ``--dedup-retention-s`` (default 600 s, pruned every
   ``--prune-interval-s``), so the ids it must remember reach a steady state inside
   the run (the production default, 7 days, holds 600 M ids at 1,000 tx/s: that
   growth is by design and shows up here only as the accounted bytes below);
2. the broker is brought to its retention cap before the measured window
   (``--prefill``, default on): the embedded broker (librdkafka's mock cluster) runs
   *inside the node's process* and keeps up to ~5 MiB of records per partition in
   memory, dropping the oldest beyond that. The busy topics (``tx-in``, ``tx-batch``,
   ``decisions``) reach that cap in a max-rate fill phase (``f``, ``g``, ... until
   every partition has dropped records, at most ``--fill-phases`` x 45 s); the quiet
   output topics, which nobody in the node reads (``tx-api``) or only the bench reads
   (``dead-letters``), get filler records (key ``soak-fill``): at 20 req/s ``tx-api``
   alone would take ~90 minutes to fill and grow the RSS all that time;
3. the measured phase ``s``: ``--rate`` tx/s on Kafka + ``--http-rate`` req/s on
   ``POST /v1/decide`` for ``--minutes``, reconciled like the overload bench
   (every transaction one decision, nothing lost, the node exits 0).

Every ``--sample-s`` a row records the node's RSS and open descriptors
(``/proc``), the de-dup filter's bytes (``/v1/stats``), the payload bytes the
broker holds per topic (a consumer reads every topic from its low watermark:
:class:`BrokerGauge`) and the load average. The result gives the RSS and
descriptor slopes over the whole phase, its last 80 % and its last 50 %, each also
*net* of the accounted bytes (RSS - de-dup filter - broker payload): that is what
the node itself holds.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import click

from .overload import (
    _reconcile,
    _stream_and_http,
    bench_node,
    proc_sample,
    rss_fd_summary,
    slope,
)
from .pipeline import _train_model, run_and_report, stream_phase

__all__ = ["BrokerGauge", "cli", "run_soak", "window_summary"]

#: the embedded broker keeps about this much per partition (librdkafka rdkafka_mock.c)
MOCK_PARTITION_BYTES = 5 * 1024 * 1024
FILL_KEY = b"soak-fill"
FILL_VALUE_BYTES = 16 * 1024
FILL_PHASE_S = 45.0
#: phase letters of the fill phases (the reader keys phases by a tx id's first letter)
FILL_NAMES = "fgjkmn"


class BrokerGauge(threading.Thread):
    """Payload bytes (key + value) and records the broker holds, per topic.

    Reads every partition of ``topics`` from the beginning and remembers the size
    of each record it has seen; records below a partition's low watermark (dropped
    by the broker) are forgotten. Record-batch headers are not counted, so this is
    a slight under-estimate of what the broker stores.
    """

    def __init__(self, bootstrap: str, topics: list[str], interval: float = 2.0) -> None:
        super().__init__(daemon=True, name="soak-broker-gauge")
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self._tp = TopicPartition
        self.c = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                           "group.id": f"soak-gauge-{time.time_ns()}", "log_level": 3,
                           "fetch.wait.max.ms": 100})  # fmt: skip
        self._begin = OFFSET_BEGINNING
        self.topics = topics
        self.parts: list[tuple[str, int]] = []
        self.interval = interval
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self._sizes: dict[tuple[str, int], collections.deque[tuple[int, int]]] = {}
        self._bytes: dict[tuple[str, int], int] = {}
        self._low: dict[tuple[str, int], int] = {}
        self._assign_new()

    def _assign_new(self) -> None:
        """Read the partitions of topics that exist now and were not read yet (a topic
        appears when first produced to)."""
        md = self.c.list_topics(timeout=10)
        new = [(t, p) for t in self.topics if t in md.topics
               for p in md.topics[t].partitions if (t, p) not in self._bytes]  # fmt: skip
        if not new:
            return
        with self.lock:
            for tp in new:
                self._sizes[tp] = collections.deque()
                self._bytes[tp] = self._low[tp] = 0
            self.parts += new
        self.c.incremental_assign([self._tp(t, p, self._begin) for t, p in new])

    def run(self) -> None:
        next_trim = 0.0
        while not self.stop_ev.is_set():
            msgs = self.c.consume(num_messages=5000, timeout=0.2)
            with self.lock:
                for m in msgs:
                    if m.error() is not None:
                        continue
                    tp = (str(m.topic()), int(m.partition() or 0))
                    n = len(m.value() or b"") + len(m.key() or b"")
                    self._sizes[tp].append((int(m.offset() or 0), n))
                    self._bytes[tp] += n
            if time.monotonic() >= next_trim:
                if len({t for t, _ in self.parts}) < len(self.topics):
                    # a failure means the node is stopping; or try again next time
                    with contextlib.suppress(Exception):
                        self._assign_new()
                self._trim()
                next_trim = time.monotonic() + self.interval
        self.c.close()

    def _trim(self) -> None:
        for t, p in self.parts:
            try:
                low, _high = self.c.get_watermark_offsets(self._tp(t, p), timeout=5, cached=False)
            except Exception:  # the node is stopping: keep the last figures
                return
            with self.lock:
                self._low[(t, p)] = low
                sizes = self._sizes[(t, p)]
                while sizes and sizes[0][0] < low:
                    self._bytes[(t, p)] -= sizes.popleft()[1]

    def held(self) -> dict[str, dict[str, int]]:
        """topic -> {bytes, records, partitions, trimmed} (trimmed: partitions at their cap)."""
        out: dict[str, dict[str, int]] = {}
        with self.lock:
            for (t, p), b in self._bytes.items():
                row = out.setdefault(t, {"bytes": 0, "records": 0, "partitions": 0, "trimmed": 0})
                row["bytes"] += b
                row["records"] += len(self._sizes[(t, p)])
                row["partitions"] += 1
                row["trimmed"] += int(self._low[(t, p)] > 0)
        return out


class Rows(threading.Thread):
    """Every ``interval``: (t, phase, rss MB, fds, dedup filter MB, broker MB, load 1 min)."""

    def __init__(self, ep: dict[str, Any], gauge: BrokerGauge, interval: float) -> None:
        super().__init__(daemon=True, name="soak-rows")
        self.ep, self.gauge, self.interval = ep, gauge, interval
        self.phase = "fill"
        self.rows: list[tuple[float, str, float, int, float, float, float]] = []
        self.dedup: dict[str, Any] = {}
        self.stop_ev = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        import requests

        hdr = {"Authorization": f"Bearer {self.ep['token']}"}
        while not self.stop_ev.wait(self.interval):
            try:
                rss, fds = proc_sample(self.ep["pid"])
                st = requests.get(f"{self.ep['api']}/v1/stats", headers=hdr, timeout=10).json()
            except (OSError, ValueError):  # the node is stopping
                return
            self.dedup = st.get("dedup_filter", {})
            broker = sum(v["bytes"] for v in self.gauge.held().values())
            self.rows.append((round(time.monotonic() - self.t0, 1), self.phase, rss, fds,
                              self.dedup.get("bytes", 0) / 2**20, broker / 2**20,
                              os.getloadavg()[0]))  # fmt: skip


def window_summary(rows: list[tuple[float, str, float, int, float, float, float]],
                   last: float = 1.0) -> dict[str, Any]:  # fmt: skip
    """Slopes (per hour) over the last ``last`` fraction (by time) of ``rows``."""
    if not rows:
        return {"samples": 0}
    t_end = rows[-1][0]
    t_start = t_end - last * (t_end - rows[0][0])
    w = [r for r in rows if r[0] >= t_start]
    ts = [r[0] for r in w]
    rss = [r[2] for r in w]
    net = [r[2] - r[4] - r[5] for r in w]
    fds = [float(r[3]) for r in w]
    return {
        **rss_fd_summary(ts, rss, fds),
        "net_mb_first": round(net[0], 1), "net_mb_last": round(net[-1], 1),
        "net_mb_per_hour": round(slope(ts, net) * 3600, 2),
        "dedup_filter_mb": [round(w[0][4], 2), round(w[-1][4], 2)],
        "broker_payload_mb": [round(w[0][5], 1), round(w[-1][5], 1)],
        "loadavg_1m": [round(min(r[6] for r in w), 2), round(max(r[6] for r in w), 2)],
    }  # fmt: skip


def _prefill(bootstrap: str, topics: list[str]) -> int:
    """Fill every partition of ``topics`` past the broker's per-partition cap; records sent."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 3})
    md = p.list_topics(timeout=10)
    value = bytes(FILL_VALUE_BYTES)
    per_partition = math.ceil(1.1 * MOCK_PARTITION_BYTES / FILL_VALUE_BYTES)
    sent = 0
    for t in topics:
        if t not in md.topics:
            raise RuntimeError(f"bench soak: topic {t} does not exist (warm-up creates it)")
        for part in md.topics[t].partitions:
            for _ in range(per_partition):
                while True:
                    try:
                        p.produce(t, value, key=FILL_KEY, partition=part)
                        break
                    except BufferError:
                        p.poll(0.05)
                sent += 1
    if p.flush(60) != 0:
        raise RuntimeError("bench soak: filler records not delivered within 60 s")
    return sent


def run_soak(*, model: Path | None, minutes: float, rate: float, http_rate: float,
             backlog: int, sample_s: float, workdir: Path, dedup_retention_s: float = 600.0,
             prune_interval_s: float = 30.0, prefill: bool = True,
             fill_phases: int = 4) -> dict[str, Any]:  # fmt: skip
    load0 = os.getloadavg()
    model = model or _train_model(workdir)
    # trim_consumed off: the soak holds every topic at the embedded broker's cap on purpose
    # (the worst case for memory); deleting consumed input records would hide it (ADR 0506)
    keys = {"retention_days": repr(dedup_retention_s / 86_400),
            "prune_interval_s": repr(float(prune_interval_s)),
            "trim_consumed": "false"}  # fmt: skip
    fills: list[dict[str, Any]] = []
    with bench_node(model, workdir, 256, sample_s, keys) as run:
        ep, topics = run.ep, run.ep["topics"]
        quiet = [topics["tx_api"], topics["dead_letters"]]
        filler = _prefill(ep["broker"], quiet) if prefill else 0
        gauge = BrokerGauge(ep["broker"], [topics[k] for k in (
            "tx_in", "tx_batch", "decisions", "tx_api", "dead_letters", "labels")])  # fmt: skip
        gauge.start()
        rows = Rows(ep, gauge, sample_s)
        rows.start()
        busy = [topics["tx_in"], topics["tx_batch"], topics["decisions"]]

        def at_cap() -> bool:
            held = gauge.held()
            return all(t in held and held[t]["trimmed"] == held[t]["partitions"] for t in busy)

        try:
            for name in FILL_NAMES[: fill_phases if prefill else 0]:
                if at_cap():
                    break
                run.sampler.phase = rows.phase = "fill"
                fills.append(stream_phase(ep, run.reader, name, rate=0, seconds=FILL_PHASE_S,
                                          count=10**9, window=backlog, linger_ms=5))  # fmt: skip
            filled = at_cap()
            run.sampler.phase = rows.phase = "soak"
            soak, http = _stream_and_http(ep, run.reader, name="s", http_prefix="q", rate=rate,
                                          seconds=minutes * 60, backlog=backlog,
                                          http_rate=http_rate, give_up_s=120.0)  # fmt: skip
            held = gauge.held()
        finally:
            rows.stop_ev.set()
            rows.join(30)
            gauge.stop_ev.set()
            gauge.join(30)
    measured = [r for r in rows.rows if r[1] == "soak"]
    last80 = window_summary(measured, 0.8)
    return {
        "minutes": minutes, "offered_tx_per_s": rate, "http_rate": http_rate,
        "transactions": soak["decided"] + http.get("ok", 0),
        "fill_transactions": sum(f["decided"] for f in fills),
        "decided_tx_per_s": soak["tx_per_s"], "p50_ms": soak["p50_ms"], "p99_ms": soak["p99_ms"],
        "rss_mb_per_hour": last80.get("rss_mb_per_hour"),
        "net_mb_per_hour": last80.get("net_mb_per_hour"),
        "fds_per_hour": last80.get("fds_per_hour"),
        "memory": {"whole": window_summary(measured), "last_80pct": last80,
                   "last_50pct": window_summary(measured, 0.5)},
        "dedup_retention_s": dedup_retention_s, "prune_interval_s": prune_interval_s,
        "dedup_filter_at_end": rows.dedup,
        "broker": {"prefilled": prefill, "filler_records": filler, "at_cap_before_soak": filled,
                   "held_at_end": held, "cap_bytes_per_partition": MOCK_PARTITION_BYTES},
        "timeline": [(t, ph, round(r, 1), f, round(d, 2), round(b, 1), round(la, 2))
                     for t, ph, r, f, d, b, la in rows.rows][:: max(1, len(rows.rows) // 80)],
        "timeline_columns": ["t_s", "phase", "rss_mb", "fds", "dedup_filter_mb",
                             "broker_payload_mb", "loadavg_1m"],
        "http": http, "fill_phases": fills,
        "reconciled": _reconcile(run.stats, [*fills, soak], [http] if http else [], run.warm)
        and run.exit_code == 0,
        "node_exit_code": run.exit_code, "node_stats": run.stats,
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }  # fmt: skip


@click.command("soak")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Model file (default: train an rf model first).")  # fmt: skip
@click.option("--minutes", default=30.0, show_default=True, help="Measured phase length.")
@click.option("--rate", default=1000.0, show_default=True, help="Offered Kafka tx/s.")
@click.option("--http-rate", default=20.0, show_default=True, help="POST /v1/decide req/s.")
@click.option("--backlog", default=40_000, show_default=True)
@click.option("--sample-s", default=5.0, show_default=True)
@click.option("--dedup-retention-s", default=600.0, show_default=True,
              help="The node's [dedup] retention for this run (>= 60 s).")  # fmt: skip
@click.option("--prune-interval-s", default=30.0, show_default=True)
@click.option("--prefill/--no-prefill", default=True, show_default=True,
              help="Bring the embedded broker to its retention cap before measuring.")  # fmt: skip
@click.option("--fill-phases", default=4, show_default=True,
              help="At most this many 45 s max-rate fill phases.")  # fmt: skip
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def cli(model: Path | None, minutes: float, rate: float, http_rate: float, backlog: int,
        sample_s: float, dedup_retention_s: float, prune_interval_s: float, prefill: bool,
        fill_phases: int, workdir: Path | None, as_json: bool) -> None:  # fmt: skip
    """A node at a steady rate for MINUTES: RSS (raw and net of accounted bytes) and fd slopes."""
    run_and_report(run_soak, workdir, as_json,
         ("minutes", "offered_tx_per_s", "decided_tx_per_s", "p99_ms", "rss_mb_per_hour",
          "net_mb_per_hour", "fds_per_hour", "transactions", "reconciled"),
         "soak", model=model, minutes=minutes, rate=rate, http_rate=http_rate, backlog=backlog,
         sample_s=sample_s, dedup_retention_s=dedup_retention_s,
         prune_interval_s=prune_interval_s, prefill=prefill,
         fill_phases=fill_phases)  # fmt: skip
