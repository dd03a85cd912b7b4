"""The baseline scorer's card-testing rule: a second tiny authorisation within about an hour."""

from __future__ import annotations

import msgpack
import numpy as np

from fraudnet.core.records import TxColumns
from fraudnet.core.scoring.baseline import BaselineScorer


def _batch(rows: list[tuple[int, float, float]]) -> TxColumns:
    n = len(rows)
    return TxColumns(
        card_key=np.array([r[0] for r in rows], dtype=np.uint64),
        terminal_key=np.arange(n, dtype=np.uint64),
        ts_s=np.array([r[1] for r in rows], dtype=np.float64),
        amount=np.array([r[2] for r in rows], dtype=np.float64),
        mcc=np.full(n, -1, dtype=np.int32),
        channel=np.full(n, -1, dtype=np.int8),
        label=np.full(n, -1, dtype=np.int8),
    )


def test_second_tiny_authorisation_within_an_hour_is_flagged() -> None:
    s = BaselineScorer()
    out = s.score_many(_batch([(1, 0.0, 1.10), (1, 600.0, 2.40), (2, 0.0, 1.10)]))
    assert "CARD_TESTING_PATTERN" not in out.reasons[0]
    assert "CARD_TESTING_PATTERN" in out.reasons[1] and out.scores[1] >= 0.8
    assert "CARD_TESTING_PATTERN" not in out.reasons[2]  # another card: its first tiny one


def test_tiny_authorisations_hours_apart_or_normal_for_the_card_are_not_flagged() -> None:
    s = BaselineScorer()
    # hours apart
    out = s.score_many(_batch([(1, 0.0, 1.0), (1, 5 * 3600.0, 1.0)]))
    assert all("CARD_TESTING_PATTERN" not in r for r in out.reasons)
    # a card whose usual amounts are small (parking, vending): tiny is its normal
    s = BaselineScorer()
    hist = [(3, float(i) * 3600 * 10, 4.0) for i in range(6)]
    out = s.score_many(_batch([*hist, (3, 61 * 3600.0, 2.0), (3, 61 * 3600.0 + 300, 2.5)]))
    assert all("CARD_TESTING_PATTERN" not in r for r in out.reasons)
    # a card with a history of larger amounts: two tiny ones are a test
    s = BaselineScorer()
    hist = [(4, float(i) * 3600 * 10, 60.0) for i in range(6)]
    out = s.score_many(_batch([*hist, (4, 61 * 3600.0, 2.0), (4, 61 * 3600.0 + 300, 2.5)]))
    assert "CARD_TESTING_PATTERN" in out.reasons[-1]


def test_snapshots_round_trip_and_old_four_value_snapshots_restore() -> None:
    s = BaselineScorer()
    s.score_many(_batch([(1, 0.0, 1.0)]))
    t = BaselineScorer()
    t.restore(s.snapshot())
    assert "CARD_TESTING_PATTERN" in t.score_many(_batch([(1, 60.0, 1.0)])).reasons[0]
    old = bytes(msgpack.packb({"1": [0.0, 1.0, 50.0, 1.0]}))
    u = BaselineScorer()
    u.restore(old)
    out = u.score_many(_batch([(1, 60.0, 1.0), (1, 120.0, 1.0)]))
    assert "CARD_TESTING_PATTERN" not in out.reasons[0]
    assert "CARD_TESTING_PATTERN" in out.reasons[1]
