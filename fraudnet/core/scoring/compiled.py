"""A fitted model as plain arrays, evaluated by Numba kernels.

Four kinds:

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
* ``blend`` -- a soft-voting ensemble of tree ensembles (scikit-learn's
  ``VotingClassifier(voting="soft")`` of forests and gradient boosting):
  the parts' nodes concatenated, ``tree_part`` (the part of each tree, parts
  contiguous and in order), and per part ``part_agg`` (0 = forest mean,
  1 = gbm sigmoid), ``part_base`` (gbm baseline) and ``part_weight``; the
  score is ``sum_p w_p score_p / sum_p w_p`` (``np.average`` of the parts'
  ``predict_proba``, as scikit-learn computes it).
* ``linear`` -- logistic regression on standardised inputs:
  ``sigmoid(b + sum_f w_f (x_f - mu_f) / s_f)``.

Trees are stored in preorder (scikit-learn's layout: the left child of an
internal node is the next node), which the loader checks. At load time the
nodes are packed into one record array (one cache line fetch per node
instead of one per field array): threshold, feature, the two children
``kid`` (a leaf's are itself) and value -- :data:`NODE_F32` (24 bytes,
float32 thresholds, :func:`f32_floor`) for models made of forests only,
:data:`NODE_F64` (32 bytes) otherwise; ``trees`` holds the roots and
``parts`` one row per part: ``[agg, base, weight, end tree]``. Forests and
gbm models are one-part blends, so one kernel (:func:`forest_many`) scores
every tree kind. The kernel walks many (row, tree) paths in lockstep and
picks a child by indexing ``kid`` with the split outcome, never by a
branch (see ``docs/adr/0121-lockstep-tree-walks.md``).

All kernels also return per-feature contributions for reason codes. Trees:
path attribution (the change of node value along the decision path
credited to the split feature; for ``forest`` averaged over trees, so
contributions sum to ``score - mean root value``; for ``gbm`` in logit
units; in a blend each gbm part's logit contributions are rescaled to
probability units -- by ``(score_p - sigmoid(base)) / (z - base)`` -- and
the parts' contributions weighted like their scores); linear:
``w_f (x_f - mu_f) / s_f``.
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
    "NODE_F32",
    "NODE_F64",
    "SMALL_BATCH",
    "CompiledModel",
    "f32_equivalent_threshold",
    "f32_floor",
    "forest_many",
    "linear_many",
    "pack_nodes",
    "part_arrays",
]

KINDS: Final = ("forest", "gbm", "blend", "linear")
#: bound on a linear model's per-feature weight on raw inputs, intercept and means: a
#: fitted logistic regression is orders of magnitude below; a file beyond it is damaged
#: or hostile (its scores could overflow to NaN, which no threshold blocks)
MAX_LINEAR_WEIGHT: Final = 1e9
F64 = npt.NDArray[np.float64]
AGG_MEAN: Final = 0
AGG_LOGIT_SUM: Final = 1
#: one tree node as the kernel reads it, for models made of forests only (24 bytes):
#: float32 threshold (compared with the float32-rounded feature, as scikit-learn
#: does), the split feature, the two children (``kid[outcome]``; a leaf's are itself)
#: and the node value
NODE_F32: Final = np.dtype(
    [("thr", np.float32), ("feat", np.int32), ("kid", np.int32, (2,)), ("val", np.float64)],
    align=True,
)
#: the same with a float64 threshold (32 bytes), for models with a gbm part
NODE_F64: Final = np.dtype(
    [("thr", np.float64), ("val", np.float64), ("kid", np.int32, (2,)), ("feat", np.int32)],
    align=True,
)

_TREE_ARRAYS: Final = {
    "feature": np.int32, "threshold": np.float64, "left": np.int32, "right": np.int32,
    "value": np.float64, "roots": np.int32,
}  # fmt: skip
_PART_ARRAYS: Final = {"tree_part": np.int32, "part_agg": np.int32, "part_base": np.float64,
                       "part_weight": np.float64}  # fmt: skip
_LINEAR_ARRAYS: Final = {"coef": np.float64, "mean": np.float64, "scale": np.float64,
                         "intercept": np.float64}  # fmt: skip
MAX_PARTS: Final = 16
#: bound on a gradient-boosting leaf's logit contribution: fitted models stay orders of
#: magnitude below; beyond it the summed logits could overflow to inf - inf
MAX_LEAF_LOGIT: Final = 1e6


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


def part_arrays(kind: str, arrays: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """The blend part arrays of a tree model: a blend's own, or one part for forest / gbm."""
    if kind == "blend":
        return {k: arrays[k] for k in _PART_ARRAYS}
    n_trees = arrays["roots"].shape[0]
    gbm = kind == "gbm"
    return {
        "tree_part": np.zeros(n_trees, dtype=np.int32),
        "part_agg": np.array([AGG_LOGIT_SUM if gbm else AGG_MEAN], dtype=np.int32),
        "part_base": np.array([float(arrays["baseline"][0]) if gbm else 0.0]),
        "part_weight": np.ones(1, dtype=np.float64),
    }


