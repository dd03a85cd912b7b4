"""The fused score kernel equals the unfused path and its twin; drift metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fraudnet.core.features import FEATURE_NAMES, FeatureConfig, default_model_features
from fraudnet.core.records import TxColumns
from fraudnet.core.scoring import ModelScorer
from fraudnet.core.scoring import fused as F
from fraudnet.core.scoring.reasons import reasons_many
from fraudnet.errors import InputError
from fraudnet.training.convert import compile_sklearn
from fraudnet.training.data import TxTable
from fraudnet.training.train import decile_bins, replay_features

NAMES = default_model_features()
DAY = 86400.0


def table(seed: int, n: int) -> TxTable:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    term = rng.integers(0, 30, n)
    fraud = ((amount > 220) | (term == 3) | (rng.random(n) < 0.01)).astype(np.int8)
    return TxTable(
        tx_id=np.arange(n), ts_s=1.52e9 + np.sort(rng.uniform(0, 40 * DAY, n)),
        customer=rng.integers(0, 100, n), terminal=term, amount=amount, fraud=fraud,
    )  # fmt: skip


def part(c: TxColumns, sl: slice) -> TxColumns:
    return TxColumns(*(getattr(c, f)[sl] for f in TxColumns.__dataclass_fields__))


@pytest.fixture(scope="module")
def trained():
    t = table(0, 3000)
    x = replay_features(t, FeatureConfig())
    cols = [FEATURE_NAMES.index(n) for n in NAMES]
    return t, x, cols


@pytest.mark.parametrize(
    "est",
    [RandomForestClassifier(n_estimators=15, random_state=0),
     HistGradientBoostingClassifier(max_iter=30, random_state=0, early_stopping=False),
     make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
     VotingClassifier([("rf", RandomForestClassifier(n_estimators=8, random_state=0)),
                       ("gbm", HistGradientBoostingClassifier(max_iter=15, random_state=0))],
                      voting="soft")],
    ids=["forest", "gbm", "linear", "blend"],
)  # fmt: skip
def test_fused_equals_unfused_path_for_every_kind(trained, est) -> None:
    t, x, cols = trained
    est.fit(x[:, cols], t.fraud)
    model = compile_sklearn(est, NAMES, FeatureConfig())
    fused, plain = ModelScorer(model), ModelScorer(model)
    t2 = table(1, 600).columns(with_labels=False)
    for sl in (slice(0, 1), slice(1, 2), slice(2, 300), slice(300, 600)):
        got = fused.score_many(part(t2, sl))
        xf = plain.features_many(part(t2, sl))
        scores, contrib = model.predict_many(xf)
        np.testing.assert_array_equal(got.scores, scores)
        assert got.reasons == reasons_many(contrib, model.reason_of)
        np.testing.assert_allclose(
            got.scores, est.predict_proba(xf[:, cols])[:, 1], rtol=0, atol=1e-9
        )
    assert fused.snapshot() == plain.snapshot()


def test_fused_kernel_equals_its_python_twin(trained) -> None:
    t, x, cols = trained
    rf = RandomForestClassifier(n_estimators=5, random_state=0).fit(x[:, cols], t.fraud)
    model = compile_sklearn(rf, NAMES, FeatureConfig())
    out = []
    for kern in (F.score_fused, getattr(F.score_fused, "py_func", F.score_fused)):
        sc = ModelScorer(model)
        c = table(2, 200).columns(with_labels=False)
        n = len(c)
        bufs = (np.empty(n, np.int64), np.empty((n, len(FEATURE_NAMES))))
        res = (np.empty(n), np.empty((n, len(cols))), np.empty(n, np.int64))
        r = kern(*sc.state.fold_state_args(), *sc._margs, sc.feature_sums, sc._edges,
                 sc._fcounts, sc._score_counts, sc._score_sum, *bufs, *res[1:], c.card_key,
                 c.terminal_key, c.ts_s, c.amount, c.label, 0, res[0])  # fmt: skip
        assert r == n
        out.append((res, sc.snapshot(), sc._score_counts.copy()))
    for a, b in zip(out[0][0], out[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert out[0][1] == out[1][1]
    np.testing.assert_array_equal(out[0][2], out[1][2])


def test_bad_row_is_named_and_nothing_is_folded(trained) -> None:
    t, x, cols = trained
    rf = RandomForestClassifier(n_estimators=3, random_state=0).fit(x[:, cols], t.fraud)
    sc = ModelScorer(compile_sklearn(rf, NAMES, FeatureConfig()))
    c = table(3, 10).columns(with_labels=False)
    c.amount[4] = np.nan
    before = sc.snapshot()
    with pytest.raises(InputError, match="row 4"):
        sc.score_many(c)
    assert sc.snapshot() == before and sc.scored == 0
    c.amount[4] = 1.0
    c.ts_s[2] = -5.0
    with pytest.raises(InputError, match="row 2"):
        sc.score_many(c)


def test_drift_metrics_histogram_and_psi(trained) -> None:
    t, x, cols = trained
    xt = x[:, cols]
    rf = RandomForestClassifier(n_estimators=10, random_state=0).fit(xt, t.fraud)
    edges, frac = decile_bins(xt)
    meta = {"train_mean": xt.mean(axis=0).tolist(), "train_std": xt.std(axis=0).tolist(),
            "train_edges": edges.tolist(), "train_bin_frac": frac.tolist()}  # fmt: skip
    model = compile_sklearn(rf, NAMES, FeatureConfig(), meta)
    same = ModelScorer(model)
    same.score_many(t.columns(with_labels=True))  # the training data itself, labels too
    m = same.drift_metrics()
    h = m["score_histogram"]
    assert h["count"] == len(t) == m["scored"] and h["buckets"][-1] == ["+Inf", len(t)]
    counts = [c for _, c in h["buckets"]]
    assert counts == sorted(counts)  # cumulative
    assert max(m["feature_psi"].values()) < 0.01  # same distribution: no drift
    assert max(abs(v) for v in m["feature_mean_shift"].values()) < 1e-9
    # amounts x 3: the amount features drift, the weekend flag does not
    shifted = ModelScorer(model)
    c = t.columns(with_labels=True)
    shifted.score_many(TxColumns(c.card_key, c.terminal_key, c.ts_s, c.amount * 3, c.mcc,
                                 c.channel, c.label))  # fmt: skip
    psi = shifted.drift_metrics()["feature_psi"]
    assert psi["TX_AMOUNT"] > 0.25 and psi["TX_DURING_WEEKEND"] < 0.01
    # a model file without training bins still exports histogram and mean shift
    bare = ModelScorer(compile_sklearn(rf, NAMES, FeatureConfig()))
    bare.score_many(part(c, slice(0, 50)))
    assert bare.drift_metrics()["feature_psi"] == {}
    assert bare.drift_metrics()["score_histogram"]["count"] == 50
