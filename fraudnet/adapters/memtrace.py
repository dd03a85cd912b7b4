"""Opt-in memory tracing of a running node (off by default; for hunting leaks).

``FRAUDNET_MEMTRACE=/path/report.jsonl`` starts :mod:`tracemalloc` when the node
starts and a daemon thread that, every ``FRAUDNET_MEMTRACE_INTERVAL_S`` seconds
(default 120), appends one JSON object to that file:

* ``rss_mb`` (``VmRSS``), ``traced_mb`` (what Python's allocators and numpy hold,
  as tracemalloc sees it) and ``native_mb`` = RSS - traced: growth there is in C
  libraries (librdkafka and its embedded broker, SQLite's page cache, OpenSSL)
  or allocator fragmentation, never in Python objects;
* ``top_since_first`` / ``top_since_prev``: the ``FRAUDNET_MEMTRACE_TOP``
  (default 15) allocation sites, by traceback (``FRAUDNET_MEMTRACE_FRAMES``
  frames, default 8), whose held bytes grew most since the first report (taken
  one interval after start, past warm-up) and since the previous one;
* ``objects_since_first``: the object types whose live count (``gc``) grew most;
* with ``FRAUDNET_MEMTRACE_TRIM=1``, ``rss_after_trim_mb``: the RSS right after glibc's
  ``malloc_trim(0)`` hands free heap pages back to the kernel. RSS that a trim removes
  was freed memory the allocator kept (high-water marks, fragmentation), not live data;
  a leak survives the trim.

``FRAUDNET_MEMTRACE_FRAMES=0`` leaves tracemalloc off (no ``traced``/``top`` fields, no
slowdown): RSS, the trim probe and object counts only.

The names are no ``[section] key`` of the settings loader (``memtrace`` is no
section), so the loader ignores them. Cost: tracemalloc with 8 frames slows
allocation-heavy code by roughly 2-3x; use it on a test node, never to measure
speed. See docs/operations.md, "Overload and long runs".
"""

from __future__ import annotations

import contextlib
import gc
import json
import linecache
import os
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["ENV", "TRIM_INTERVAL_S", "MemTrace", "heap_trimmer", "rss_mb", "start_from_env"]

ENV = "FRAUDNET_MEMTRACE"
_FILTERS = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, linecache.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
)


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of ``pid`` (default: this process) in MB, from /proc."""
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _top(diff: list[tracemalloc.StatisticDiff], n: int) -> list[dict[str, Any]]:
    """The ``n`` sites that grew most (tracemalloc sorts by absolute change)."""
    out = []
    for st in sorted(diff, key=lambda d: d.size_diff, reverse=True)[:n]:
        out.append({
            "kb": round(st.size / 1024, 1), "kb_diff": round(st.size_diff / 1024, 1),
            "count": st.count, "count_diff": st.count_diff,
            "where": [f"{f.filename}:{f.lineno}" for f in reversed(st.traceback)],
        })  # fmt: skip
    return out


#: the default of ``[node] heap_trim_s``: how often a node hands free heap memory back to
#: the kernel (:func:`heap_trimmer`)
TRIM_INTERVAL_S = 60.0


def heap_trimmer() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` for a periodic timer, or None where there is none.

    Why a node calls it: glibc keeps freed heap memory (its mmap threshold rises after
    the first large free, so later multi-MB buffers -- a de-dup filter, a burst of
    queued decisions or HTTP requests -- come from the heap and stay resident once
    freed). RSS then climbs in steps with every new peak although live memory is
    flat; a trim every minute lets RSS follow live memory (docs/operations.md,
    section 7). It walks the heaps and takes each arena's lock briefly: call it
    from a worker thread.
    """
    return _malloc_trim()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if fn is None:
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    out: Callable[[int], int] = fn
    return out


def _type_counts() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


