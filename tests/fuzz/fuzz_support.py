"""Shared harness of the fuzzers: ONE settings profile, structure-aware mutations, oracles.

Every fuzz target is one function ``check(case)`` plus a strategy that builds
cases by *mutating valid encodings* (not only random bytes): bit flips,
truncations, insertions, deletions, splices of two valid encodings, msgpack
headers claiming huge lengths, deep nesting, and -- one level up -- wrong types
and out-of-range values swapped into the decoded structure, re-encoded (and,
where a signature guards the bytes, re-signed so the inner decoder is reached).

A target runs in two passes from the same test (:func:`fuzz_modes`):

* ``quick`` -- the default suite: :data:`QUICK_CASES` cases, derandomised so CI
  is reproducible (the corpus of a quick pass is the same every run);
* ``long`` -- marker ``fuzz`` (``tox -e fuzz`` / ``pytest -m fuzz``):
  :data:`LONG_CASES` (default 100,000, env ``FRAUDNET_FUZZ_CASES``) random cases
  per target, no shrinking of passing runs.

The oracle (:func:`run_target`) enforces for every case:

* it ends in a valid result or one of the allowed ``fraudnet.errors`` classes:
  any other exception fails the test with the case;
* bounded time: a case over :data:`CASE_SECONDS` of CPU time is interrupted
  (``ITIMER_PROF``) and fails as a hang (CPU, not wall time: a descheduled
  process on a shared machine is not hanging);
* bounded memory: the process's peak RSS never grows by more than
  :data:`PASS_MEMORY` over a pass (checked after every case, so no single case
  can allocate more), and every :data:`TRACE_EVERY`-th case runs under
  tracemalloc (numpy allocations are traced too) with its traced peak under
  :data:`CASE_MEMORY` (tracing every case would cost ~10x the run time).

Throughput (cases/s) of a pass is printed to stdout and appended, one JSON
line per pass, to ``$FRAUDNET_FUZZ_REPORT`` when set.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

QUICK_CASES = int(os.environ.get("FRAUDNET_FUZZ_QUICK", "200"))
LONG_CASES = int(os.environ.get("FRAUDNET_FUZZ_CASES", "100000"))
CASE_SECONDS = 5.0
CASE_MEMORY = 64 * 1024 * 1024
PASS_MEMORY = 512 * 1024 * 1024
TRACE_EVERY = 16

#: the two passes of every target: ``@pytest.mark.parametrize("mode", fuzz_modes())``
MODES = ("quick", pytest.param("long", marks=pytest.mark.fuzz))


def fuzz_modes() -> tuple[Any, ...]:
    return MODES


def profile(mode: str) -> settings:
    """THE settings profile of every fuzz target (see module docstring)."""
    common: dict[str, Any] = {
        "database": None,
        "deadline": None,  # wall clock is meaningless on a shared machine: see _time_bound
        "suppress_health_check": list(HealthCheck),
        "print_blob": True,
    }
    if mode == "quick":
        return settings(max_examples=QUICK_CASES, derandomize=True, **common)
    return settings(
        max_examples=LONG_CASES,
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
        **common,
    )


def _max_rss() -> int:
    """Peak resident set size of this process in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CaseHang(BaseException):
    """Raised inside a case that ran past :data:`CASE_SECONDS` (BaseException: no
    ``except Exception`` in the code under test can swallow it)."""


