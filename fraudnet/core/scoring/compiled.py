"""A fitted model as plain arrays, evaluated by Numba kernels.

Three kinds:

* ``forest`` -- a random forest / extra trees: node arrays (feature,
  threshold, left, right, value = P(fraud) at that node) and ``roots``;
  the score is the mean of the trees' leaf probabilities. scikit-learn
  compares ``float32(x) <= threshold``; at load time each threshold is
  replaced by the float64 ``T`` with ``x <= T  <=>  float32(x) <= threshold``
  for every finite float64 ``x`` (round-to-nearest-even, see
  :func:`f32_equivalent_threshold`), so the kernel never converts ``x``.
* ``gbm`` -- scikit-learn's ``HistGradientBoostingClassifier`` (binary,
  numeric features): the same node arrays with ``value`` = raw (logit)
  contribution, plus ``baseline``; the score is
  ``sigmoid(baseline + sum of leaf values)`` and splits compare float64
  ``x <= threshold`` exactly as scikit-learn's predictor does.
* ``linear`` -- logistic regression on standardised inputs:
  ``sigmoid(b + sum_f w_f (x_f - mu_f) / s_f)``.

Trees are stored in preorder (scikit-learn's layout: the left child of an
internal node is the next node), which the loader checks. At load time the
nodes are packed as ``nodes_i`` = ``[feature, right]`` (int64, a leaf's
``right`` is itself) and ``nodes_f`` = ``[threshold, value]`` (float64);
``trees`` holds ``[root, max depth]`` per tree. (Walking four traversals
in lockstep to the maximum depth was measured slower than this: deep
forests' maximum depth is about twice the mean path.)

All kernels also return per-feature contributions for reason codes. Trees:
path attribution (the change of node value along the decision path
credited to the split feature; for ``forest`` averaged over trees, so
contributions sum to ``score - mean root value``; for ``gbm`` in logit
units); linear: ``w_f (x_f - mu_f) / s_f``.
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

__all__ = [
    "KINDS",
    "CompiledModel",
    "f32_equivalent_threshold",
    "forest_many",
    "linear_many",
    "pack_nodes",
]

KINDS: Final = ("forest", "gbm", "linear")
F64 = npt.NDArray[np.float64]
AGG_MEAN: Final = 0
AGG_LOGIT_SUM: Final = 1

_TREE_ARRAYS: Final = {
    "feature": np.int32, "threshold": np.float64, "left": np.int32, "right": np.int32,
    "value": np.float64, "roots": np.int32,
}  # fmt: skip
_LINEAR_ARRAYS: Final = {"coef": np.float64, "mean": np.float64, "scale": np.float64,
                         "intercept": np.float64}  # fmt: skip


def f32_equivalent_threshold(thr: F64) -> F64:
    """Float64 ``T`` per threshold with ``x <= T  <=>  float32(x) <= thr`` (finite ``x``).

    Let ``t`` be the largest float32 ``<= thr`` and ``u`` the next float32.
    ``float32(x) <= t`` exactly when ``x`` is below the midpoint ``m`` of
    ``t`` and ``u`` (``m`` is exact in float64), or equal to it and the tie
    rounds to ``t`` (``t`` has an even mantissa). Thresholds at or above the
    largest float32 become ``+inf``.
    """
    thr = np.asarray(thr, dtype=np.float64)
    with np.errstate(over="ignore"):
        t = thr.astype(np.float32)
    down = t.astype(np.float64) > thr
    t = np.where(down, np.nextafter(t, np.float32(-np.inf)), t).astype(np.float32)
    u = np.nextafter(t, np.float32(np.inf))
    mid = (t.astype(np.float64) + u.astype(np.float64)) / 2.0
    even = (t.view(np.uint32) & np.uint32(1)) == 0
    out = np.where(even, mid, np.nextafter(mid, -np.inf))
    return np.where(np.isinf(u) | np.isinf(t), np.inf, out)


def pack_nodes(
    arrays: dict[str, npt.NDArray[Any]], f32_compare: bool
) -> tuple[npt.NDArray[np.int64], F64, npt.NDArray[np.int64]]:
    """``(nodes_i, nodes_f, trees)`` of a validated tree ensemble (see module docstring)."""
    feat = arrays["feature"]
    n = feat.shape[0]
    leaf = feat < 0
    thr = arrays["threshold"]
    if f32_compare:
        thr = np.where(leaf, 0.0, f32_equivalent_threshold(thr))
    nodes_i = np.empty((n, 2), dtype=np.int64)
    nodes_i[:, 0] = np.where(leaf, 0, feat)
    nodes_i[:, 1] = np.where(leaf, np.arange(n), arrays["right"])
    nodes_f = np.empty((n, 2), dtype=np.float64)
    nodes_f[:, 0] = np.where(leaf, -np.inf, thr)
    nodes_f[:, 1] = arrays["value"]
    # depth of every node (children come after parents, so one forward pass)
    depth = np.zeros(n, dtype=np.int64)
    internal = np.flatnonzero(~leaf)
    left, right = arrays["left"], arrays["right"]
    for k in internal:
        depth[left[k]] = depth[k] + 1
        depth[right[k]] = depth[k] + 1
    roots = arrays["roots"].astype(np.int64)
    ends = np.append(roots[1:], n)
    trees = np.empty((roots.shape[0], 2), dtype=np.int64)
    trees[:, 0] = roots
    for t in range(roots.shape[0]):
        trees[t, 1] = int(depth[roots[t] : ends[t]].max()) if ends[t] > roots[t] else 0
    return nodes_i, nodes_f, trees


@numba.njit(cache=True, nogil=True)
def forest_many(
    x: F64,
    cols: npt.NDArray[np.int64],
    nodes_i: npt.NDArray[np.int64],
    nodes_f: F64,
    trees: npt.NDArray[np.int64],
    agg: int,
    base: float,
    scores: F64,
    contrib: F64,
) -> None:  # pragma: no cover - numba
    """Tree-ensemble scores of the rows of ``x[:, cols]`` and path contributions.

    ``agg`` 0: mean of leaf values; 1: ``sigmoid(base + sum)``. The model's
    columns are gathered once per batch; trees are the outer loop so one
    tree stays in cache across the batch; the child is chosen without a
    branch (split outcomes are data-dependent and mispredict about half the
    time). Leaf values are added in tree order, so a row's score does not
    depend on the batch it came in.
    """
    n = x.shape[0]
    nf = cols.shape[0]
    n_trees = trees.shape[0]
    xm = np.empty((n, nf), dtype=np.float64)
    for i in range(n):
        for f in range(nf):
            xm[i, f] = x[i, cols[f]]
            contrib[i, f] = 0.0
    # gbm: start from the baseline, as scikit-learn adds trees to it in order
    acc = np.full(n, base if agg == 1 else 0.0, dtype=np.float64)
    for t in range(n_trees):
        root = trees[t, 0]
        for i in range(n):
            node = root
            val = nodes_f[node, 1]
            while True:
                right = nodes_i[node, 1]
                if right == node:  # a leaf
                    break
                f = nodes_i[node, 0]
                nxt = node + 1 + np.int64(xm[i, f] > nodes_f[node, 0]) * (right - node - 1)
                nval = nodes_f[nxt, 1]
                contrib[i, f] += nval - val
                val = nval
                node = nxt
            acc[i] += val
    if agg == 0:
        for i in range(n):
            scores[i] = acc[i] / n_trees
            for f in range(nf):
                contrib[i, f] /= n_trees
    else:
        for i in range(n):
            z = acc[i]
            if z >= 0:
                scores[i] = 1.0 / (1.0 + math.exp(-z))
            else:
                e = math.exp(z)
                scores[i] = e / (1.0 + e)


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
    nodes_i: npt.NDArray[np.int64] = field(init=False, repr=False)
    nodes_f: F64 = field(init=False, repr=False)
    trees: npt.NDArray[np.int64] = field(init=False, repr=False)

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
        if self.kind == "linear":
            ni = np.zeros((0, 2), dtype=np.int64)
            nf_ = np.zeros((0, 2), dtype=np.float64)
            tr = np.zeros((0, 2), dtype=np.int64)
        else:
            ni, nf_, tr = pack_nodes(self.arrays, self.kind == "forest")
        object.__setattr__(self, "nodes_i", ni)
        object.__setattr__(self, "nodes_f", nf_)
        object.__setattr__(self, "trees", tr)

    def _validate(self) -> None:
        spec = _LINEAR_ARRAYS if self.kind == "linear" else _TREE_ARRAYS
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
        if self.kind == "gbm":
            b = arr.get("baseline")
            if b is None or b.dtype != np.float64 or b.shape != (1,) or not np.isfinite(b).all():
                raise ModelError("model: gbm needs a finite float64 'baseline' of one entry")
        n = arr["feature"].shape[0]
        if not (arr["threshold"].shape[0] == arr["left"].shape[0] == arr["right"].shape[0]
                == arr["value"].shape[0] == n) or n == 0 or arr["roots"].shape[0] == 0:  # fmt: skip
            raise ModelError("model: tree node arrays differ in length or are empty")
        internal = arr["feature"] >= 0
        if (arr["feature"] >= nf).any() or ((arr["roots"] < 0) | (arr["roots"] >= n)).any():
            raise ModelError("model: tree feature or root index out of range")
        idx = np.flatnonzero(internal)
        for side in ("left", "right"):
            child = arr[side][internal]
            # children come strictly after their parent, so traversal always terminates
            if ((child <= idx) | (child >= n)).any():
                raise ModelError(f"model: tree {side} child index out of range")
        if (arr["left"][internal] != idx + 1).any():
            raise ModelError("model: tree left child is not the next node (trees must be preorder)")
        if not (np.isfinite(arr["value"]).all() and not np.isnan(arr["threshold"]).any()):
            raise ModelError("model: non-finite tree values")

    @property
    def tree_args(self) -> tuple[npt.NDArray[np.int64], F64, npt.NDArray[np.int64]]:
        """``(nodes_i, nodes_f, trees)`` for :func:`forest_many`."""
        return self.nodes_i, self.nodes_f, self.trees

    @property
    def schema_version(self) -> int:
        return int(self.meta.get("feature_schema_version", SCHEMA_VERSION))

    def predict_into(self, x: F64, scores: F64, contrib: F64) -> None:
        """Write scores and per-model-feature contributions of ``x`` (schema order, C-contiguous
        float64) into preallocated ``scores`` (n) and ``contrib`` (n x model features)."""
        a = self.arrays
        if self.kind == "linear":
            linear_many(
                x, self.cols, a["coef"], a["mean"], a["scale"], float(a["intercept"][0]),
                scores, contrib,
            )  # fmt: skip
        elif self.kind == "forest":
            forest_many(x, self.cols, *self.tree_args, AGG_MEAN, 0.0, scores, contrib)
        else:
            base = float(a["baseline"][0])
            forest_many(x, self.cols, *self.tree_args, AGG_LOGIT_SUM, base, scores, contrib)

    def predict_many(self, x: F64) -> tuple[F64, F64]:
        """Scores and per-model-feature contributions for a feature matrix (schema order)."""
        n = x.shape[0]
        xs = np.ascontiguousarray(x, dtype=np.float64)
        scores = np.empty(n, dtype=np.float64)
        contrib = np.empty((n, len(self.cols)), dtype=np.float64)
        self.predict_into(xs, scores, contrib)
        return scores, contrib