class MemTrace(threading.Thread):
    """The reporting thread; :meth:`stop` writes one last report and ends it."""

    def __init__(self, path: Path, interval_s: float, *, frames: int = 8, top: int = 15,
                 trim: bool = False) -> None:  # fmt: skip
        super().__init__(daemon=True, name="fraudnet-memtrace")
        self.path = path
        self.interval_s = interval_s
        self.frames = frames
        self.top = top
        self.trim = _malloc_trim() if trim else None
        self.stop_ev = threading.Event()
        self.reports = 0
        self._t0 = time.monotonic()
        self._first: tracemalloc.Snapshot | None = None
        self._prev: tracemalloc.Snapshot | None = None
        self._first_types: Counter[str] | None = None

    def run(self) -> None:
        while not self.stop_ev.wait(self.interval_s):
            try:
                self.report()
            except OSError:  # cannot write the report: stop tracing, keep the node
                return

    def stop(self) -> None:
        """End the thread and write a last report; never raises (called while stopping)."""
        self.stop_ev.set()
        if self.is_alive():
            self.join(60)
        with contextlib.suppress(OSError):  # the report file went away: the node stops anyway
            self.report()

    def report(self) -> None:
        """Append one report line (the first one is the baseline of the later ones)."""
        types = _type_counts()
        rss = rss_mb()
        row: dict[str, Any] = {
            "t_s": round(time.monotonic() - self._t0, 1), "rss_mb": round(rss, 1),
            "gc_objects": sum(types.values()), "threads": threading.active_count(),
        }  # fmt: skip
        if self.trim is not None:
            self.trim(0)
            row["rss_after_trim_mb"] = round(rss_mb(), 1)
        snap = None
        if tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot().filter_traces(_FILTERS)
            traced, peak = tracemalloc.get_traced_memory()
            row.update({
                "traced_mb": round(traced / 2**20, 1), "traced_peak_mb": round(peak / 2**20, 1),
                "native_mb": round(rss - traced / 2**20, 1),
                # traced minus this tool's own snapshots and the import machinery
                "app_traced_mb": round(sum(t.size for t in snap.traces) / 2**20, 1),
                "tracemalloc_overhead_mb": round(tracemalloc.get_tracemalloc_memory() / 2**20, 1),
            })  # fmt: skip
        if self._first_types is None:
            self._first, self._first_types = snap, types
        else:
            if snap is not None and self._first is not None:
                row["top_since_first"] = _top(snap.compare_to(self._first, "traceback"), self.top)
            grown = Counter(types)
            grown.subtract(self._first_types)
            row["objects_since_first"] = dict(grown.most_common(self.top))
        if snap is not None and self._prev is not None:
            row["top_since_prev"] = _top(snap.compare_to(self._prev, "traceback"), self.top)
        self._prev = snap
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self.reports += 1


def start_from_env(environ: Mapping[str, str] | None = None) -> MemTrace | None:
    """Start tracing if ``FRAUDNET_MEMTRACE`` names a report file; None (no cost) if unset."""
    env = os.environ if environ is None else environ
    target = env.get(ENV, "")
    if not target:
        return None
    from fraudnet.errors import ConfigError

    try:
        interval = float(env.get(f"{ENV}_INTERVAL_S", "120"))
        frames = int(env.get(f"{ENV}_FRAMES", "8"))
        top = int(env.get(f"{ENV}_TOP", "15"))
    except ValueError as e:
        raise ConfigError(f"{ENV}_*: {e}") from None
    trim = env.get(f"{ENV}_TRIM", "0")
    if not (interval > 0 and 0 <= frames <= 100 and top >= 1 and trim in ("0", "1")):
        raise ConfigError(
            f"{ENV}_*: interval > 0 s, 0..100 frames, top >= 1 and TRIM 0 or 1 expected"
        )
    if trim == "1" and _malloc_trim() is None:
        raise ConfigError(f"{ENV}_TRIM=1: malloc_trim is not available (glibc only)")
    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as e:
        raise ConfigError(f"{ENV}={target}: cannot write the report ({e.strerror})") from None
    if frames:
        tracemalloc.start(frames)
    mt = MemTrace(path, interval, frames=frames, top=top, trim=trim == "1")
    mt.start()
    return mt
