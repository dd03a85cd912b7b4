"""``fraudnet bench score --json`` prints one object with the agreed keys and same-run ratios."""

from __future__ import annotations

import json

from click.testing import CliRunner

from fraudnet.bench.score import cli


def test_bench_score_prints_one_json_object_with_ratios() -> None:
    args = ["--rows", "6000", "--single", "20", "--batch", "200", "--model", "rf_leaf20", "--json"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    for k in ("single_ns", "batch_ns_per_tx", "sklearn_single_ns", "sklearn_batch_ns_per_tx"):
        assert out[k] > 0
    assert out["speedup_single"] == out["sklearn_single_ns"] / out["single_ns"]
    assert out["kind"] == "forest" and out["trees"] == 100 and out["nodes_per_tx"] > 0
    assert len(out["load_avg_1m"]) == 2 and out["cpus"] >= 1
