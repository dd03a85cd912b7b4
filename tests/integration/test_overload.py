"""Issue 10 item 3: a node past its capacity sheds HTTP load with 503 + Retry-After, applies
Kafka backpressure, keeps memory bounded and loses nothing; a (short) soak reconciles.

Both run the real benchmarks (``fraudnet bench overload`` / ``soak``) at small scale:
a node process, a producer process, a retrying HTTP client. Marked ``slow`` (about two
minutes each on 2 cores); ``tox -e slow`` runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudnet.bench.overload import Sampler, run_overload, slope
from fraudnet.bench.soak import run_soak, window_summary

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_overload_sheds_with_retry_after_and_loses_nothing(tmp_path: Path) -> None:
    res = run_overload(model=None, capacity_seconds=5, factor=2.0, seconds=8, http_rate=200,
                       max_inflight=8, backlog=20_000, sample_s=0.25, workdir=tmp_path)  # fmt: skip
    assert res["reconciled"], res["phases"]
    http = res["http"]
    # shedding happened, every shed answer said when to come back, and nothing was lost
    assert http["status"].get(503, 0) > 0
    assert http["retry_after_missing"] == 0
    assert http["lost"] == 0 and http["ok"] == http["requests"] == http["decisions_on_topic"]
    # the producer offered more than the node decided while overloaded (so it was overload)
    assert res["producer_sent_per_s"] > res["overload_decided_tx_per_s"]
    over = res["memory"]["overload"]
    assert over["samples"] > 4
    # bounded: the node's memory does not follow the backlog (~20k tx sit in the broker)
    assert over["rss_mb_max"] < 1500
    # descriptors are bounded by the client's connections, not by the requests sent
    assert over["fds_max"] < 512 + 200


def test_short_soak_reconciles_and_reports_slopes(tmp_path: Path) -> None:
    res = run_soak(model=None, minutes=0.5, rate=500, http_rate=10, backlog=20_000,
                   sample_s=0.5, workdir=tmp_path, dedup_retention_s=60, prune_interval_s=5,
                   fill_phases=1)  # fmt: skip
    assert res["reconciled"], res["fill_phases"]
    assert res["transactions"] >= 0.9 * 500 * 30
    assert res["fill_transactions"] > 0
    assert res["memory"]["last_80pct"]["samples"] > 10
    assert isinstance(res["rss_mb_per_hour"], float) and isinstance(res["net_mb_per_hour"], float)
    # the accounted bytes: the prefilled quiet topics sit at the broker's cap, the de-dup
    # filter is reported by the node
    held = res["broker"]["held_at_end"]
    assert held["fraudnet.tx-api"]["trimmed"] == held["fraudnet.tx-api"]["partitions"] == 4
    assert held["fraudnet.tx-api"]["bytes"] >= 4 * 4 * 2**20
    dedup = res["dedup_filter_at_end"]
    assert dedup["bytes"] > 0 and dedup["generations"] >= 1


def test_window_summary_slopes_net_of_accounted_bytes() -> None:
    # RSS grows 1 MB/s, all of it accounted (broker payload): net flat
    rows = [(float(t), "soak", 100.0 + t, 40, 2.0, float(t), 1.0) for t in range(101)]
    w = window_summary(rows, 0.5)
    assert w["samples"] == 51 and w["rss_mb_first"] == 150.0
    assert w["rss_mb_per_hour"] == pytest.approx(3600.0)
    assert w["net_mb_per_hour"] == pytest.approx(0.0, abs=1e-6)
    assert w["fds_per_hour"] == 0.0 and w["broker_payload_mb"] == [50.0, 100.0]
    assert window_summary([]) == {"samples": 0}


def test_slope_and_sampler_summary() -> None:
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert slope([1.0], [5.0]) == 0.0
    s = Sampler(pid=0, interval=1.0)
    s.samples = [(float(t), "p", 100.0 + t, 10) for t in range(11)]
    out = s.summary("p", skip_first=0.5)
    assert out["samples"] == 6 and out["rss_mb_first"] == 105.0
    assert out["rss_mb_per_hour"] == pytest.approx(3600.0) and out["fds_per_hour"] == 0.0