def f32_floor(thr: F64) -> npt.NDArray[np.float32]:
    """The largest float32 ``t <= thr``: for a float32 ``v``, ``v <= thr  <=>  v <= t``
    (so a float32 node compares exactly as scikit-learn's float64 threshold does)."""
    thr = np.asarray(thr, dtype=np.float64)
    with np.errstate(over="ignore"):
        t = thr.astype(np.float32)
    down = t.astype(np.float64) > thr
    return np.where(down, np.nextafter(t, np.float32(-np.inf)), t).astype(np.float32)


def pack_nodes(
    arrays: dict[str, npt.NDArray[Any]], parts: dict[str, npt.NDArray[Any]], *, wide: bool = False
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64], F64]:
    """``(nodes, trees, parts)`` of a validated tree model (see module docstring).

    Models made of forests only get :data:`NODE_F32` records (float32
    thresholds, :func:`f32_floor`) unless ``wide``; others :data:`NODE_F64`,
    where forest parts get float32-equivalent thresholds
    (:func:`f32_equivalent_threshold`) and gbm parts keep theirs. Both
    layouts give the same scores (tested)."""
    feat = arrays["feature"]
    n = feat.shape[0]
    leaf = feat < 0
    roots = arrays["roots"].astype(np.int64)
    ends = np.append(roots[1:], n)
    # per node: does it belong to a forest part (float32 comparisons)?
    f32_tree = parts["part_agg"][parts["tree_part"]] == AGG_MEAN
    f32_node = np.repeat(f32_tree, ends - roots)
    thr = arrays["threshold"]
    if f32_tree.all() and not wide:
        nodes = np.zeros(n, dtype=NODE_F32)
        nodes["thr"] = np.where(leaf, np.float32(0.0), f32_floor(thr))
    else:
        nodes = np.zeros(n, dtype=NODE_F64)
        thr = np.where(f32_node & ~leaf, f32_equivalent_threshold(thr), thr)
        nodes["thr"] = np.where(leaf, 0.0, thr)
    idx = np.arange(n)
    nodes["val"] = arrays["value"]
    nodes["feat"] = np.where(leaf, 0, feat)
    nodes["kid"][:, 0] = np.where(leaf, idx, idx + 1)
    nodes["kid"][:, 1] = np.where(leaf, idx, arrays["right"])
    n_parts = parts["part_agg"].shape[0]
    ends_t = np.searchsorted(parts["tree_part"], np.arange(n_parts), side="right")
    table = np.empty((n_parts, 4), dtype=np.float64)
    table[:, 0] = parts["part_agg"]
    table[:, 1] = parts["part_base"]
    table[:, 2] = parts["part_weight"]
    table[:, 3] = ends_t
    return nodes, roots, table


@numba.njit(cache=True, nogil=True, inline="always")
def _sigmoid(z: float) -> float:  # pragma: no cover - numba
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


#: batches up to this size walk one row at a time, all trees of a part in lockstep;
#: larger ones walk tree by tree, all rows of a block in lockstep
SMALL_BATCH: Final = 8
#: rows walked together through one tree (their features, contributions and cursors
#: stay in L1 while the tree is in L1/L2)
BLOCK: Final = 256
_U = np.uint64  # unsigned indices: numba adds no negative-index wraparound code for them


