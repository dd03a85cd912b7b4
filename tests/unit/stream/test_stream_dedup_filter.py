"""FilteredDedup answers exactly like the SQLite store, across growth and restarts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.adapters.storage.dedup import DedupStore
from fraudnet.adapters.stream.dedup_filter import BloomIds, FilteredDedup


def _row(tx_id: str) -> tuple[str, str, float, int, int, bytes, bytes]:
    return (tx_id, "allow", 0.1, 1, 2, b"c" * 16, b"t" * 16)


def test_bloom_has_no_false_negatives_and_few_false_positives() -> None:
    b = BloomIds(20_000)
    added = [f"t{i}x1764237000s{i}" for i in range(20_000)]
    for i in range(0, len(added), 500):
        b.add_many(added[i : i + 500])
    assert b.maybe_many(added).all()
    fresh = [f"u{i}" for i in range(20_000)]
    assert b.maybe_many(fresh).mean() < 0.01  # design ~0.25 % at capacity


@settings(max_examples=60, deadline=None)
@given(
    st.text(max_size=12),
    st.lists(st.integers(0, 1 << 64), min_size=1, max_size=5000, unique=True),
)
def test_the_python_probe_of_one_id_equals_the_vectorised_probe(
    salt: str, seeds: list[int]
) -> None:
    """``maybe_one`` (small batches, pure Python) answers exactly like ``maybe_many``."""
    b = BloomIds(64)  # tiny: many bits set, so both answers occur
    ids = [f"{salt}{s}" for s in seeds]
    b.add_many(ids[::3])
    one = [b.maybe_one(hash(t) & ((1 << 64) - 1)) for t in ids]
    assert one == b.maybe_many(ids).tolist()
    assert all(one[::3])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.lists(st.text(min_size=1, max_size=8), max_size=20)),
        max_size=25,
    ),
    st.sampled_from([1, 7, 64]),
)
def test_filter_matches_a_set_through_growth_and_restart(
    ops: list[tuple[bool, list[str]]], small: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "dedup.sqlite"
        # tiny capacity forces new filters; small_batch=1: every query takes the vectorised
        # probe; 7 and 64: most take the Python probe, with ids added but not yet marked
        f = FilteredDedup(DedupStore(path), min_capacity=8, small_batch=small)
        truth: set[str] = set()
        for i, (add, ids) in enumerate(ops):
            assert f.seen_many(ids) == truth.intersection(ids)
            if add:
                f.add_many(_row(t) for t in dict.fromkeys(ids))
                truth.update(ids)
            if i == len(ops) // 2:  # restart: rebuilt from the store
                f.close()
                f = FilteredDedup(DedupStore(path), min_capacity=8, small_batch=small)
        probe = [*sorted(truth), "never-added", ""]
        assert f.seen_many(probe) == truth
        assert f.count() == len(truth)
        f.close()


def test_fresh_ids_skip_sqlite_and_resends_are_confirmed_by_it(tmp_path: Path) -> None:
    store = DedupStore(tmp_path / "d.sqlite")
    store.add_many([_row(f"old{i}") for i in range(1000)])  # written before the filter
    f = FilteredDedup(store)
    fresh = [f"new{i}" for i in range(1000)]
    assert f.seen_many(fresh) == set()
    assert f.lookups < 20 and f.skipped > 980  # only false positives reach SQLite
    assert f.seen_many(["old3", "new1", "old999"]) == {"old3", "old999"}
    f.add_many(_row(t) for t in fresh[:10])
    before = f.lookups
    assert f.seen_many(fresh[:12]) == set(fresh[:10])  # small: the Python probe
    assert f.lookups - before < 12  # only the ten re-sends (and false positives) asked
    assert f.seen_many(fresh) == set(fresh[:10])  # large: the filter, after marking the 10
    assert f.get("new1") == ("allow", 0.1, 1)
    f.close()
