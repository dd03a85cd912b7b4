"""Scoring: the scorer contract, thresholds, compiled models and reason codes."""

from .base import ScoreBatch, Scorer, Thresholds
from .baseline import BaselineScorer
from .compiled import CompiledModel
from .model_scorer import ModelScorer
from .modelfile import decode_model, encode_model, model_id_of
from .reasons import LOW_RISK, reasons_many

__all__ = [
    "LOW_RISK",
    "BaselineScorer",
    "CompiledModel",
    "ModelScorer",
    "ScoreBatch",
    "Scorer",
    "Thresholds",
    "decode_model",
    "encode_model",
    "model_id_of",
    "reasons_many",
]
