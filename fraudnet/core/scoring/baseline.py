"""An interpretable baseline scorer used until a trained model is deployed.

It keeps, per card, an exponentially decayed count and mean amount, and
scores a transaction from four signals: an absolute amount above the
configured limit, an amount far above the card's own mean, a burst of
transactions within minutes, and the card-testing pattern -- a second tiny
authorisation (at most ``tiny_limit``, default 3.00 in the reporting
currency, and under a quarter of the card's usual amount when the card has
a history here) on the same card within about an hour, as fraudsters do to check
stolen cards before cashing out. It is deliberately simple; the trained,
Numba-compiled model replaces it once ``fraudnet model deploy`` is used.
"""

from __future__ import annotations

import math

import msgpack
import numpy as np

from ..records import TxColumns
from .base import ScoreBatch

__all__ = ["BaselineScorer"]

_HALF_LIFE_S = 7 * 86400.0
_BURST_HALF_LIFE_S = 600.0
_TINY_HALF_LIFE_S = 3600.0


class BaselineScorer:
    """Rule-of-thumb scorer with per-card decayed state (see module docstring)."""

    model_id = "baseline-rules-2"

    def __init__(self, amount_limit: float = 220.0, tiny_limit: float = 3.0) -> None:
        self.amount_limit = amount_limit
        self.tiny_limit = tiny_limit
        # card_key -> [last_ts, decayed_count, decayed_amount_sum, burst_count, tiny_count]
        self._cards: dict[int, list[float]] = {}

    def score_many(self, batch: TxColumns) -> ScoreBatch:
        n = len(batch)
        scores = np.zeros(n, dtype=np.float64)
        reasons: list[tuple[str, ...]] = []
        for i in range(n):
            key = int(batch.card_key[i])
            ts = float(batch.ts_s[i])
            amt = float(batch.amount[i])
            st = self._cards.get(key)
            if st is None:
                st = [ts, 0.0, 0.0, 0.0, 0.0]
                self._cards[key] = st
            dt = max(0.0, ts - st[0])
            decay = math.exp(-dt * math.log(2) / _HALF_LIFE_S)
            bdecay = math.exp(-dt * math.log(2) / _BURST_HALF_LIFE_S)
            mean = st[2] / st[1] if st[1] > 0.5 else 0.0
            burst = st[3] * bdecay
            tiny = st[4] * math.exp(-dt * math.log(2) / _TINY_HALF_LIFE_S)
            s = 0.02
            why: list[str] = []
            if amt > self.amount_limit:
                s += 0.9
                why.append("AMOUNT_ABOVE_LIMIT")
            if mean > 0 and amt > 5 * mean and amt > 50:
                s += 0.4
                why.append("AMOUNT_VS_CARD_HISTORY")
            if burst > 5:
                s += 0.3
                why.append("CARD_VELOCITY_BURST")
            if amt <= self.tiny_limit and (st[1] < 3.0 or amt < 0.25 * mean):
                # a tiny authorisation after another one within about an hour
                if tiny >= 0.5:
                    s += 0.85
                    why.append("CARD_TESTING_PATTERN")
                tiny += 1.0
            st[0] = max(st[0], ts)
            st[1] = st[1] * decay + 1.0
            st[2] = st[2] * decay + amt
            st[3] = burst + 1.0
            st[4] = tiny
            scores[i] = min(s, 1.0)
            reasons.append(tuple(why) if why else ("LOW_RISK",))
        return ScoreBatch(scores=scores, reasons=reasons)

    def snapshot(self) -> bytes:
        return bytes(msgpack.packb({str(k): v for k, v in self._cards.items()}))

    def restore(self, data: bytes) -> None:
        obj = msgpack.unpackb(data)
        # snapshots written before the card-testing rule hold 4 values per card
        self._cards = {int(k): ([float(x) for x in v] + [0.0] * 5)[:5] for k, v in obj.items()}
