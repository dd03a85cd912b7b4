"""Tree node layouts and lockstep walks: exact threshold equivalence, float32 vs float64
records give the same scores, and a row's score does not depend on its batch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier

from fraudnet.core.features import FEATURE_NAMES, FeatureConfig, default_model_features
from fraudnet.core.scoring import compiled as C
from fraudnet.training.convert import compile_sklearn
from fraudnet.training.data import TxTable
from fraudnet.training.train import replay_features

NAMES = default_model_features()
DAY = 86400.0
KERNELS = (C.forest_many, getattr(C.forest_many, "py_func", C.forest_many))


@pytest.fixture(scope="module")
def forest():
    rng = np.random.default_rng(5)
    n = 2500
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    term = rng.integers(0, 30, n)
    fraud = ((amount > 220) | (term == 3) | (rng.random(n) < 0.01)).astype(np.int8)
    t = TxTable(tx_id=np.arange(n), ts_s=1.52e9 + np.sort(rng.uniform(0, 30 * DAY, n)),
                customer=rng.integers(0, 80, n), terminal=term, amount=amount, fraud=fraud)  # fmt: skip
    x = replay_features(t, FeatureConfig())
    cols = [FEATURE_NAMES.index(c) for c in NAMES]
    rf = RandomForestClassifier(n_estimators=12, random_state=0).fit(x[:, cols], t.fraud)
    return rf, compile_sklearn(rf, NAMES, FeatureConfig()), x, cols


def test_f32_floor_compares_float32_values_exactly() -> None:
    """For every float32 v: v <= thr exactly when v <= f32_floor(thr) (ties, neighbours,
    the largest float32 and beyond)."""
    rng = np.random.default_rng(7)
    f32max = float(np.finfo(np.float32).max)
    thr = np.concatenate([rng.normal(0, 100, 400), rng.normal(0, 5, 400).astype(np.float32),
                          [0.0, -0.0, 1.5, 220.0, 1e-40, -1e-40, f32max, 2 * f32max,
                           -2 * f32max, 1e300]])  # fmt: skip
    t = C.f32_floor(thr)
    assert t.dtype == np.float32
    with np.errstate(over="ignore"):
        _check_floor(thr, t)


def _check_floor(thr: np.ndarray, t: np.ndarray) -> None:
    for k in range(thr.shape[0]):
        base = np.float32(thr[k]) if np.isfinite(np.float32(thr[k])) else np.float32(0)
        vals = [base, t[k], np.float32(np.inf), np.float32(-np.inf)]
        vals += [np.nextafter(v, np.float32(d)) for v in (base, t[k]) for d in (-np.inf, np.inf)]
        for v in vals:
            assert (float(v) <= thr[k]) == (v <= t[k]), (thr[k], v)


def test_float32_and_float64_records_score_the_same(forest) -> None:
    """Forest-only models get float32 records; the float64 layout (float32-equivalent
    thresholds against unrounded features) scores identically, also for features
    placed exactly on and next to the split thresholds."""
    rf, model, x, cols = forest
    assert model.nodes.dtype == C.NODE_F32 and model.nodes.dtype.itemsize == 24
    wide = C.pack_nodes(model.arrays, C.part_arrays("forest", model.arrays), wide=True)
    assert wide[0].dtype == C.NODE_F64
    # rows whose features sit on, just below and just above real split thresholds
    rng = np.random.default_rng(3)
    a = model.arrays
    internal = np.flatnonzero(a["feature"] >= 0)
    xs = np.repeat(x[:300], 1, axis=0).copy()
    for r in range(xs.shape[0]):
        for _ in range(6):
            node = rng.choice(internal)
            thr = a["threshold"][node]
            v = rng.choice([thr, np.nextafter(thr, -np.inf), np.nextafter(thr, np.inf),
                            float(np.float32(thr))])  # fmt: skip
            xs[r, model.cols[a["feature"][node]]] = v
    want = rf.predict_proba(xs[:, cols])[:, 1]
    nf = len(cols)
    for nodes, trees, parts in (model.tree_args, wide):
        for k in KERNELS:
            for n in (1, xs.shape[0]):
                s, c = np.empty(n), np.empty((n, nf))
                k(np.ascontiguousarray(xs[:n]), model.cols, nodes, trees, parts, s, c)
                assert np.abs(s - want[:n]).max() <= 1e-9


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=599), max_size=6))
def test_scores_do_not_depend_on_batch_boundaries(forest, cuts) -> None:
    """Any split of 600 rows into batches (lockstep rows or trees, several blocks)
    gives bit-identical scores; contributions agree up to summation order."""
    _, model, x, _ = forest
    xs = np.ascontiguousarray(x[:600])
    whole_s, whole_c = model.predict_many(xs)
    bounds = [0, *sorted(set(cuts)), 600]
    for a, b in itertools.pairwise(bounds):
        s, c = model.predict_many(xs[a:b])
        np.testing.assert_array_equal(s, whole_s[a:b])
        np.testing.assert_allclose(c, whole_c[a:b], rtol=0, atol=1e-12)


def test_score_batch_fast_constructor_equals_the_dataclass() -> None:
    import dataclasses

    from fraudnet.core.scoring.base import ScoreBatch, score_batch

    s = np.array([0.25, 0.5])
    r = [("A",), ("LOW_RISK",)]
    fast = score_batch(s, r)
    assert type(fast) is ScoreBatch and fast == ScoreBatch(scores=s, reasons=r)
    assert fast.scores is s and fast.reasons is r
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.scores = s  # type: ignore[misc]
