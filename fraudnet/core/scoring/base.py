"""The contract every scorer meets, and score -> outcome thresholds.

A scorer is *stateful*: :meth:`Scorer.score_many` first folds the batch
into its per-entity window state (in event-time order within the batch),
then scores each transaction with features that include it. Scoring is
therefore not idempotent: the caller de-duplicates transactions first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fraudnet.errors import ConfigError

from ..records import Outcome, TxColumns

__all__ = ["ScoreBatch", "Scorer", "Thresholds", "score_batch"]


@dataclass(frozen=True, slots=True)
class ScoreBatch:
    """Scores in [0, 1] and, per transaction, the reason codes that drove them."""

    scores: npt.NDArray[np.float64]
    reasons: list[tuple[str, ...]]


_SET_SCORES = ScoreBatch.__dict__["scores"].__set__
_SET_REASONS = ScoreBatch.__dict__["reasons"].__set__
_new = object.__new__


def score_batch(scores: npt.NDArray[np.float64], reasons: list[tuple[str, ...]]) -> ScoreBatch:
    """``ScoreBatch(scores, reasons)`` at a third of the cost (a scorer's per-call path):
    the frozen dataclass's ``__init__`` goes through ``object.__setattr__`` per field;
    this sets the slots directly. Same object, same immutability afterwards."""
    out = _new(ScoreBatch)
    _SET_SCORES(out, scores)
    _SET_REASONS(out, reasons)
    return out


class Scorer(Protocol):
    """What the node core needs from a scorer (features + model)."""

    @property
    def model_id(self) -> str:
        """Identifies the model (a SHA-256 hex digest for trained models)."""
        ...

    def score_many(self, batch: TxColumns) -> ScoreBatch:
        """Update window state with ``batch`` and score each transaction."""
        ...

    def snapshot(self) -> bytes:
        """Encode all window state (restorable with :meth:`restore`)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace window state with a :meth:`snapshot`."""
        ...


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Score -> outcome: ``block`` from ``block_at`` up, ``review`` from ``review_at`` up."""

    review_at: float = 0.5
    block_at: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.review_at <= self.block_at <= 1.0:
            raise ConfigError(
                f"thresholds: need 0 <= review_at ({self.review_at}) <= block_at "
                f"({self.block_at}) <= 1"
            )

    def outcome(self, score: float) -> Outcome:
        if score >= self.block_at:
            return "block"
        if score >= self.review_at:
            return "review"
        return "allow"
