"""A scenario can name a trained model file: every member scores with a ModelScorer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fraudnet.core.features import FEATURE_NAMES, FeatureConfig, default_model_features
from fraudnet.core.scoring.baseline import BaselineScorer
from fraudnet.replay.runner import run_scenario
from fraudnet.replay.scenario import parse_scenario
from fraudnet.replay.simrun import _scorer_factory
from fraudnet.training.convert import compile_sklearn
from fraudnet.training.data import TxTable
from fraudnet.training.modelio import save_model
from fraudnet.training.train import replay_features


def _model_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 2000
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    t = TxTable(
        tx_id=np.arange(n), ts_s=1.52e9 + np.sort(rng.uniform(0, 20 * 86400.0, n)),
        customer=rng.integers(0, 80, n), terminal=rng.integers(0, 30, n), amount=amount,
        fraud=((amount > 220) | (rng.random(n) < 0.01)).astype(np.int8),
    )  # fmt: skip
    names = default_model_features()
    x = replay_features(t, FeatureConfig())[:, [FEATURE_NAMES.index(c) for c in names]]
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, t.fraud)
    p = tmp_path / "m.model"
    save_model(compile_sklearn(est, names, FeatureConfig()), p)
    return p


def test_scenario_with_a_model_file(tmp_path: Path) -> None:
    path = _model_file(tmp_path)
    sc = parse_scenario(f"""
[scenario]
name = "with-model"
seed = 4
modes = ["isolated", "network"]
[data]
customers = 80
terminals = 160
days = 1
compromised_customers_per_day = 2
attacks = [{{ kind = "compromised_card", day = 0, count = 5, members = 4, at_s = 40000 }}]
[scoring]
scorer = "model"
model = "{path}"
[expect]
exactly_one_decision = true
""")  # fmt: skip
    scorer = _scorer_factory(sc)("m00")
    assert scorer.model_id != BaselineScorer.model_id
    rep = run_scenario(sc)
    assert rep["expectations"]["passed"], rep["expectations"]
    for m in rep["modes"].values():
        assert m["decisions"] == rep["transactions"] > 50
        assert m["average_precision"] is not None