@numba.njit(cache=True, nogil=True)
def _walk_trees(
    xm: F64, pc: F64, nodes: npt.NDArray[Any], trees: npt.NDArray[np.int64], t0: int, t1: int,
    leaf: F64, cur: npt.NDArray[np.uint64], act: npt.NDArray[np.uint64],
) -> None:  # pragma: no cover - numba  # fmt: skip
    """One row (features ``xm``) through trees ``t0..t1-1`` in lockstep: ``leaf[t]`` =
    its leaf value in tree ``t``; path contributions added into ``pc``.

    Each round advances every unfinished tree by one level. The child is
    picked by indexing the node's ``kid`` pair with the split outcome (a
    load, not a branch: outcomes are data-dependent and a mispredicted
    branch would flush the other trees' loads in flight), and finished
    trees are dropped from ``act`` without a branch either. A single row's
    node loads from many trees are thus independent and overlap their
    cache misses.
    """
    m = _U(0)
    for t in range(t0, t1):
        cur[t] = trees[t]
        act[m] = t
        m += _U(1)
    while m > _U(0):
        k2 = _U(0)
        for k in range(m):
            t = act[k]
            node = cur[t]
            rec = nodes[node]
            f = _U(rec["feat"])
            nxt = _U(rec["kid"][_U(xm[f] > rec["thr"])])
            # a leaf's kids are itself: it adds 0.0 to feature 0 (no effect)
            pc[f] += nodes[nxt]["val"] - rec["val"]
            cur[t] = nxt
            act[k2] = t
            k2 += _U(nxt != node)
        m = k2
    for t in range(t0, t1):
        leaf[t] = nodes[cur[t]]["val"]


@numba.njit(cache=True, nogil=True)
def _walk_rows(
    xm: F64, pc: F64, nf: int, r0: int, r1: int, nodes: npt.NDArray[Any], root: int, acc: F64,
    cur: npt.NDArray[np.uint64], act: npt.NDArray[np.uint64],
) -> None:  # pragma: no cover - numba  # fmt: skip
    """Rows ``r0..r1-1`` (row ``i``'s features at ``xm[i * nf:]``, its contributions at
    ``pc[i * nf:]``) through the tree at ``root`` in lockstep: ``acc[i]`` plus the row's
    leaf value (see :func:`_walk_trees` for why there is no branch on the outcome)."""
    m = _U(0)
    for i in range(r0, r1):
        cur[i] = root
        act[m] = i
        m += _U(1)
    nfu = _U(nf)
    while m > _U(0):
        k2 = _U(0)
        for k in range(m):
            i = act[k]
            node = cur[i]
            rec = nodes[node]
            o = i * nfu + _U(rec["feat"])
            nxt = _U(rec["kid"][_U(xm[o] > rec["thr"])])
            pc[o] += nodes[nxt]["val"] - rec["val"]
            cur[i] = nxt
            act[k2] = i
            k2 += _U(nxt != node)
        m = k2
    for i in range(r0, r1):
        acc[i] += nodes[cur[i]]["val"]


