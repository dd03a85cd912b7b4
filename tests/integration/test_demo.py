"""`fraudnet demo`: the README's first command, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudnet.testing import run_cli

pytestmark = pytest.mark.integration


def _demo(tmp_path: Path, n: int) -> dict[str, object]:
    p = run_cli("demo", "-n", str(n), "--json", "--dir", str(tmp_path / "demo"), timeout=900)
    out: dict[str, object] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def test_demo_decides_every_transaction(tmp_path: Path) -> None:
    s = _demo(tmp_path, 5000)
    assert s["transactions"] == 5000
    assert s["decided"] + s["dead_letters"] == 5000  # type: ignore[operator]
    assert s["dead_letters"] == s["invalid_sent"]
    assert s["decided_twice"] == 0 and s["reconciled"] is True
    counters = s["node_counters"]
    assert isinstance(counters, dict)
    assert counters["received"] == 5000 == counters["decided"] + counters["dead_lettered"]
    node_dir = Path(str(s["node_dir"]))
    assert (node_dir / "node.key").exists() and (node_dir / "state" / "dedup.sqlite").exists()


@pytest.mark.slow
def test_200k_transactions_reconcile(tmp_path: Path) -> None:
    """Far beyond the embedded broker's ~5 MiB per-partition retention: backpressure holds."""
    s = _demo(tmp_path, 200_000)
    assert s["decided"] + s["dead_letters"] == 200_000  # type: ignore[operator]
    assert s["decided_twice"] == 0 and s["reconciled"] is True
