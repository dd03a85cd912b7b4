"""Invariants of the feature state under arbitrary small streams (Hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.core.features import FEATURE_NAMES, FeatureState

COL = {n: i for i, n in enumerate(FEATURE_NAMES)}
DAY = 86400.0

events = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 3), st.floats(0, 40 * DAY), st.integers(1, 500)),
    min_size=1, max_size=60,
)  # fmt: skip


def arrays(evs):
    evs = sorted(evs, key=lambda e: e[2])
    ck = np.array([e[0] for e in evs], dtype=np.uint64)
    tk = np.array([e[1] for e in evs], dtype=np.uint64)
    ts = np.floor(np.array([e[2] for e in evs])) + 1.5e9
    amt = np.array([e[3] for e in evs], dtype=np.float64)
    return ck, tk, ts, amt


@settings(max_examples=60, deadline=None)
@given(events, st.integers(1, 5))
def test_card_counts_exact_and_batching_irrelevant(evs, batches) -> None:
    ck, tk, ts, amt = arrays(evs)
    one = FeatureState().fold_arrays(ck, tk, ts, amt)
    st_ = FeatureState()
    cuts = np.linspace(0, len(ts), batches + 1).astype(int)
    many = np.vstack([st_.fold_arrays(ck[a:b], tk[a:b], ts[a:b], amt[a:b])
                      for a, b in itertools.pairwise(cuts)])  # fmt: skip
    np.testing.assert_array_equal(one, many)
    for i in range(len(ts)):
        same = (ck[: i + 1] == ck[i]) & (ts[: i + 1] > ts[i] - 7 * DAY)
        assert one[i, COL["CARD_NB_TX_7DAY"]] == same.sum()
        tw = (tk[: i + 1] == tk[i]) & (np.floor(ts[: i + 1] / 3600) > np.floor(ts[i] / 3600) - 24)
        assert one[i, COL["TERM_NB_TX_1DAY"]] == tw.sum()
        assert 1 <= one[i, COL["TERM_DISTINCT_CARDS_1DAY"]] <= tw.sum()


@settings(max_examples=40, deadline=None)
@given(events, st.integers(0, 59))
def test_snapshot_restore_is_invisible(evs, cut) -> None:
    ck, tk, ts, amt = arrays(evs)
    cut = min(cut, len(ts))
    whole = FeatureState().fold_arrays(ck, tk, ts, amt)
    a = FeatureState()
    a.fold_arrays(ck[:cut], tk[:cut], ts[:cut], amt[:cut])
    b = FeatureState.restore(a.snapshot())
    np.testing.assert_array_equal(b.fold_arrays(ck[cut:], tk[cut:], ts[cut:], amt[cut:]),
                                  whole[cut:])  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(events, st.integers(0, 59), st.integers(1, 6))
def test_shard_snapshots_restore_invisibly(evs, cut, n_shards) -> None:
    ck, tk, ts, amt = arrays(evs)
    cut = min(cut, len(ts))
    whole = FeatureState().fold_arrays(ck, tk, ts, amt)
    a = FeatureState()
    a.fold_arrays(ck[:cut], tk[:cut], ts[:cut], amt[:cut])
    b = FeatureState()
    for s in range(n_shards):
        b.restore_shard(a.snapshot_shard(s, n_shards))
    assert (b.n_cards, b.n_terminals) == (a.n_cards, a.n_terminals)
    np.testing.assert_array_equal(b.fold_arrays(ck[cut:], tk[cut:], ts[cut:], amt[cut:]),
                                  whole[cut:])  # fmt: skip