@numba.njit(cache=True, nogil=True)
def forest_many(
    x: F64,
    cols: npt.NDArray[np.int64],
    nodes: npt.NDArray[Any],
    trees: npt.NDArray[np.int64],
    parts: F64,
    scores: F64,
    contrib: F64,
) -> None:  # pragma: no cover - numba
    """Tree-model scores of the rows of ``x[:, cols]`` and path contributions.

    ``parts`` rows ``[agg, base, weight, end tree]``: agg 0 = mean of the
    part's leaf values, 1 = ``sigmoid(base + sum)``; the score is the
    weighted mean of the parts' scores. The model's columns are gathered
    once per batch, in the nodes' threshold type (float32 nodes: the
    features rounded to float32, as scikit-learn's forests compare them).
    Batches above :data:`SMALL_BATCH` rows are walked tree by tree, in
    blocks of :data:`BLOCK` rows in lockstep (:func:`_walk_rows`); smaller
    ones row by row, all trees of a part in lockstep (:func:`_walk_trees`).
    Leaf values are added in tree order either way, so a row's score does
    not depend on its batch (its contributions may differ in the last bits:
    they are summed in another order).
    """
    n = x.shape[0]
    nf = cols.shape[0]
    n_parts = parts.shape[0]
    nt = trees.shape[0]
    # row i's model features at [i * nf, (i + 1) * nf): flat, one multiply per step
    xm = np.empty(n * nf, dtype=nodes["thr"].dtype)
    pc = np.empty(n * nf, dtype=np.float64)
    acc = np.empty(n, dtype=np.float64)
    small = n <= SMALL_BATCH
    cur = np.empty(nt if small else n, dtype=np.uint64)
    act = np.empty(nt if small else min(n, BLOCK), dtype=np.uint64)
    leaf = np.empty(nt if small else 0, dtype=np.float64)
    for i in range(n):
        scores[i] = 0.0
        for f in range(nf):
            xm[i * nf + f] = x[i, cols[f]]
            contrib[i, f] = 0.0
    wsum = 0.0
    t_first = 0
    for p in range(n_parts):
        agg = int(parts[p, 0])
        base = parts[p, 1]
        w = parts[p, 2]
        t_end = int(parts[p, 3])
        for i in range(n):
            # gbm: start from the baseline, as scikit-learn adds trees to it in order
            acc[i] = base if agg == AGG_LOGIT_SUM else 0.0
        pc[:] = 0.0
        if small:
            for i in range(n):
                r0 = i * nf
                xr = xm[r0 : r0 + nf]
                pr = pc[r0 : r0 + nf]
                _walk_trees(xr, pr, nodes, trees, t_first, t_end, leaf, cur, act)
                a = acc[i]
                for t in range(t_first, t_end):
                    a += leaf[t]
                acc[i] = a
        else:
            for r0 in range(0, n, BLOCK):
                r1 = min(n, r0 + BLOCK)
                for t in range(t_first, t_end):
                    _walk_rows(xm, pc, nf, r0, r1, nodes, trees[t], acc, cur, act)
        nt_p = t_end - t_first
        s0 = _sigmoid(base)
        for i in range(n):
            if agg == AGG_MEAN:
                s = acc[i] / nt_p
                k = 1.0 / nt_p
            else:
                s = _sigmoid(acc[i])
                if n_parts == 1:
                    k = 1.0  # a gbm model alone: logit units
                else:
                    d = acc[i] - base
                    k = (s - s0) / d if abs(d) > 1e-12 else s0 * (1.0 - s0)
            scores[i] += w * s
            wk = w * k
            for f in range(nf):
                contrib[i, f] += wk * pc[i * nf + f]
        wsum += w
        t_first = t_end
    for i in range(n):
        scores[i] /= wsum
        for f in range(nf):
            contrib[i, f] /= wsum


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
        if z != z:  # NaN (+inf and -inf terms): fail closed, never a silent allow
            scores[i] = 1.0
        elif z >= 0:
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
    nodes: npt.NDArray[Any] = field(init=False, repr=False)
    trees: npt.NDArray[np.int64] = field(init=False, repr=False)
    parts: F64 = field(init=False, repr=False)

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
            nodes = np.zeros(0, dtype=NODE_F64)
            trees = np.zeros(0, dtype=np.int64)
            parts = np.zeros((0, 4), dtype=np.float64)
        else:
            nodes, trees, parts = pack_nodes(self.arrays, part_arrays(self.kind, self.arrays))
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "trees", trees)
        object.__setattr__(self, "parts", parts)

    def _validate(self) -> None:
        spec = _LINEAR_ARRAYS if self.kind == "linear" else _TREE_ARRAYS
        if self.kind == "blend":
            spec = {**_TREE_ARRAYS, **_PART_ARRAYS}
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
            with np.errstate(all="ignore"):
                weight = np.abs(self.arrays["coef"]) / np.abs(self.arrays["scale"])
            big = max(
                float(weight.max(initial=0.0)),
                abs(float(self.arrays["intercept"][0])),
                float(np.abs(self.arrays["mean"]).max(initial=0.0)),
            )
            if not big <= MAX_LINEAR_WEIGHT:  # also catches inf and NaN
                raise ModelError(
                    f"model: linear parameters out of range (|coef/scale|, |intercept| and "
                    f"|mean| must be <= {MAX_LINEAR_WEIGHT:g})"
                )
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
        if n >= 2**31 - 1:
            raise ModelError("model: too many tree nodes")
        internal = arr["feature"] >= 0
        roots = arr["roots"]
        if (arr["feature"] >= nf).any() or ((roots < 0) | (roots >= n)).any():
            raise ModelError("model: tree feature or root index out of range")
        if roots[0] != 0 or (np.diff(roots) <= 0).any():
            raise ModelError("model: tree roots must start at 0 and increase")
        idx = np.flatnonzero(internal)
        for side in ("left", "right"):
            child = arr[side][internal]
            # children come strictly after their parent, so traversal always terminates
            if ((child <= idx) | (child >= n)).any():
                raise ModelError(f"model: tree {side} child index out of range")
        # a tree's children stay inside it (so parts and tree boundaries hold)
        tree_of = np.searchsorted(roots, np.arange(n), side="right") - 1
        for side in ("left", "right"):
            if (tree_of[arr[side][internal]] != tree_of[idx]).any():
                raise ModelError(f"model: tree {side} child index outside its tree")
        if (arr["left"][internal] != idx + 1).any():
            raise ModelError("model: tree left child is not the next node (trees must be preorder)")
        if not (np.isfinite(arr["value"]).all() and not np.isnan(arr["threshold"]).any()):
            raise ModelError("model: non-finite tree values")
        if self.kind == "blend":
            self._validate_parts(roots.shape[0])
            agg = self.arrays["part_agg"][self.arrays["tree_part"][tree_of]]
        else:
            agg = np.full(n, AGG_LOGIT_SUM if self.kind == "gbm" else AGG_MEAN)
        # leaf values: probabilities where a part averages them, bounded logits where it
        # sums them, so every accepted model scores in [0, 1] (a damaged file with a
        # forest value of 1e180 scored 1e180: found by the long fuzz pass)
        value = arr["value"]
        mean = agg == AGG_MEAN
        if ((value[mean] < 0.0) | (value[mean] > 1.0)).any():
            raise ModelError("model: forest node values must be probabilities in [0, 1]")
        if (np.abs(value[~mean]) > MAX_LEAF_LOGIT).any():
            raise ModelError(f"model: gradient-boosting leaf values must be within "
                             f"+-{MAX_LEAF_LOGIT:g}")  # fmt: skip

    def _validate_parts(self, n_trees: int) -> None:
        a = self.arrays
        tp, agg, base, w = a["tree_part"], a["part_agg"], a["part_base"], a["part_weight"]
        n_parts = agg.shape[0]
        if not 1 <= n_parts <= MAX_PARTS or base.shape != (n_parts,) or w.shape != (n_parts,):
            raise ModelError(f"model: blend needs 1..{MAX_PARTS} parts with a base and a weight")
        if tp.shape != (n_trees,) or tp[0] != 0 or tp[-1] != n_parts - 1:
            raise ModelError("model: blend tree_part must give each tree's part")
        if ((np.diff(tp) != 0) & (np.diff(tp) != 1)).any():
            raise ModelError("model: blend parts must be contiguous runs of trees, in order")
        if not np.isin(agg, (AGG_MEAN, AGG_LOGIT_SUM)).all():
            raise ModelError("model: blend part_agg must be 0 (forest) or 1 (gbm)")
        if not (np.isfinite(base).all() and np.isfinite(w).all() and (w > 0).all()):
            raise ModelError("model: blend part bases and weights must be finite, weights > 0")

    @property
    def tree_args(self) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64], F64]:
        """``(nodes, trees, parts)`` for :func:`forest_many`."""
        return self.nodes, self.trees, self.parts

    @property
    def n_trees(self) -> int:
        return int(self.trees.shape[0])

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
        else:
            forest_many(x, self.cols, *self.tree_args, scores, contrib)

    def predict_many(self, x: F64) -> tuple[F64, F64]:
        """Scores and per-model-feature contributions for a feature matrix (schema order)."""
        n = x.shape[0]
        xs = np.ascontiguousarray(x, dtype=np.float64)
        scores = np.empty(n, dtype=np.float64)
        contrib = np.empty((n, len(self.cols)), dtype=np.float64)
        self.predict_into(xs, scores, contrib)
        return scores, contrib
