"""Windowed per-card and per-terminal features (the only place, with scoring, using Numba)."""

from .schema import (
    FEATURE_NAMES,
    FEATURES,
    SCHEMA_VERSION,
    FeatureConfig,
    FeatureSpec,
    default_model_features,
    feature_index,
)
from .state import FeatureState

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "SCHEMA_VERSION",
    "FeatureConfig",
    "FeatureSpec",
    "FeatureState",
    "default_model_features",
    "feature_index",
]
