"""`fraudnet bench pipeline --json` end to end (short phases): one JSON object, reconciled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudnet.testing import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = {"tx_per_s", "p50_ms", "p99_ms", "p999_ms", "http_p99_ms", "peak_rss_mb",
        "state_bytes_per_entity", "ceiling_tx_per_s", "floor_tx_per_s", "transactions",
        "seconds"}  # fmt: skip


@pytest.mark.parametrize("mode", [[], ["--ingest-process"]], ids=["in-process", "ingest-process"])
def test_bench_pipeline_short_run_reconciles(tmp_path: Path, mode: list[str]) -> None:
    out = run_cli(
        "bench", "pipeline", "--seconds", "3", "--latency-seconds", "3", "--latency-rate", "500",
        "--http-seconds", "2", "--http-rate", "100", "--floor-transactions", "300",
        "--dir", str(tmp_path / "b"), "--json", *mode, timeout=1200,
    )  # fmt: skip
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(res) >= KEYS
    assert res["ingest_process"] is bool(mode) and res["audit_fsync"] is True
    assert 0 < res["fsync_p50_ms"] <= res["fsync_p99_ms"]
    assert res["reconciled"] is True and res["node_exit_code"] == 0
    t, lt, h = (res["phases"][k] for k in ("throughput", "latency", "http"))
    ref = res["phases"]["latency_reference_linger"]
    assert (lt["producer_linger_ms"], ref["producer_linger_ms"]) == (1.0, 5.0)
    assert ref["reconciled"] is True and res["reference_linger_p99_ms"] == ref["p99_ms"]
    assert t["decided"] == t["sent"]["valid"] and t["dead_letters"] == t["sent"]["invalid"]
    assert lt["decided_twice"] == 0 and t["decided_twice"] == 0
    assert h["status"] == {"200": 200} and h["decisions_on_topic"] == 200
    stats = res["node_stats"]
    assert stats["duplicates"] == t["sent"]["dup"] + lt["sent"]["dup"] + ref["sent"]["dup"]
    assert res["ceiling_tx_per_s"] > 0 and res["floor_tx_per_s"] > 0 and res["tx_per_s"] > 0
    assert res["state"]["designed_bytes_per_card"] > 0
