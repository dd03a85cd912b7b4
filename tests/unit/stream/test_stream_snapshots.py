"""Feature snapshots: per shard, atomic, restored exactly; damage is contained."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from fraudnet.adapters.stream.snapshots import FeatureSnapshots
from fraudnet.core.records import TxColumns
from fraudnet.core.scoring import BaselineScorer, ModelScorer
from fraudnet.testing import small_forest_model

DAY = 86400.0


def _cols(seed: int, n: int) -> TxColumns:
    rng = np.random.default_rng(seed)
    return TxColumns(
        card_key=rng.integers(1, 300, n).astype(np.uint64),
        terminal_key=rng.integers(1, 50, n).astype(np.uint64),
        ts_s=1.52e9 + np.sort(rng.uniform(0, 10 * DAY, n)),
        amount=np.round(rng.gamma(2.0, 40.0, n), 2),
        mcc=np.full(n, -1, np.int32), channel=np.full(n, -1, np.int8),
        label=np.full(n, -1, np.int8),
    )  # fmt: skip


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return small_forest_model(5)


def test_snapshot_restore_reproduces_the_scores(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = ModelScorer(model)
    a.score_many(_cols(1, 2000))
    snaps = FeatureSnapshots(a, tmp_path / "features", shards=4)
    asyncio.run(snaps.snapshot_all())
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == [
        f"shard-{i}.fnstate" for i in range(4)
    ]
    b = ModelScorer(model)
    got = FeatureSnapshots(b, tmp_path / "features", shards=4).restore()
    assert got["shards"] == 4 and got["corrupt"] == 0
    assert got["cards"] == a.state.n_cards and got["terminals"] == a.state.n_terminals
    nxt = _cols(2, 500)
    np.testing.assert_array_equal(a.score_many(nxt).scores, b.score_many(nxt).scores)


def test_a_damaged_shard_is_set_aside_and_the_rest_restored(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = ModelScorer(model)
    a.score_many(_cols(3, 1000))
    d = tmp_path / "features"
    asyncio.run(FeatureSnapshots(a, d, shards=2).snapshot_all())
    (d / "shard-1.fnstate").write_bytes(b"garbage")
    got = FeatureSnapshots(ModelScorer(model), d, shards=2).restore()
    assert got["shards"] == 1 and got["corrupt"] == 1
    assert (d / "shard-1.corrupt").exists() and not (d / "shard-1.fnstate").exists()


def test_stateless_scorer_is_a_no_op(tmp_path: Path) -> None:
    s = FeatureSnapshots(BaselineScorer(), tmp_path / "f", shards=4)
    asyncio.run(s.snapshot_all())
    assert not (tmp_path / "f").exists() and s.restore()["shards"] == 0
