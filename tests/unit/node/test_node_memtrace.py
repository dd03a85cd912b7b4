"""The opt-in memory trace (FRAUDNET_MEMTRACE): off by default, reports growth by site."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from fraudnet.adapters.memtrace import ENV, MemTrace, start_from_env
from fraudnet.errors import ConfigError


def test_off_unless_the_variable_names_a_file() -> None:
    assert start_from_env({}) is None
    assert start_from_env({ENV: ""}) is None


@pytest.mark.parametrize(
    "extra",
    [
        {f"{ENV}_INTERVAL_S": "soon"},
        {f"{ENV}_INTERVAL_S": "0"},
        {f"{ENV}_FRAMES": "-1"},
        {f"{ENV}_TRIM": "yes"},
    ],
)
def test_bad_settings_are_a_config_error(tmp_path: Path, extra: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=ENV):
        start_from_env({ENV: str(tmp_path / "m.jsonl"), **extra})
    assert not tracemalloc.is_tracing()


def test_reports_the_site_that_grows(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    mt = start_from_env({ENV: str(out), f"{ENV}_INTERVAL_S": "3600", f"{ENV}_FRAMES": "4"})
    assert isinstance(mt, MemTrace)
    held: list[bytes] = []
    try:
        mt.report()  # the baseline
        held.extend(bytes(1000) + bytes([i % 256]) for i in range(3000))  # ~3 MB held here
        mt.report()
        mt.stop()  # and a last report
    finally:
        tracemalloc.stop()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and "top_since_first" not in rows[0]
    assert {"rss_mb", "traced_mb", "native_mb", "app_traced_mb"} <= set(rows[1])
    top = rows[1]["top_since_first"][0]
    assert top["kb_diff"] > 2500 and top["count_diff"] >= 3000
    assert any("test_node_memtrace.py" in w for w in top["where"])
    assert len(held) == 3000


def test_without_tracemalloc_it_reports_rss_and_the_trim_probe(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    env = {ENV: str(out), f"{ENV}_INTERVAL_S": "3600", f"{ENV}_FRAMES": "0", f"{ENV}_TRIM": "1"}
    mt = start_from_env(env)
    assert isinstance(mt, MemTrace) and not tracemalloc.is_tracing()
    mt.report()
    mt.stop()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    assert all(r["rss_after_trim_mb"] > 0 and "traced_mb" not in r for r in rows)
    assert "objects_since_first" in rows[1] and "top_since_first" not in rows[1]


def test_heap_trimmer_hands_freed_heap_back() -> None:
    from fraudnet.adapters.memtrace import heap_trimmer, rss_mb

    trim = heap_trimmer()
    if trim is None:
        pytest.skip("no glibc malloc_trim here")
    # pin the heap top with small objects between 64 KiB blocks (heap, not mmap), free the
    # blocks: glibc keeps them resident until a trim hands them back
    blocks, pins = [], []
    for i in range(800):
        blocks.append(bytearray(64 * 1024))
        pins.append(bytes(40) + bytes([i % 256]))
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    del blocks
    before = rss_mb()
    assert trim(0) in (0, 1)
    assert rss_mb() <= before
    assert len(pins) == 800
