"""Real-process mode: four `fraudnet node run` processes on 127.0.0.x replay a scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudnet.replay.runner import run_scenario
from fraudnet.replay.scenario import parse_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: four members, one day, five cards attacked at all of them from 30,000 s on
NETWORK = """
modes = ["network"]
[network]
members = 4
f = 1
[data]
customers = 60
terminals = 120
days = 1
compromised_customers_per_day = 0
attacks = [{ kind = "compromised_card", day = 0, count = 5, members = 4, tx_per_card = 8, duration_s = 600, at_s = 30000 }]
"""

SMALL = (
    """
[scenario]
name = "proc-small"
seed = 5
"""
    + NETWORK
    + """
[[faults]]
kind = "clock_skew"
member = "m01"
skew_s = 5
[[faults]]
kind = "crash"
member = "m02"
at_s = 30100
until_s = 30400
[expect]
max_false_block_verdicts = 0
exactly_one_decision = true
min_attack_liveness = 0.8
"""
)


def test_four_node_processes_block_attacked_cards_through_a_crash(tmp_path: Path) -> None:
    sc = parse_scenario(SMALL, "proc-small.toml")
    rep = run_scenario(sc, sim=False, out_dir=tmp_path, plots=False)
    net = rep["modes"]["network"]
    assert rep["backend"] == "processes" and rep["faults_ignored"] == ["clock_skew"]
    failed = [c for c in rep["expectations"]["checks"] if not c["passed"]]
    assert not failed, failed
    assert net["decisions"] == net["accepted"] == rep["transactions"]
    assert net["block_verdict_cards"] >= 4
    assert net["audit_logs_verified"] is True  # including the SIGKILLed node's log
    assert net["restarts"] == 1 and net["duplicates_absorbed"] >= 1
    assert net["latency_is_virtual"] is False and net["verdict_delay_p50_s"] is None


PARTITION = (
    """
[scenario]
name = "proc-partition"
seed = 6
"""
    + NETWORK
    + """
[[faults]]
kind = "partition"
at_s = 29000
until_s = 30300
groups = [["m00", "m01"], ["m02", "m03"]]
[expect]
max_false_block_verdicts = 0
exactly_one_decision = true
"""
)


def test_partition_and_heal_on_node_processes_keep_exactly_once_and_audit_logs(
    tmp_path: Path,
) -> None:
    """Each node restarted with its group's peers only (the runner waits until no node
    is connected across groups), then healed: every accepted transaction has exactly one
    decision and every audit log verifies afterwards."""
    sc = parse_scenario(PARTITION, "proc-partition.toml")
    rep = run_scenario(sc, sim=False, out_dir=tmp_path, plots=False)
    net = rep["modes"]["network"]
    assert rep["faults_ignored"] == []
    failed = [c for c in rep["expectations"]["checks"] if not c["passed"]]
    assert not failed, failed
    assert net["decisions"] == net["accepted"] == rep["transactions"]
    assert net["audit_logs_verified"] is True
    assert net["restarts"] == 8  # four nodes at the split, four at the heal
