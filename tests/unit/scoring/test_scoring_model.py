"""Compiled models equal scikit-learn, reason codes, model files, ModelScorer contract."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fraudnet.core.features import FEATURE_NAMES, FeatureConfig, default_model_features
from fraudnet.core.pipeline import NodeCore
from fraudnet.core.records import TxColumns
from fraudnet.core.scoring import (
    LOW_RISK,
    ModelScorer,
    Scorer,
    decode_model,
    encode_model,
    model_id_of,
)
from fraudnet.core.scoring import compiled as C
from fraudnet.errors import InputError, ModelError
from fraudnet.training.convert import compile_sklearn
from fraudnet.training.data import TxTable
from fraudnet.training.train import replay_features

NAMES = default_model_features()
DAY = 86400.0


def table(seed: int, n: int = 3000) -> TxTable:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    term = rng.integers(0, 30, n)
    fraud = ((amount > 220) | (term == 3) | (rng.random(n) < 0.01)).astype(np.int8)
    return TxTable(
        tx_id=np.arange(n), ts_s=1.52e9 + np.sort(rng.uniform(0, 40 * DAY, n)),
        customer=rng.integers(0, 100, n), terminal=term, amount=amount, fraud=fraud,
    )  # fmt: skip


@pytest.fixture(scope="module")
def data():
    t = table(0)
    x = replay_features(t, FeatureConfig())
    cols = [FEATURE_NAMES.index(n) for n in NAMES]
    return t, x, cols


def _blend(n_rf: int = 10, n_gbm: int = 20, weights: list[float] | None = None) -> VotingClassifier:
    return VotingClassifier(
        [("rf", RandomForestClassifier(n_estimators=n_rf, min_samples_leaf=5, random_state=0)),
         ("gbm", HistGradientBoostingClassifier(max_iter=n_gbm, random_state=0,
                                                early_stopping=False))],
        voting="soft", weights=weights,
    )  # fmt: skip


@pytest.mark.parametrize(
    "est",
    [RandomForestClassifier(n_estimators=25, random_state=0),
     RandomForestClassifier(n_estimators=10, min_samples_leaf=5, random_state=1),
     ExtraTreesClassifier(n_estimators=10, random_state=0),
     HistGradientBoostingClassifier(max_iter=40, random_state=0, early_stopping=False),
     make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
     _blend(), _blend(weights=[1.0, 3.0])],
    ids=["rf", "rf_leaf", "extra", "hgb", "logreg", "blend", "blend_weighted"],
)  # fmt: skip
def test_compiled_equals_predict_proba_on_held_data(data, est) -> None:
    t, x, cols = data
    est.fit(x[:2000][:, cols], t.fraud[:2000])
    model = compile_sklearn(est, NAMES, FeatureConfig())
    held = x[2000:]
    scores, contrib = model.predict_many(held)
    want = est.predict_proba(held[:, cols])[:, 1]
    assert np.abs(scores - want).max() <= 1e-9
    if model.kind == "forest":  # path attribution sums to score - mean root value
        base = model.arrays["value"][model.arrays["roots"]].mean()
        np.testing.assert_allclose(contrib.sum(axis=1) + base, scores, atol=1e-9)
    if model.kind == "blend":  # parts in probability units: sum to score - blended base score
        a = model.arrays
        rf_base = a["value"][a["roots"][a["tree_part"] == 0]].mean()
        gbm_base = 1.0 / (1.0 + np.exp(-a["part_base"][1]))
        w = a["part_weight"] / a["part_weight"].sum()
        np.testing.assert_allclose(
            contrib.sum(axis=1) + w[0] * rf_base + w[1] * gbm_base, scores, atol=1e-9
        )


def test_kernels_equal_their_python_twins(data) -> None:
    t, x, cols = data
    rf = RandomForestClassifier(n_estimators=5, random_state=0).fit(x[:, cols], t.fraud)
    m = compile_sklearn(rf, NAMES, FeatureConfig())
    a = m.arrays
    outs = []
    for k in (C.forest_many, getattr(C.forest_many, "py_func", C.forest_many)):
        s, c = np.empty(200), np.empty((200, len(cols)))
        k(x[:200], m.cols, *m.tree_args, s, c)
        outs.append((s, c))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    m = compile_sklearn(_blend(3, 10).fit(x[:, cols], t.fraud), NAMES, FeatureConfig())
    outs = []
    for k in (C.forest_many, getattr(C.forest_many, "py_func", C.forest_many)):
        s, c = np.empty(100), np.empty((100, len(cols)))
        k(x[:100], m.cols, *m.tree_args, s, c)
        outs.append((s, c))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=0, atol=1e-12)
    lr = make_pipeline(StandardScaler(), LogisticRegression()).fit(x[:, cols], t.fraud)
    m = compile_sklearn(lr, NAMES, FeatureConfig())
    a = m.arrays
    outs = []
    for k in (C.linear_many, getattr(C.linear_many, "py_func", C.linear_many)):
        s, c = np.empty(200), np.empty((200, len(cols)))
        k(x[:200], m.cols, a["coef"], a["mean"], a["scale"], float(a["intercept"][0]), s, c)
        outs.append((s, c))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])


def test_f32_threshold_equivalence_is_exact() -> None:
    """x <= T(thr) exactly when float32(x) <= thr, including ties and neighbours."""
    rng = np.random.default_rng(3)
    thr = np.concatenate([rng.normal(0, 100, 500), np.float32(rng.normal(0, 5, 500)).astype(float),
                          [0.0, -0.0, 1.5, 220.0, 1e-40, -1e-40]])  # fmt: skip
    t = C.f32_equivalent_threshold(thr)
    for k in range(thr.shape[0]):
        t32 = np.float32(thr[k])
        cands = [thr[k], float(t32), np.nextafter(t[k], -np.inf), t[k], np.nextafter(t[k], np.inf)]
        u = np.nextafter(t32, np.float32(np.inf))
        d = np.nextafter(t32, np.float32(-np.inf))
        cands += [(float(t32) + float(u)) / 2, (float(t32) + float(d)) / 2]
        for xv in cands:
            assert (xv <= t[k]) == (float(np.float32(xv)) <= thr[k]), (thr[k], xv)


def _scorer(data) -> tuple[ModelScorer, TxTable]:
    t, x, cols = data
    rf = RandomForestClassifier(n_estimators=20, random_state=0).fit(x[:, cols], t.fraud)
    return ModelScorer(compile_sklearn(rf, NAMES, FeatureConfig())), table(1, 400)


def test_reason_codes_are_per_transaction(data) -> None:
    scorer, t2 = _scorer(data)
    out = scorer.score_many(t2.columns(with_labels=False))
    assert len(out.reasons) == len(t2) and out.scores.shape == (len(t2),)
    top = {r for r, s in zip(out.reasons, out.scores, strict=True) if s > 0.5}
    assert len(set(out.reasons)) > 3 and top
    assert any(LOW_RISK in r for r in out.reasons)
    assert any("AMOUNT_HIGH" in r for r in top)


def test_model_scorer_meets_the_scorer_contract(data) -> None:
    scorer, t2 = _scorer(data)
    s: Scorer = scorer
    cols = t2.columns(with_labels=False)
    half = len(t2) // 2

    def part(c: TxColumns, sl: slice) -> TxColumns:
        return TxColumns(*(getattr(c, f)[sl] for f in TxColumns.__dataclass_fields__))

    first = s.score_many(part(cols, slice(0, half)))
    snap = s.snapshot()
    rest = s.score_many(part(cols, slice(half, None)))
    s.restore(snap)
    again = s.score_many(part(cols, slice(half, None)))
    np.testing.assert_array_equal(rest.scores, again.scores)
    assert rest.reasons == again.reasons and len(first.scores) == half
    assert len(s.model_id) == 64
    core = NodeCore(scorer, b"k" * 32)
    assert core.scorer.model_id == scorer.model_id


def test_model_file_round_trip_and_identity(data) -> None:
    scorer, _ = _scorer(data)
    blob = encode_model(scorer.model)
    back = decode_model(blob)
    assert model_id_of(blob) == scorer.model_id and encode_model(back) == blob
    x = data[1][:50]
    np.testing.assert_array_equal(back.predict_many(x)[0], scorer.model.predict_many(x)[0])


def test_swap_keeps_state_and_refuses_other_geometry(data) -> None:
    scorer, t2 = _scorer(data)
    scorer.score_many(t2.columns(with_labels=False))
    n_cards = scorer.state.n_cards
    t, x, cols = data
    lr = make_pipeline(StandardScaler(), LogisticRegression()).fit(x[:, cols], t.fraud)
    old = scorer.swap_model(compile_sklearn(lr, NAMES, FeatureConfig()))
    assert old != scorer.model_id and scorer.state.n_cards == n_cards
    with pytest.raises(ModelError, match="swap refused"):
        scorer.swap_model(compile_sklearn(lr, NAMES, FeatureConfig(delay_days=3)))


@pytest.mark.parametrize("damage", [lambda b: b[:100], lambda b: b"FNFS" + b[4:], lambda b: b[:-8]])
def test_damaged_model_file_is_a_model_error(data, damage) -> None:
    scorer, _ = _scorer(data)
    with pytest.raises(ModelError):
        decode_model(damage(encode_model(scorer.model)))


def test_hostile_tree_indices_are_refused(data) -> None:
    scorer, _ = _scorer(data)
    m = scorer.model
    arrays = {k: v.copy() for k, v in m.arrays.items()}
    arrays["left"][0] = 0  # a cycle back to the root
    with pytest.raises(ModelError, match="child"):
        C.CompiledModel(kind="forest", feature_names=m.feature_names, arrays=arrays)
    with pytest.raises(InputError):
        scorer.restore(b"garbage")


def test_blend_reason_codes_differ_between_transactions(data) -> None:
    t, x, cols = data
    model = compile_sklearn(_blend().fit(x[:, cols], t.fraud), NAMES, FeatureConfig())
    out = ModelScorer(model).score_many(table(1, 400).columns(with_labels=False))
    top = [r for r, s in zip(out.reasons, out.scores, strict=True) if s > 0.5]
    assert len(set(out.reasons)) > 3 and top
    assert any("AMOUNT_HIGH" in r for r in top)


def test_blend_model_file_round_trip_and_hostile_parts(data) -> None:
    t, x, cols = data
    model = compile_sklearn(_blend().fit(x[:, cols], t.fraud), NAMES, FeatureConfig())
    blob = encode_model(model)
    back = decode_model(blob)
    assert back.kind == "blend" and encode_model(back) == blob
    np.testing.assert_array_equal(back.predict_many(x[:50])[0], model.predict_many(x[:50])[0])
    bad = [("tree_part", lambda a: a[::-1].copy()), ("part_agg", lambda a: a + 2),
           ("part_weight", lambda a: -a), ("part_base", lambda a: np.full_like(a, np.inf))]  # fmt: skip
    for name, f in bad:
        arrays = {k: v.copy() for k, v in model.arrays.items()}
        arrays[name] = f(arrays[name])
        with pytest.raises(ModelError, match="blend"):
            C.CompiledModel(kind="blend", feature_names=model.feature_names, arrays=arrays)
    arrays = {k: v for k, v in model.arrays.items() if k != "part_agg"}
    with pytest.raises(ModelError, match="part_agg"):
        C.CompiledModel(kind="blend", feature_names=model.feature_names, arrays=arrays)


def test_tree_child_in_another_tree_is_refused(data) -> None:
    scorer, _ = _scorer(data)
    m = scorer.model
    arrays = {k: v.copy() for k, v in m.arrays.items()}
    internal = np.flatnonzero(arrays["feature"][: arrays["roots"][1]] >= 0)
    arrays["right"][internal[0]] = arrays["roots"][1]  # jump into the next tree
    with pytest.raises(ModelError, match="outside its tree"):
        C.CompiledModel(kind="forest", feature_names=m.feature_names, arrays=arrays)


@pytest.mark.parametrize("n", [1, 3, C.SMALL_BATCH])
def test_small_batches_walk_rows_with_the_same_scores(data, n) -> None:
    """Small batches take the row-by-row lockstep walk: same scores as the tree-major walk,
    contributions equal up to summation order; its Python twin agrees."""
    t, x, cols = data
    model = compile_sklearn(_blend(7, 9).fit(x[:, cols], t.fraud), NAMES, FeatureConfig())
    big_s, big_c = model.predict_many(x[:40])
    for k in (C.forest_many, getattr(C.forest_many, "py_func", C.forest_many)):
        for s0 in range(0, 40 - n, 9):
            s, c = np.empty(n), np.empty((n, len(cols)))
            k(np.ascontiguousarray(x[s0 : s0 + n]), model.cols, *model.tree_args, s, c)
            np.testing.assert_array_equal(s, big_s[s0 : s0 + n])
            np.testing.assert_allclose(c, big_c[s0 : s0 + n], rtol=0, atol=1e-12)
