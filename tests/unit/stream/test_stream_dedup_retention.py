"""De-dup retention: old ids leave SQLite and the in-memory filters, answers stay exact."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.adapters.storage.dedup import DedupStore
from fraudnet.adapters.stream.dedup_filter import GENERATION_US, FilteredDedup

DAY = 86_400 * 1_000_000


def _row(tx_id: str, at_us: int) -> tuple[str, str, float, int, int, bytes, bytes]:
    return (tx_id, "allow", 0.1, at_us, at_us, b"c" * 16, b"t" * 16)


def test_prune_deletes_old_rows_in_chunks_and_drops_old_filters(tmp_path: Path) -> None:
    f = FilteredDedup(DedupStore(tmp_path / "d.sqlite"), min_capacity=64, small_batch=1)
    # ten days of ids, 30 per day: a new filter per day of decision time
    for day in range(10):
        f.add_many([_row(f"d{day}-{i}", day * DAY + i) for i in range(30)])
    f.seen_many(["probe"])  # marks the last batch
    assert f.generations >= 9
    cutoff = 7 * DAY
    assert f.store.prune(cutoff, chunk=7) == 7 * 30  # many chunks of 7
    assert f.drop_before(cutoff) >= 6
    assert f.store.count() == 3 * 30
    old = [f"d{d}-{i}" for d in range(7) for i in range(30)]
    new = [f"d{d}-{i}" for d in range(7, 10) for i in range(30)]
    assert f.seen_many(old) == set()  # decided again if re-sent after the retention
    assert f.seen_many(new) == set(new)  # never a false negative inside it
    # a restart rebuilds one filter from what is left
    g = FilteredDedup(DedupStore(tmp_path / "d.sqlite"), min_capacity=64, small_batch=1)
    assert g.generations == 1 and g.seen_many(new) == set(new) and g.seen_many(old) == set()


def test_prune_through_the_filter_keeps_the_newest_filter(tmp_path: Path) -> None:
    f = FilteredDedup(DedupStore(tmp_path / "d.sqlite"), min_capacity=64, small_batch=1)
    f.add_many([_row("a", 1), _row("b", 2)])
    assert f.prune(10 * DAY) == 2
    assert f.generations == 1 and f.seen_many(["a", "b"]) == set()
    f.add_many([_row("c", 11 * DAY)])
    assert f.seen_many(["a", "c"]) == {"c"}


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(0, 20), st.lists(st.integers(0, 60), max_size=8)),
            st.tuples(st.just("prune"), st.integers(0, 20), st.just([])),
        ),
        max_size=30,
    )
)
def test_answers_equal_a_model_with_retention(ops: list[tuple[str, int, list[int]]]) -> None:
    """Model: a dict id -> decision time; prune deletes entries before the cut-off."""
    with tempfile.TemporaryDirectory() as d:
        f = FilteredDedup(DedupStore(Path(d) / "d.sqlite"), min_capacity=8, small_batch=1)
        model: dict[str, int] = {}
        now = 0
        for kind, days, ids in ops:
            now += days * GENERATION_US // 4
            if kind == "add":
                rows = [_row(f"id{i}", now) for i in ids if f"id{i}" not in model]
                rows = list({r[0]: r for r in rows}.values())
                f.add_many(rows)
                model.update({r[0]: now for r in rows})
            else:
                cutoff = now - 2 * DAY
                f.prune(cutoff)
                model = {k: v for k, v in model.items() if v >= cutoff}
            probe = [f"id{i}" for i in range(61)]
            assert f.seen_many(probe) == set(model)
