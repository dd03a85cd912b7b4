"""Per-shard snapshots: a full set restores the state; damage is a typed error."""

from __future__ import annotations

import numpy as np
import pytest

from fraudnet.core.features import FeatureConfig, FeatureState
from fraudnet.errors import InputError

DAY = 86400.0


def stream(seed: int, n: int = 3000):
    rng = np.random.default_rng(seed)
    ts = np.floor(1.52e9 + np.sort(rng.uniform(0, 50 * DAY, n)))
    return (
        rng.integers(0, 300, n).astype(np.uint64),
        rng.integers(0, 120, n).astype(np.uint64),
        ts,
        np.round(rng.gamma(2.0, 40.0, n), 2),
        (rng.random(n) < 0.05).astype(np.int8),
    )


@pytest.mark.parametrize("n_shards", [1, 4, 7])
def test_all_shards_restore_an_equivalent_state(n_shards: int) -> None:
    ck, tk, ts, amt, lab = stream(1)
    cfg = FeatureConfig(card_ring=16, card_terminals=8)  # rings overflow too
    a = FeatureState(cfg)
    a.fold_arrays(ck[:2000], tk[:2000], ts[:2000], amt[:2000], lab[:2000])
    blobs = [a.snapshot_shard(s, n_shards) for s in range(n_shards)]
    b = FeatureState(cfg)
    got = [b.restore_shard(blob) for blob in reversed(blobs)]  # any order
    assert sum(c for c, _ in got) == a.n_cards and sum(t for _, t in got) == a.n_terminals
    assert b.counters == a.counters
    xa = a.fold_arrays(ck[2000:], tk[2000:], ts[2000:], amt[2000:], lab[2000:])
    xb = b.fold_arrays(ck[2000:], tk[2000:], ts[2000:], amt[2000:], lab[2000:])
    np.testing.assert_array_equal(xa, xb)


def test_restoring_a_newer_shard_overwrites_the_entities() -> None:
    ck, tk, ts, amt, lab = stream(2)
    a = FeatureState()
    a.fold_arrays(ck[:1000], tk[:1000], ts[:1000], amt[:1000], lab[:1000])
    old = a.snapshot_shard(1, 3)
    b = FeatureState.restore(a.snapshot())
    a.fold_arrays(ck[1000:2000], tk[1000:2000], ts[1000:2000], amt[1000:2000], lab[1000:2000])
    new = a.snapshot_shard(1, 3)
    b.restore_shard(old)  # no-op: same content
    b.restore_shard(new)
    assert b.snapshot_shard(1, 3) == new


def test_shard_blobs_are_small_and_partition_the_entities() -> None:
    ck, tk, ts, amt, lab = stream(3)
    a = FeatureState()
    a.fold_arrays(ck, tk, ts, amt, lab)
    sizes = [len(a.snapshot_shard(s, 8)) for s in range(8)]
    per_entity = a.config.bytes_per_card() + a.config.bytes_per_terminal()
    assert sum(sizes) < len(a.snapshot()) + 8 * 4096
    assert max(sizes) < (a.n_cards + a.n_terminals) * per_entity / 4


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[:50], lambda b: b"FNFS" + b[4:], lambda b: b[:-3],
     lambda b: b.replace(b'"shard": 1', b'"shard": 2'),
     lambda b: b.replace(b'"card_ring": 48', b'"card_ring": 64')],
    ids=["truncated-header", "magic", "truncated-body", "keys-outside-shard", "other-config"],
)  # fmt: skip
def test_damaged_shard_is_a_typed_error_and_changes_nothing(damage) -> None:
    ck, tk, ts, amt, lab = stream(4)
    a = FeatureState()
    a.fold_arrays(ck, tk, ts, amt, lab)
    blob = a.snapshot_shard(1, 4)
    b = FeatureState()
    b.fold_arrays(ck[:10], tk[:10], ts[:10], amt[:10], lab[:10])
    before = b.snapshot()
    with pytest.raises(InputError):
        b.restore_shard(damage(blob))
    assert b.snapshot() == before
    with pytest.raises(InputError, match="out of range"):
        a.snapshot_shard(4, 4)
