"""The blend candidate: validation reuses its parts' predictions, and that equals fitting
the soft-voting ensemble; the trained blend compiles with predict_proba parity."""

from __future__ import annotations

import numpy as np

from fraudnet.core.features import FeatureConfig, feature_index
from fraudnet.training import train as T
from fraudnet.training.convert import compile_sklearn
from fraudnet.training.data import TxTable

DAY = 86400.0


def _table(n: int = 6000, days: int = 40, seed: int = 0) -> TxTable:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    term = rng.integers(0, 60, n)
    fraud = ((amount > 200) | (term == 7) | (rng.random(n) < 0.01)).astype(np.int8)
    ts = 1.5226848e9 + np.sort(rng.uniform(0, days * DAY, n))  # from 2018-04-03
    return TxTable(tx_id=np.arange(n), ts_s=ts, customer=rng.integers(0, 200, n),
                   terminal=term, amount=amount, fraud=fraud)  # fmt: skip


def _small_candidates(monkeypatch) -> None:
    # small parts keep the test fast; the blend factory reads CANDIDATES at call time
    monkeypatch.setitem(T.CANDIDATES, "rf_leaf5", lambda jobs: T.RandomForestClassifier(
        n_estimators=8, min_samples_leaf=5, random_state=0, n_jobs=jobs))  # fmt: skip
    monkeypatch.setitem(T.CANDIDATES, "hgb", lambda jobs: T.HistGradientBoostingClassifier(
        max_iter=20, early_stopping=False, random_state=0))  # fmt: skip


def test_blend_validation_equals_fitting_the_voting_ensemble(monkeypatch) -> None:
    _small_candidates(monkeypatch)
    t = _table()
    x = T.replay_features(t, FeatureConfig())
    cols = feature_index(list(T.FEATURE_SETS["all"]))
    start = int(t.day.min()) + 24
    cache: dict[str, np.ndarray] = {}
    tr = (t.day >= start) & (t.day < start + 7)
    te = (t.day >= start + 7) & (t.day < start + 14)
    got = T._proba("blend", cache, x[tr][:, cols], t.fraud[tr], x[te][:, cols], 1)
    assert set(cache) == {"blend", "rf_leaf5", "hgb"}  # parts fitted once, reused
    est = T.fit("blend", x[tr][:, cols], t.fraud[tr])
    np.testing.assert_array_equal(got, est.predict_proba(x[te][:, cols]))
    v = T.validate(t, x, cols, start, 7, 7, ["rf_leaf5", "hgb", "blend"], 1)
    assert set(v) == {"rf_leaf5", "hgb", "blend"} and v["blend"]["folds"] >= 1


def test_trained_blend_compiles_with_parity(monkeypatch) -> None:
    _small_candidates(monkeypatch)
    t = _table(seed=1)
    config = FeatureConfig()
    x = T.replay_features(t, config)
    start = int(t.day.min()) + 24
    res = T.train(t, x, start_day=start, candidates=["blend"], feature_set="all", config=config)
    assert res.model.kind == "blend" and res.candidate == "blend"
    assert res.model.meta["candidate"] == "blend" and res.model.n_trees == 28
    cols = feature_index(list(T.FEATURE_SETS["all"]))
    tr = (t.day >= start) & (t.day < start + 7)
    est = T.fit("blend", x[tr][:, cols], t.fraud[tr])
    held = x[~tr]
    scores, _ = res.model.predict_many(held)
    assert np.abs(scores - est.predict_proba(held[:, cols])[:, 1]).max() <= 1e-9
    again = compile_sklearn(est, T.FEATURE_SETS["all"], config, res.model.meta)
    np.testing.assert_array_equal(again.predict_many(held)[0], scores)
