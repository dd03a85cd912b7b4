"""Issue 10 soak: the de-dup filters stay bounded under a retention shorter than a day.

With one filter per day of decision time (the old fixed generation), a node with a
retention of minutes kept every filter for a day: memory grew with the uptime for
24 hours before anything could be dropped. A filter now covers a quarter of a
shorter retention (``generation_for``), so a node that keeps deciding and pruning
holds a bounded number of filters and bytes, whatever the number of operations.
"""

from __future__ import annotations

from pathlib import Path

from fraudnet.adapters.storage.dedup import DedupStore
from fraudnet.adapters.stream.dedup_filter import (
    GENERATION_US,
    GENERATIONS_PER_RETENTION,
    FilteredDedup,
    generation_for,
)

S = 1_000_000


def _row(tx_id: str, at_us: int) -> tuple[str, str, float, int, int, bytes, bytes]:
    return (tx_id, "allow", 0.1, at_us, at_us, b"c" * 16, b"t" * 16)


def test_generation_is_a_day_or_a_quarter_of_a_shorter_retention() -> None:
    assert generation_for(7 * 86_400 * S) == GENERATION_US
    assert generation_for(600 * S) == 150 * S
    assert generation_for(1) == 1  # never zero


def test_filters_and_bytes_stay_bounded_under_a_short_retention(tmp_path: Path) -> None:
    retention = 600 * S
    prune_every = 30 * S
    # min_capacity above a window's ids (production: 1M ids), so no filter is added by
    # capacity doubling, only by decision time
    f = FilteredDedup(DedupStore(tmp_path / "d.sqlite"), min_capacity=16_384, small_batch=1,
                      generation_us=generation_for(retention))  # fmt: skip
    now, n, last_prune = 0, 0, 0
    peak_generations, peak_bytes, samples = 0, 0, []
    # two simulated hours at 20 ids per simulated second (batches of 20, one per second)
    for step in range(7200):
        now = step * S
        f.add_many([_row(f"t{n + i}", now) for i in range(20)])
        n += 20
        if now - last_prune >= prune_every:
            f.prune(now - retention)
            last_prune = now
        if step % 600 == 599:
            f.seen_many(["probe"])  # marks what is unflushed
            samples.append((f.generations, f.nbytes, f.store.count()))
        peak_generations = max(peak_generations, f.generations)
        peak_bytes = max(peak_bytes, f.nbytes)
    # filters: the window's quarters + the one filling + one awaiting the next prune
    bound = GENERATIONS_PER_RETENTION + 2
    assert peak_generations <= bound, samples
    # steady state after the first window: the last hour holds what the first did
    late = samples[len(samples) // 2 :]
    assert max(s[0] for s in late) <= bound
    assert max(s[1] for s in late) <= max(s[1] for s in samples[:2]) * 2, samples
    # SQLite holds the window, not the uptime (pruned every 30 s: up to 630 s of ids)
    assert all(s[2] <= 20 * (600 + 30 + 1) for s in late), samples
    # exact answers: the last window's ids are seen, the first hour's are not
    recent = [f"t{i}" for i in range(n - 20 * 500, n, 97)]
    old = [f"t{i}" for i in range(0, 20 * 3000, 97)]
    assert f.seen_many(recent) == set(recent)
    assert f.seen_many(old) == set()


def test_a_day_long_generation_grows_with_the_uptime(tmp_path: Path) -> None:
    """The leak this fixes, shown with the old fixed generation: the newest filter (never
    dropped) keeps taking ids for a whole day, doubling its capacity each time it fills,
    so under a ten-minute retention the filter bytes followed the ids decided since the
    day began, not the window; with a quarter-window generation they stay flat."""
    at: dict[str, list[int]] = {"day": [], "quarter": []}
    for name, gen in (("day", GENERATION_US), ("quarter", generation_for(600 * S))):
        f = FilteredDedup(DedupStore(tmp_path / f"{name}.sqlite"), min_capacity=16_384,
                          small_batch=1, generation_us=gen)  # fmt: skip
        for step in range(7200):
            f.add_many([_row(f"t{step}-{i}", step * S) for i in range(20)])
            if step % 30 == 0:
                f.prune(step * S - 600 * S)
            if step in (3599, 7199):
                f.seen_many(["probe"])
                at[name].append(f.nbytes)
        assert f.store.count() <= 20 * 631  # SQLite was pruned either way
        assert f.ids_held <= 20 * 7200
    assert at["day"][1] >= 2 * at["day"][0]  # doubled from hour one to hour two
    assert at["quarter"][1] == at["quarter"][0]  # flat
    assert at["day"][1] > at["quarter"][1]
