"""A node process with a trained model: deploy without restart, drift metrics, audit records."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import requests

from fraudnet.testing import run_cli, running_node, wait_for

pytestmark = pytest.mark.integration

HEADER = ("TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,"
          "TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO")  # fmt: skip


def _fdh_like(path: Path, seed: int, n: int = 6000, days: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    secs = np.sort(rng.integers(0, days * 86400, n))
    cust, term = rng.integers(0, 150, n), rng.integers(0, 300, n)
    amt = np.round(rng.gamma(2.0, 40.0, n), 2)
    fraud = ((amt > 220) | (term % 50 == 0) | (rng.random(n) < 0.005)).astype(int)
    base = np.datetime64("2018-04-01T00:00:00")
    lines = [HEADER] + [
        f"{i},{base + np.timedelta64(int(secs[i]), 's')},{cust[i]},{term[i]},{amt[i]:.2f},"
        f"{secs[i]},{secs[i] // 86400},{fraud[i]},{fraud[i]}"
        for i in range(n)
    ]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def _train(tmp_path: Path, seed: int, model: str) -> tuple[Path, str]:
    data = _fdh_like(tmp_path / f"d{seed}.csv.gz", seed)
    out = tmp_path / f"m{seed}.fnm"
    p = run_cli("model", "train", "--data", str(data), "--train-start", "2018-04-15",
                "--model", model, "--features", "all", "--out", str(out), "--json")  # fmt: skip
    return out, str(json.loads(p.stdout.strip().splitlines()[-1])["model_id"])


def test_model_deploy_swaps_without_restart(tmp_path: Path) -> None:
    m1, id1 = _train(tmp_path, 1, "logreg")
    m2, id2 = _train(tmp_path, 2, "rf_depth12")
    assert id1 != id2
    d = tmp_path / "n"
    run_cli("node", "init", str(d))
    run_cli("model", "deploy", str(m1), "--node", str(d))
    with running_node(d) as ep:
        auth = {"Authorization": f"Bearer {ep['token']}"}
        n = iter(range(10_000))

        def decide() -> dict[str, object]:
            i = next(n)
            r = requests.post(f"{ep['api']}/v1/decide", headers=auth, timeout=10, json={
                "tx_id": f"t{i}", "timestamp": 1714564800 + i, "card": f"c{i % 7}",
                "terminal_id": f"T{i % 3}", "amount": "25.00"})  # fmt: skip
            assert r.status_code == 200, r.text
            out: dict[str, object] = r.json()
            return out

        assert decide()["model_id"] == id1
        run_cli("model", "deploy", str(m2), "--node", str(d))
        wait_for(lambda: decide()["model_id"] == id2, 30, "the deployed model", interval=0.2)
        metrics = requests.get(f"{ep['api']}/metrics", timeout=5).text
        assert "fraudnet_score_bucket" in metrics and "fraudnet_feature_mean_shift" in metrics
    shown = run_cli("audit", "show", str(d), "--kind", "model_change", "--format", "jsonl")
    recs = [json.loads(x) for x in shown.stdout.splitlines() if x.strip()]
    assert [(r["action"], r["details"]["model_id"]) for r in recs] == [
        ("load", id1),
        ("deploy", id2),
    ]
    assert recs[1]["details"]["previous_model_id"] == id1
