"""Velocity windows: kernel twin parity, the bucket reference, bounds, eviction, late events."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudnet.core.features.velocity_kernel import fold_velocity_many
from fraudnet.core.policy.velocity import (
    VelocityKey,
    VelocitySpec,
    VelocityState,
    VelocityStore,
)
from fraudnet.errors import PolicyError


def twin(kernel):  # type: ignore[no-untyped-def]
    return getattr(kernel, "py_func", kernel)


def stream(seed: int, n: int = 400, ents: int = 7, span: float = 6 * 3600.0):
    rng = np.random.default_rng(seed)
    ts = 1.7e9 + np.sort(rng.uniform(0, span, n))
    return (
        rng.integers(0, ents, n).astype(np.uint64),
        rng.random(n) < 0.9,
        ts,
        np.round(rng.gamma(2.0, 30.0, n), 2),
    )


def reference(keys, present, ts, amt, window: float, bucket: float):  # type: ignore[no-untyped-def]
    """Direct computation of the documented semantics: buckets b-n+1..b of the entity."""
    n = round(window / bucket)
    cnt = np.full(ts.shape[0], np.nan)
    sm = np.full(ts.shape[0], np.nan)
    order = np.argsort(ts, kind="stable")
    seen: list[int] = []
    for i in order:
        if present[i]:
            seen.append(int(i))
            b = math.floor(ts[i] / bucket)
            mine = [
                j
                for j in seen
                if keys[j] == keys[i] and b - n + 1 <= math.floor(ts[j] / bucket) <= b
            ]
            cnt[i] = len(mine)
            sm[i] = sum(amt[j] for j in mine)
    return cnt, sm


def run_kernel(kernel, key: VelocityKey, keys, present, ts, amt):  # type: ignore[no-untyped-def]
    st = VelocityState(key, max_entities=1024)
    n = ts.shape[0]
    oc, osum = np.empty(n), np.empty(n)
    order = np.argsort(ts, kind="stable").astype(np.int64)
    done = kernel(
        st.tab_keys, st.tab_slot, st.slot_keys, st.meta, st.head, st.cnt, st.sum, st.last,
        st.wcnt, st.wsum,
        keys, present, ts, amt, order, 0, key.buckets, key.bucket_s, oc, osum, st.counters,
    )  # fmt: skip
    assert done == n
    return oc, osum


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_matches_twin_and_reference(seed: int) -> None:
    keys, present, ts, amt = stream(seed)
    key = VelocityKey("card", 3600.0, 300.0)
    c1, s1 = run_kernel(fold_velocity_many, key, keys, present, ts, amt)
    c2, s2 = run_kernel(twin(fold_velocity_many), key, keys, present, ts, amt)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_allclose(s1, s2, rtol=0, atol=1e-9)
    rc, rs = reference(keys, present, ts, amt, 3600.0, 300.0)
    np.testing.assert_array_equal(np.isnan(c1), ~present)
    np.testing.assert_array_equal(c1[present], rc[present])
    np.testing.assert_allclose(s1[present], rs[present], atol=1e-6)


def test_error_bound_against_exact_window() -> None:
    keys, present, ts, amt = stream(5, n=600)
    present[:] = True
    st = VelocityState(VelocityKey("card", 3600.0, 300.0))
    c, _ = st.fold_many(keys, present, ts, amt)
    for i in range(ts.shape[0]):
        same = keys == keys[i]
        exact = int((same & (ts > ts[i] - 3600.0) & (ts <= ts[i])).sum())
        narrower = int((same & (ts > ts[i] - 3600.0 + 300.0) & (ts <= ts[i])).sum())
        assert narrower <= c[i] <= exact  # never counts outside the window; misses <= 1 bucket


def test_batch_split_gives_the_same_values() -> None:
    keys, present, ts, amt = stream(3)
    key = VelocityKey("terminal", 1800.0, 60.0)
    whole = VelocityState(key).fold_many(keys, present, ts, amt)
    st = VelocityState(key)
    cuts = ((0, 150), (150, 151), (151, 400))
    parts = [st.fold_many(keys[s:e], present[s:e], ts[s:e], amt[s:e]) for s, e in cuts]
    np.testing.assert_array_equal(whole[0], np.concatenate([p[0] for p in parts]))


def test_growth_and_eviction_are_bounded_and_counted() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    keys = rng.permutation(n).astype(np.uint64)
    ts = 1.7e9 + np.arange(n) * 1.0
    st = VelocityState(VelocityKey("card", 60.0, 10.0), max_entities=256)
    c, _ = st.fold_many(keys, np.ones(n, bool), ts, np.ones(n))
    assert st.capacity == 256 and st.entities <= 256
    assert st.evicted_idle > 0  # idle beyond the window: lossless
    assert (c == 1).all()  # every key seen once
    # a burst of distinct active keys forces LRU eviction (counted)
    st2 = VelocityState(VelocityKey("card", 86400.0, 3600.0), max_entities=64)
    st2.fold_many(keys[:1000], np.ones(1000, bool), np.full(1000, 1.7e9), np.ones(1000))
    assert st2.evicted_active > 0 and st2.entities <= 64


def test_late_events_beyond_the_ring_are_dropped_and_counted() -> None:
    st = VelocityState(VelocityKey("card", 600.0, 60.0))
    k = np.array([1], np.uint64)
    p = np.array([True])
    st.fold_many(k, p, np.array([1.7e9 + 3600.0]), np.array([1.0]))
    c, _ = st.fold_many(k, p, np.array([1.7e9]), np.array([1.0]))
    assert st.late_dropped == 1
    assert c[0] == 0
    c2, _ = st.fold_many(k, p, np.array([1.7e9 + 3601.0]), np.array([1.0]))
    assert c2[0] == 2  # the late one was not added


def test_store_folds_each_key_once_for_many_specs() -> None:
    keys, _present, ts, amt = stream(1)
    from policy_helpers import batch

    inp = batch(ts.shape[0], ts_s=ts, amount=amt, card_key=keys)
    key = VelocityKey("card", 3600.0, 300.0)
    specs = {"a": VelocitySpec("a", "count", key), "b": VelocitySpec("b", "sum", key),
             "c": VelocitySpec("c", "count", key)}  # fmt: skip
    store = VelocityStore()
    vals = store.fold_many(specs, inp)
    assert len(store.states) == 1
    np.testing.assert_array_equal(vals["a"], vals["c"])
    solo = VelocityState(key).fold_many(keys, np.ones(len(ts), bool), ts, amt)
    np.testing.assert_array_equal(vals["a"], solo[0])
    np.testing.assert_allclose(vals["b"], solo[1])
    assert store.retain(set()) == [key] and not store.states


def test_bad_specs_and_inputs() -> None:
    with pytest.raises(PolicyError, match="resolution must divide"):
        VelocitySpec("v", "count", VelocityKey("card", 3600.0, 7.0 * 60))
    with pytest.raises(PolicyError, match="measure"):
        VelocitySpec("v", "max", VelocityKey("card", 3600.0, 60.0))
    st = VelocityState(VelocityKey("card", 60.0, 10.0))
    with pytest.raises(PolicyError, match="non-finite"):
        st.fold_many(np.array([1], np.uint64), np.array([True]), np.array([np.nan]), np.ones(1))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_running_totals_match_the_ring_with_out_of_order_batches(seed: int) -> None:
    """Batches arrive out of order (late events); the O(1) running window totals must
    always equal the sum of the ring buckets they stand for, and in-order transactions
    see exactly that sum."""
    rng = np.random.default_rng(seed)
    keys, present, ts, amt = stream(seed, n=600, span=4 * 3600.0)
    key = VelocityKey("card", 1800.0, 120.0)
    st = VelocityState(key)
    cuts = np.sort(rng.choice(np.arange(1, 600), 9, replace=False))
    chunks = np.split(np.arange(600), cuts)
    rng.shuffle(chunks)
    n, L = key.buckets, st.length
    for idx in chunks:
        st.fold_many(keys[idx], present[idx], ts[idx], amt[idx])
        for s in range(st.entities):
            h = int(st.head[s])
            xs = [x % L for x in range(h - n + 1, h + 1)]
            assert st.wcnt[s] == st.cnt[s, xs].sum()
            assert st.wsum[s] == pytest.approx(st.sum[s, xs].sum(), abs=1e-6)


def test_snapshot_restore_continues_the_windows() -> None:
    keys, _present, ts, amt = stream(4)
    from policy_helpers import batch

    specs = {
        "c": VelocitySpec("c", "count", VelocityKey("card", 3600.0, 300.0)),
        "s": VelocitySpec("s", "sum", VelocityKey("terminal", 1800.0, 60.0)),
    }
    inp = batch(ts.shape[0], ts_s=ts, amount=amt, card_key=keys, terminal_key=keys // 2)
    idx_a, idx_b = np.arange(250), np.arange(250, ts.shape[0])
    whole = VelocityStore().fold_many(specs, inp)
    first = VelocityStore()
    first.fold_many(specs, inp.take(idx_a))
    restored = VelocityStore.restore(first.snapshot())
    ents = {k: v["entities"] for k, v in first.stats().items()}
    assert {k: v["entities"] for k, v in restored.stats().items()} == ents
    rest = restored.fold_many(specs, inp.take(idx_b))
    np.testing.assert_array_equal(rest["c"], whole["c"][idx_b])
    np.testing.assert_allclose(rest["s"], whole["s"][idx_b])


def test_damaged_snapshot_is_an_input_error() -> None:
    from policy_helpers import batch

    from fraudnet.errors import InputError

    store = VelocityStore()
    store.fold_many({"c": VelocitySpec("c", "count", VelocityKey("card", 60.0, 10.0))}, batch(3))
    data = store.snapshot()
    with pytest.raises(InputError, match="velocity snapshot"):
        VelocityStore.restore(data[:20])
    with pytest.raises(InputError, match="velocity snapshot"):
        VelocityStore.restore(b"FNFS" + data[4:])
