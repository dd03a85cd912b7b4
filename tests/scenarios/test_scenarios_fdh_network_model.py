"""A scenario whose model reads network columns: in network mode the simulated members
fill them from their received evidence (the node's code path), so a card flagged at one
member scores higher at another; in isolated mode nothing changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from fraudnet.core.features import FEATURE_NAMES, FeatureConfig, feature_index
from fraudnet.core.features.network import NET_COLS, NETWORK_NAMES, NEUTRAL
from fraudnet.replay.scenario import parse_scenario
from fraudnet.replay.simrun import run_mode
from fraudnet.replay.sources import load_data
from fraudnet.training.convert import compile_sklearn
from fraudnet.training.modelio import save_model


def _model_file(tmp_path: Path) -> Path:
    """Fraud = a large amount, or a card another member flagged."""
    rng = np.random.default_rng(0)
    n = 4000
    x = np.zeros((n, len(FEATURE_NAMES)))
    x[:, NET_COLS] = NEUTRAL
    amount = rng.gamma(2.0, 60.0, n)
    x[:, FEATURE_NAMES.index("TX_AMOUNT")] = amount
    flagged = rng.random(n) < 0.3
    x[flagged, NET_COLS[0]] = 1.0
    x[flagged, NET_COLS[1]] = rng.uniform(0.6, 1.0, flagged.sum())
    x[flagged, NET_COLS[2]] = rng.uniform(0, 7200, flagged.sum())
    y = ((amount > 300) | flagged).astype(np.int8)
    names = ("TX_AMOUNT", *NETWORK_NAMES)
    est = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0)
    est.fit(x[:, feature_index(list(names))], y)
    p = tmp_path / "net.model"
    save_model(compile_sklearn(est, names, FeatureConfig(), {}), p)
    return p


def test_network_aware_model_in_a_simulated_network(tmp_path: Path) -> None:
    path = _model_file(tmp_path)
    sc = parse_scenario(f"""
[scenario]
name = "network-model"
seed = 5
modes = ["isolated", "network"]
[network]
members = 4
f = 1
[data]
customers = 120
terminals = 200
days = 1
compromised_customers_per_day = 0
compromised_terminals_per_day = 0
attacks = [{{ kind = "compromised_card", day = 0, count = 6, members = 4, at_s = 30000, duration_s = 7200 }}]
[signals]
threshold = 0.5
[scoring]
scorer = "model"
model = "{path}"
""")  # fmt: skip
    data = load_data(sc.data, sc.network.members, sc.seed)
    iso = {r[1]: r[4] for r in run_mode(sc, "isolated", data).recorder.decisions}
    net = {r[1]: r[4] for r in run_mode(sc, "network", data).recorder.decisions}
    assert iso.keys() == net.keys() and len(iso) > 100
    raised = [t for t in iso if net[t] > iso[t] + 0.3]
    same = [t for t in iso if net[t] == iso[t]]
    assert raised, "no transaction scored higher after another member's signal"
    assert len(same) > 0.8 * len(iso)  # no evidence: the local score, bit for bit