@contextlib.contextmanager
def _time_bound(seconds: float) -> Iterator[list[bool]]:
    """Interrupt the case after ``seconds`` of *CPU* time (ITIMER_PROF).

    CPU time, not wall time: on a loaded, shared machine a niced process can be
    descheduled for seconds, which is no hang; an endless loop burns CPU and is
    caught. ``fired[0]`` tells the caller even if the code under test (or a GC
    callback) swallowed the :class:`CaseHang`.
    """
    fired = [False]

    def on_alarm(signum: int, frame: Any) -> None:
        fired[0] = True
        raise CaseHang(f"case used more than {seconds} s of CPU (hang)")

    old = signal.signal(signal.SIGPROF, on_alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def run_target(
    name: str,
    mode: str,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], object],
    allowed: tuple[type[BaseException], ...],
) -> None:
    """Run ``check`` on ``strategy`` cases under the profile of ``mode`` and the oracle."""
    count = [0]
    rss0 = _max_rss()

    def one(case: Any) -> None:
        count[0] += 1
        traced = count[0] % TRACE_EVERY == 0
        if traced:
            tracemalloc.start()
        fired = [False]
        try:
            with _time_bound(CASE_SECONDS) as fired:
                check(case)
        except allowed:
            pass
        except CaseHang as e:
            raise AssertionError(f"{name}: {e}") from None
        finally:
            peak = tracemalloc.get_traced_memory()[1] if traced else 0
            if traced:
                tracemalloc.stop()
        assert not fired[0], f"{name}: case used more than {CASE_SECONDS} s of CPU (hang)"
        assert peak < CASE_MEMORY, f"{name}: one case allocated {peak} bytes"
        grew = _max_rss() - rss0
        assert grew < PASS_MEMORY, f"{name}: peak RSS grew by {grew} bytes"

    test = profile(mode)(given(strategy)(one))
    t0 = time.perf_counter()
    test()
    dt = time.perf_counter() - t0
    line = {"target": name, "mode": mode, "cases": count[0], "seconds": round(dt, 2),
            "cases_per_s": round(count[0] / dt, 1) if dt > 0 else None}  # fmt: skip
    print(json.dumps(line), file=sys.stdout)
    report = os.environ.get("FRAUDNET_FUZZ_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


# -- byte-level mutations of valid encodings -----------------------------------

_BYTE_OPS = st.sampled_from(
    ("flip", "truncate", "insert", "delete", "splice", "magic", "repeat", "nest")
)
_VALUE_OPS = st.sampled_from(("replace", "drop", "dup", "append", "wrap"))


def _pick(draw: st.DrawFn, items: Sequence[Any]) -> Any:
    # an index, not st.sampled_from(items): building a strategy per draw is slow
    return items[draw(st.integers(0, len(items) - 1))]


#: msgpack headers that claim huge lengths, reserved/ext codes, floats, nil, deep nests
MAGIC: tuple[bytes, ...] = (
    b"\xdd\xff\xff\xff\xff",  # array32 of 4G items
    b"\xdf\xff\xff\xff\xff",  # map32 of 4G pairs
    b"\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB
    b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
    b"\xdc\xff\xff",  # array16
    b"\xde\xff\xff",  # map16
    b"\xc5\xff\xff",  # bin16
    b"\xda\xff\xff",  # str16
    b"\xd9\xff",  # str8
    b"\xc4\xff",  # bin8
    b"\xc1",  # never used
    b"\xc0",  # nil
    b"\xc2",  # false
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # float64 NaN
    b"\xca\x7f\x80\x00\x00",  # float32 inf
    b"\xd4\x01\x00",  # fixext1
    b"\xc7\xff\x05",  # ext8
    b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",  # int64 min
    b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",  # uint64 max
    b"\x91" * 200,  # nested fixarrays
    b"\x81\xa1k" * 100,  # nested fixmaps
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
)


@st.composite
def mutate_bytes(
    draw: st.DrawFn, seeds: Sequence[bytes], *, max_ops: int = 3, magic: Sequence[bytes] = MAGIC
) -> bytes:
    """A valid encoding from ``seeds`` after 0-``max_ops`` structure-aware mutations."""
    data = bytearray(_pick(draw, seeds))
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(_BYTE_OPS)
        n = len(data)
        pos = draw(st.integers(0, max(0, n)))
        if op == "flip" and n:
            for _ in range(draw(st.integers(1, 8))):
                i = draw(st.integers(0, n - 1))
                data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "splice":
            other = _pick(draw, seeds)
            cut = draw(st.integers(0, len(other)))
            data = data[:pos] + bytearray(other[cut:])
        elif op == "magic":
            m = _pick(draw, magic)
            if draw(st.booleans()):
                data[pos : pos + len(m)] = m  # overwrite
            else:
                data[pos:pos] = m  # insert
        elif op == "repeat" and n:
            a = draw(st.integers(0, n - 1))
            b = draw(st.integers(a, min(n, a + 64)))
            data[pos:pos] = data[a:b] * draw(st.integers(1, 50))
        elif op == "nest":
            data = bytearray(b"\x91" * draw(st.integers(1, 3000))) + data
    return bytes(data)


# -- structure-level mutations of decoded msgpack values -------------------------

WEIRD: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2**31, 2**32, 2**63 - 1, -(2**63), 2**64 - 1]),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "x" * 70, "é" * 40, "\x00", "card", "signals", "1" * 19]),
    st.binary(max_size=40),
    st.sampled_from([b"", b"\x00" * 32, b"\xff" * 64, b"\x00" * 5000]),
    st.just([]),
    st.just({}),
    st.just({"k": 1}),
    st.just({1: 2}),
    st.lists(st.integers(0, 3), max_size=5),
    st.just([[[[[[[[]]]]]]]]),
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            out += _paths(x, (*prefix, i))
    elif isinstance(obj, dict):
        for k, x in obj.items():
            out += _paths(x, (*prefix, k))
    return out


def _replace(obj: Any, path: tuple[Any, ...], fn: Callable[[Any], Any]) -> Any:
    if not path:
        return fn(obj)
    head, rest = path[0], path[1:]
    if isinstance(obj, list):
        out = list(obj)
        out[head] = _replace(obj[head], rest, fn)
        return out
    out_d = dict(obj)
    out_d[head] = _replace(obj[head], rest, fn)
    return out_d


@st.composite
def mutate_value(draw: st.DrawFn, seeds: Sequence[Any], *, max_ops: int = 2) -> Any:
    """A decoded value from ``seeds`` with wrong types / lengths swapped in at random paths."""
    obj = _pick(draw, seeds)
    for _ in range(draw(st.integers(1, max_ops))):
        path = _pick(draw, _paths(obj))
        op = draw(_VALUE_OPS)
        if op == "replace":
            w = draw(WEIRD)
            obj = _replace(obj, path, lambda _x, w=w: w)
        elif op == "drop":
            obj = _replace(obj, path, _drop_one(draw))
        elif op == "dup":
            obj = _replace(obj, path, lambda x: [x, x] if not isinstance(x, list) else x + x)
        elif op == "append":
            w = draw(WEIRD)
            obj = _replace(obj, path, lambda x, w=w: [*x, w] if isinstance(x, list) else x)
        else:
            obj = _replace(obj, path, lambda x: [x])
    return obj


def _drop_one(draw: st.DrawFn) -> Callable[[Any], Any]:
    i = draw(st.integers(0, 1000))

    def fn(x: Any) -> Any:
        if isinstance(x, list) and x:
            return x[: i % len(x)] + x[i % len(x) + 1 :]
        if isinstance(x, dict) and x:
            k = list(x)[i % len(x)]
            return {kk: v for kk, v in x.items() if kk != k}
        return x

    return fn


def scratch_dir(prefix: str) -> Path:
    """A private temporary directory removed when the test process exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


def pack(obj: Any) -> bytes:
    """msgpack bytes of ``obj`` (ints beyond 64 bits become their string)."""
    try:
        out = msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        out = msgpack.packb(repr(obj), use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
