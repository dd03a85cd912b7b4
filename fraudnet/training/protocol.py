"""The Fraud Detection Handbook's evaluation protocol, on columns.

* Periods (UTC days): ``train_days`` of training from ``train_start``, then
  ``delay_days`` whose labels are not yet known, then ``test_days`` of test.
* Test set: test transactions minus those of cards with a fraud already
  known -- a fraud in the training period, plus, for test day ``k``, the
  frauds of the days ``train_start + train_days + j - 1`` for ``j <= k``
  (labels that have become available). Always computed on the whole data
  set, whichever node scores the transaction.
* Metrics: AUC ROC and average precision over test transactions, and Card
  Precision@100: per test day, drop cards already caught (fraudulent and in
  a previous day's top 100), score each card by its maximum score that day
  (label = maximum label), count the frauds among the 100 highest and
  divide by 100; average over days. Ties are broken by card id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudnet.errors import ConfigError, InputError

from .data import TxTable

__all__ = ["Split", "card_precision_at_k", "day_of", "metrics", "split"]

DAY_S = 86400


def day_of(value: str | date) -> int:
    """UTC day number of a ``YYYY-MM-DD`` date."""
    try:
        d = value if isinstance(value, date) else date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"date {value!r}: expected YYYY-MM-DD") from None
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) // DAY_S


@dataclass(frozen=True, slots=True)
class Split:
    train: npt.NDArray[np.bool_]
    test: npt.NDArray[np.bool_]
    start_day: int
    test_first_day: int


def split(
    table: TxTable, train_start_day: int, train_days: int, delay_days: int, test_days: int
) -> Split:
    """Training and (filtered) test masks over ``table``'s rows."""
    if min(train_days, test_days) < 1 or delay_days < 0:
        raise ConfigError("periods: train and test need >= 1 day, delay >= 0")
    day = table.day
    train = (day >= train_start_day) & (day < train_start_day + train_days)
    first = train_start_day + train_days + delay_days
    if not train.any():
        raise InputError(f"no transactions in the training period starting day {train_start_day}")
    fraud = table.fraud == 1
    known = set(np.unique(table.customer[train & fraud]).tolist())
    test = np.zeros(len(table), dtype=bool)
    for k in range(test_days):
        newly = (day == train_start_day + train_days + k - 1) & fraud
        known.update(np.unique(table.customer[newly]).tolist())
        on_day = day == first + k
        keep = ~np.isin(table.customer, np.fromiter(known, dtype=np.int64, count=len(known)))
        test |= on_day & keep
    if not test.any():
        raise InputError(f"no transactions in the test period starting day {first}")
    return Split(train=train, test=test, start_day=train_start_day, test_first_day=first)


def card_precision_at_k(
    day: npt.NDArray[np.int64],
    card: npt.NDArray[np.int64],
    fraud: npt.NDArray[np.int8],
    score: npt.NDArray[np.float64],
    k: int = 100,
) -> float:
    """Card Precision@k averaged over the days present (see module docstring)."""
    caught: set[int] = set()
    per_day = []
    for d in np.unique(day):
        m = (day == d) & ~np.isin(card, np.fromiter(caught, dtype=np.int64, count=len(caught)))
        c, f, s = card[m], fraud[m], score[m]
        cards, inv = np.unique(c, return_inverse=True)
        best = np.full(cards.shape[0], -np.inf)
        np.maximum.at(best, inv, s)
        lab = np.zeros(cards.shape[0], dtype=np.int8)
        np.maximum.at(lab, inv, f)
        order = np.lexsort((cards, -best))[:k]
        hits = cards[order][lab[order] == 1]
        per_day.append(hits.shape[0] / k)
        caught.update(hits.tolist())
    return float(np.mean(per_day)) if per_day else 0.0


def metrics(
    table: TxTable, test: npt.NDArray[np.bool_], score: npt.NDArray[np.float64]
) -> dict[str, float]:
    """AUC ROC, average precision and CP@100 of ``score`` (one per test row)."""
    y = table.fraud[test]
    if len(np.unique(y)) < 2:
        raise InputError("test period has only one class; metrics are undefined")
    return {
        "auc_roc": float(roc_auc_score(y, score)),
        "average_precision": float(average_precision_score(y, score)),
        "card_precision_at_100": card_precision_at_k(
            table.day[test], table.customer[test], y, score, 100
        ),
    }
