"""A running node deletes de-dup ids older than ``[dedup] retention_days`` on its timer,
keeps the recent ones, and still answers a re-send of a recent id with its first decision."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import requests

from fraudnet.adapters.storage.dedup import DedupStore
from fraudnet.testing import run_cli, running_node, wait_for

DAY_US = 86_400 * 1_000_000


def _count(db: Path, where: str = "1") -> int:
    c = sqlite3.connect(str(db))
    try:
        return int(c.execute(f"SELECT count(*) FROM decided WHERE {where}").fetchone()[0])
    finally:
        c.close()


def test_node_prunes_ids_older_than_the_retention(tmp_path: Path) -> None:
    d = tmp_path / "n"
    run_cli("node", "init", str(d))
    text = (d / "node.toml").read_text()
    text = text.replace("prune_interval_s = 600.0", "prune_interval_s = 1.0")
    text = text.replace("retention_days = 7.0", "retention_days = 2.0")
    (d / "node.toml").write_text(text)
    # ids decided 10 days ago (before this start), as a node that ran then would have left
    db = d / "state" / "dedup.sqlite"
    old_us = int(time.time() * 1e6) - 10 * DAY_US
    store = DedupStore(db)
    store.add_many([(f"old-{i}", "allow", 0.1, old_us + i, old_us, b"c" * 16, b"t" * 16)
                    for i in range(12_000)])  # fmt: skip
    store.close()
    with running_node(d) as ep:
        auth = {"Authorization": f"Bearer {ep['token']}"}
        tx = {"tx_id": "recent-1", "timestamp": time.time(), "card": "c1", "terminal_id": "T1",
              "amount": "12.00"}  # fmt: skip
        first = requests.post(f"{ep['api']}/v1/decide", json=tx, headers=auth, timeout=30)
        assert first.status_code == 200
        wait_for(lambda: _count(db, "tx_id LIKE 'old-%'") == 0, 60, "old ids pruned")
        assert _count(db, "tx_id = 'recent-1'") == 1
        again = requests.post(f"{ep['api']}/v1/decide", json=tx, headers=auth, timeout=30)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert again.json()["outcome"] == first.json()["outcome"]
    assert "older than the retention deleted" in (d / "node.log").read_text()
