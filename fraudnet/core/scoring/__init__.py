"""Scoring: the scorer contract, thresholds and reason codes."""

from .base import ScoreBatch, Scorer, Thresholds
from .baseline import BaselineScorer

__all__ = ["BaselineScorer", "ScoreBatch", "Scorer", "Thresholds"]
