"""Backtest of the sample amount + velocity policy on FDH data (skipped when absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fraudnet.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
FDH = Path(os.environ.get("FRAUDNET_FDH_DIR", ROOT / "../shared/data/fdh"))
DATA = FDH / "transactions-2018-04-01_2018-06-30.csv.gz"


@pytest.mark.needs_fdh
def test_fdh_amount_velocity_backtest(capsys: pytest.CaptureFixture[str]) -> None:
    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        pytest.skip("872k rows through the pure-Python kernels; the twins are parity-tested")
    from fraudnet.training.data import load_csv

    main(["policy", "backtest", str(ROOT / "examples/policies/fdh-amount-velocity.toml"),
          "--data", str(DATA), "--live", str(ROOT / "examples/policies/fdh-live.toml"),
          "--json"])  # fmt: skip
    rep = json.loads(capsys.readouterr().out)
    t = load_csv(DATA)
    assert rep["transactions"] == len(t) and rep["frauds"] == int(t.fraud.sum())
    cand, live = rep["policies"]
    big = (t.amount > 220).sum()
    assert live["overall"]["flagged"] == int(big)
    rule = {r["id"]: r for r in cand["rules"]}
    assert rule["amount_very_high"]["matched"] == int(big)
    # the candidate catches strictly more fraud than the static amount rule
    assert cand["overall"]["flagged_frauds"] > live["overall"]["flagged_frauds"]
    assert cand["overall"]["fraud_amount_caught"] > live["overall"]["fraud_amount_caught"]
    assert cand["overall"]["block_precision"] > 0.95
    assert np.isclose(
        sum(a["fraud_amount"] for a in cand["by_action"].values()), rep["fraud_amount"], atol=1
    )
