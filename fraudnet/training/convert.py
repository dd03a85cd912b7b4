"""Convert fitted scikit-learn models into :class:`CompiledModel` arrays.

Supported: ``RandomForestClassifier`` / ``ExtraTreesClassifier`` (binary,
mean of tree probabilities), ``HistGradientBoostingClassifier`` (binary,
numeric features, no missing values in training -- the node never produces
NaN features), ``VotingClassifier(voting="soft")`` of those tree ensembles
(kind ``blend``: the weighted mean of the parts' probabilities),
``LogisticRegression`` (binary) optionally behind a ``StandardScaler`` in a
``Pipeline``. Anything else is a
:class:`~fraudnet.errors.ModelError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fraudnet.core.features.schema import FeatureConfig
from fraudnet.core.scoring.compiled import CompiledModel
from fraudnet.errors import ModelError

__all__ = ["compile_sklearn"]


def _forest(est: Any) -> dict[str, np.ndarray[Any, Any]]:
    feats, thr, left, right, val, roots = [], [], [], [], [], []
    offset = 0
    for tree_est in est.estimators_:
        tree = tree_est.tree_
        if list(tree_est.classes_) != [0, 1] and len(tree_est.classes_) != 2:
            raise ModelError("model: only binary classifiers can be compiled")
        n = tree.node_count
        is_leaf = tree.children_left < 0
        f = np.where(is_leaf, -1, tree.feature).astype(np.int32)
        v = tree.value[:, 0, :].astype(np.float64)
        tot = v.sum(axis=1)
        p = np.divide(v[:, 1], tot, out=np.zeros(n), where=tot > 0)
        feats.append(f)
        thr.append(np.where(is_leaf, 0.0, tree.threshold).astype(np.float64))
        left.append(np.where(is_leaf, -1, tree.children_left + offset).astype(np.int32))
        right.append(np.where(is_leaf, -1, tree.children_right + offset).astype(np.int32))
        val.append(p)
        roots.append(offset)
        offset += n
    return {
        "feature": np.concatenate(feats), "threshold": np.concatenate(thr),
        "left": np.concatenate(left), "right": np.concatenate(right),
        "value": np.concatenate(val), "roots": np.asarray(roots, dtype=np.int32),
    }  # fmt: skip


def _hgb(est: Any) -> dict[str, np.ndarray[Any, Any]]:
    if getattr(est, "n_trees_per_iteration_", 1) != 1:
        raise ModelError("model: only binary gradient boosting can be compiled")
    if getattr(est, "is_categorical_", None) is not None and np.any(est.is_categorical_):
        raise ModelError("model: categorical gradient-boosting splits are not supported")
    feats, thr, left, right, val, roots = [], [], [], [], [], []
    offset = 0
    for (pred,) in est._predictors:
        nodes = pred.nodes
        n = nodes.shape[0]
        leaf = nodes["is_leaf"].astype(bool)
        feats.append(np.where(leaf, -1, nodes["feature_idx"]).astype(np.int32))
        thr.append(np.where(leaf, 0.0, nodes["num_threshold"]).astype(np.float64))
        left.append(np.where(leaf, -1, nodes["left"].astype(np.int64) + offset).astype(np.int32))
        right.append(np.where(leaf, -1, nodes["right"].astype(np.int64) + offset).astype(np.int32))
        val.append(nodes["value"].astype(np.float64))
        roots.append(offset)
        offset += n
    return {
        "feature": np.concatenate(feats), "threshold": np.concatenate(thr),
        "left": np.concatenate(left), "right": np.concatenate(right),
        "value": np.concatenate(val), "roots": np.asarray(roots, dtype=np.int32),
        "baseline": np.asarray(est._baseline_prediction, dtype=np.float64).reshape(1),
    }  # fmt: skip


_TREE_KEYS = ("feature", "threshold", "left", "right", "value")


def _tree_part(est: Any) -> tuple[dict[str, np.ndarray[Any, Any]], int, float]:
    """Arrays, aggregation (0 mean, 1 logit) and baseline of one blend part."""
    if isinstance(est, RandomForestClassifier | ExtraTreesClassifier):
        return _forest(est), 0, 0.0
    if isinstance(est, HistGradientBoostingClassifier):
        a = _hgb(est)
        return a, 1, float(a["baseline"][0])
    raise ModelError(f"model: a blend part must be a tree ensemble, not {type(est).__name__}")


def _blend(est: Any) -> dict[str, np.ndarray[Any, Any]]:
    if est.voting != "soft":
        raise ModelError("model: only soft-voting ensembles can be compiled")
    parts = list(est.estimators_)
    weights = getattr(est, "_weights_not_none", None)
    w = np.ones(len(parts)) if weights is None else np.asarray(weights, dtype=np.float64)
    if not parts or w.shape != (len(parts),):
        raise ModelError("model: blend weights do not match its parts")
    cols: dict[str, list[np.ndarray[Any, Any]]] = {k: [] for k in (*_TREE_KEYS, "roots")}
    tree_part, agg, base = [], [], []
    offset = 0
    for p, part in enumerate(parts):
        if len(getattr(part, "classes_", ())) != 2:
            raise ModelError("model: only binary classifiers can be compiled")
        a, g, b = _tree_part(part)
        internal = a["feature"] >= 0
        for k in _TREE_KEYS:
            v = a[k]
            if k in ("left", "right"):
                v = np.where(internal, v + offset, -1).astype(np.int32)
            cols[k].append(v)
        cols["roots"].append((a["roots"] + offset).astype(np.int32))
        tree_part.append(np.full(a["roots"].shape[0], p, dtype=np.int32))
        agg.append(g)
        base.append(b)
        offset += a["feature"].shape[0]
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out.update(
        tree_part=np.concatenate(tree_part), part_agg=np.asarray(agg, dtype=np.int32),
        part_base=np.asarray(base, dtype=np.float64), part_weight=w.astype(np.float64),
    )  # fmt: skip
    return out


def compile_sklearn(
    est: Any,
    feature_names: tuple[str, ...],
    feature_config: FeatureConfig,
    meta: dict[str, Any] | None = None,
) -> CompiledModel:
    """Arrays of a fitted estimator reading ``feature_names`` (in that order)."""
    scaler = None
    if isinstance(est, Pipeline):
        steps = [s for _, s in est.steps]
        if len(steps) == 2 and isinstance(steps[0], StandardScaler):
            scaler, est = steps
        elif len(steps) == 1:
            est = steps[0]
        else:
            raise ModelError("model: only StandardScaler + estimator pipelines can be compiled")
    if len(getattr(est, "classes_", ())) != 2:
        raise ModelError("model: only binary classifiers can be compiled")
    nf = len(feature_names)
    if isinstance(est, RandomForestClassifier | ExtraTreesClassifier):
        if scaler is not None:
            raise ModelError("model: tree ensembles are compiled without a scaler")
        arrays = _forest(est)
        kind = "forest"
    elif isinstance(est, HistGradientBoostingClassifier):
        if scaler is not None:
            raise ModelError("model: tree ensembles are compiled without a scaler")
        arrays = _hgb(est)
        kind = "gbm"
    elif isinstance(est, VotingClassifier):
        if scaler is not None:
            raise ModelError("model: tree ensembles are compiled without a scaler")
        arrays = _blend(est)
        kind = "blend"
    elif isinstance(est, LogisticRegression):
        mean = np.zeros(nf) if scaler is None else np.asarray(scaler.mean_, dtype=np.float64)
        scale = np.ones(nf) if scaler is None else np.asarray(scaler.scale_, dtype=np.float64)
        arrays = {
            "coef": np.asarray(est.coef_[0], dtype=np.float64),
            "intercept": np.asarray([est.intercept_[0]], dtype=np.float64),
            "mean": mean,
            "scale": scale,
        }
        kind = "linear"
    else:
        raise ModelError(f"model: cannot compile {type(est).__name__}")
    return CompiledModel(
        kind=kind, feature_names=tuple(feature_names), arrays=arrays,
        feature_config=feature_config, meta=dict(meta or {}),
    )  # fmt: skip
