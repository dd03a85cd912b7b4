"""A fitted model as plain arrays, evaluated by Numba kernels.

Two kinds:

* ``forest`` -- a tree ensemble flattened into node arrays (feature,
  threshold, left, right, value = P(fraud) at that node), with
  ``aggregation`` ``mean`` (random forest / extra trees: the mean of the
  trees' leaf probabilities). Features are compared as float32 exactly as
  scikit-learn does (it casts ``X`` to float32 before traversal), which is
  what makes the output equal ``predict_proba``.
* ``linear`` -- logistic regression on standardised inputs:
  ``sigmoid(b + sum_f w_f (x_f - mu_f) / s_f)``.

Both kernels also return per-feature contributions for reason codes: for
forests the path attribution (the change of node value along the decision
path credited to the split feature, averaged over trees; contributions sum
to ``score - mean root value``); for linear models ``w_f (x_f - mu_f)/s_f``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import numba
import numpy as np
import numpy.typing as npt

from fraudnet.errors import ModelError

from ..features.schema import FEATURES, SCHEMA_VERSION, FeatureConfig, feature_index

__all__ = ["KINDS", "CompiledModel", "forest_many", "linear_many"]

KINDS: Final = ("forest", "linear")
F64 = npt.NDArray[np.float64]

_FOREST_ARRAYS: Final = {
    "feature": np.int32, "threshold": np.float64, "left": np.int32, "right": np.int32,
    "value": np.float64, "roots": np.int32,
}  # fmt: skip
_LINEAR_ARRAYS: Final = {"coef": np.float64, "mean": np.float64, "scale": np.float64,
                         "intercept": np.float64}  # fmt: skip


@numba.njit(cache=True, nogil=True)
def forest_many(
    x: F64,
    cols: npt.NDArray[np.int64],
    feature: npt.NDArray[np.int32],
    threshold: F64,
    left: npt.NDArray[np.int32],
    right: npt.NDArray[np.int32],
    value: F64,
    roots: npt.NDArray[np.int32],
    scores: F64,
    contrib: F64,
) -> None:  # pragma: no cover - numba
    """Mean of tree probabilities per row of ``x[:, cols]``; path contributions."""
    n_trees = roots.shape[0]
    nf = cols.shape[0]
    for i in range(x.shape[0]):
        for f in range(nf):
            contrib[i, f] = 0.0
        total = 0.0
        for t in range(n_trees):
            node = roots[t]
            while feature[node] >= 0:
                f = feature[node]
                xv = np.float64(np.float32(x[i, cols[f]]))
                nxt = left[node] if xv <= threshold[node] else right[node]
                contrib[i, f] += value[nxt] - value[node]
                node = nxt
            total += value[node]
        scores[i] = total / n_trees
        for f in range(nf):
            contrib[i, f] /= n_trees


@numba.njit(cache=True, nogil=True)
def linear_many(
    x: F64,
    cols: npt.NDArray[np.int64],
    coef: F64,
    mean: F64,
    scale: F64,
    intercept: float,
    scores: F64,
    contrib: F64,
) -> None:  # pragma: no cover - numba
    """Logistic regression on standardised ``x[:, cols]``; per-feature ``w * z``."""
    nf = cols.shape[0]
    for i in range(x.shape[0]):
        z = intercept
        for f in range(nf):
            c = coef[f] * ((x[i, cols[f]] - mean[f]) / scale[f])
            contrib[i, f] = c
            z += c
        if z >= 0:
            scores[i] = 1.0 / (1.0 + math.exp(-z))
        else:
            e = math.exp(z)
            scores[i] = e / (1.0 + e)


@dataclass(frozen=True)
class CompiledModel:
    """A model ready to score: arrays + metadata (see module docstring).

    ``feature_names`` are the schema columns the model reads, in its input
    order; ``feature_config`` is the window geometry its features assume.
    """

    kind: str
    feature_names: tuple[str, ...]
    arrays: dict[str, npt.NDArray[Any]]
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    meta: dict[str, Any] = field(default_factory=dict)
    cols: npt.NDArray[np.int64] = field(init=False, repr=False)
    reason_of: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ModelError(f"model: unknown kind {self.kind!r} (known: {', '.join(KINDS)})")
        try:
            cols = np.asarray(feature_index(list(self.feature_names)), dtype=np.int64)
        except Exception as e:
            raise ModelError(f"model: {e}") from None
        object.__setattr__(self, "cols", cols)
        object.__setattr__(self, "reason_of", tuple(FEATURES[c].reason for c in cols))
        self._validate()

    def _validate(self) -> None:
        spec = _FOREST_ARRAYS if self.kind == "forest" else _LINEAR_ARRAYS
        for name, dt in spec.items():
            a = self.arrays.get(name)
            if a is None or a.dtype != np.dtype(dt) or a.ndim != 1:
                raise ModelError(f"model: array {name!r} missing or of the wrong type")
        nf = len(self.feature_names)
        if self.kind == "linear":
            for name in ("coef", "mean", "scale"):
                if self.arrays[name].shape != (nf,):
                    raise ModelError(f"model: array {name!r} must have {nf} entries")
            if self.arrays["intercept"].shape != (1,) or (self.arrays["scale"] == 0).any():
                raise ModelError("model: bad intercept or zero scale")
            if not all(np.isfinite(self.arrays[k]).all() for k in _LINEAR_ARRAYS):
                raise ModelError("model: non-finite linear parameters")
            return
        arr = self.arrays
        n = arr["feature"].shape[0]
        if not (arr["threshold"].shape[0] == arr["left"].shape[0] == arr["right"].shape[0]
                == arr["value"].shape[0] == n) or n == 0 or arr["roots"].shape[0] == 0:  # fmt: skip
            raise ModelError("model: forest node arrays differ in length or are empty")
        internal = arr["feature"] >= 0
        if (arr["feature"] >= nf).any() or ((arr["roots"] < 0) | (arr["roots"] >= n)).any():
            raise ModelError("model: forest feature or root index out of range")
        for side in ("left", "right"):
            child = arr[side][internal]
            # children come strictly after their parent, so traversal always terminates
            if ((child <= np.flatnonzero(internal)) | (child >= n)).any():
                raise ModelError(f"model: forest {side} child index out of range")
        if not (np.isfinite(arr["value"]).all() and not np.isnan(arr["threshold"]).any()):
            raise ModelError("model: non-finite forest values")

    @property
    def schema_version(self) -> int:
        return int(self.meta.get("feature_schema_version", SCHEMA_VERSION))

    def predict_many(self, x: F64) -> tuple[F64, F64]:
        """Scores and per-model-feature contributions for a feature matrix (schema order)."""
        n = x.shape[0]
        xs = np.ascontiguousarray(x, dtype=np.float64)
        scores = np.empty(n, dtype=np.float64)
        contrib = np.empty((n, len(self.cols)), dtype=np.float64)
        a = self.arrays
        if self.kind == "forest":
            forest_many(
                xs, self.cols, a["feature"], a["threshold"], a["left"], a["right"], a["value"],
                a["roots"], scores, contrib,
            )  # fmt: skip
        else:
            linear_many(
                xs, self.cols, a["coef"], a["mean"], a["scale"], float(a["intercept"][0]),
                scores, contrib,
            )  # fmt: skip
        return scores, contrib
