"""Consortium models: several members' compiled tree models as one ``blend``.

Members of a network cannot pool their transactions, but each can share the
model it trained on its own (pseudonymous, never exported) data: a model file
holds split thresholds on feature values and leaf probabilities, no
identifier, amount or timestamp of any transaction. :func:`combine` turns the
models of several members into one compiled ``blend`` whose score is the
weighted mean of the members' scores::

    score(x) = sum_m w_m score_m(x) / sum_m w_m

Each member's model may itself be a blend: its parts keep their relative
weights inside the member's share. Feature columns are matched by name (the
union of the members' columns, in order of first appearance), so members may
use different feature sets of the same schema version; the window geometry
(:class:`~fraudnet.core.features.FeatureConfig`) must be identical, because a
column means the same thing only under the same windows.

Pure: no files, no keys. Signing and verifying the shared files is the CLI's
job (``fraudnet model sign`` / ``fraudnet model combine``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudnet.core.scoring.compiled import MAX_PARTS, CompiledModel, part_arrays
from fraudnet.errors import ModelError

__all__ = ["combine"]

_TREE_KEYS = ("feature", "threshold", "left", "right", "value")


def _union_names(models: Sequence[CompiledModel]) -> tuple[str, ...]:
    names: list[str] = []
    for m in models:
        names.extend(n for n in m.feature_names if n not in names)
    return tuple(names)


def combine(
    models: Sequence[CompiledModel],
    weights: Sequence[float] | None = None,
    meta: dict[str, Any] | None = None,
) -> CompiledModel:
    """One ``blend`` scoring ``sum_m w_m score_m / sum_m w_m`` (see module docstring).

    Raises :class:`~fraudnet.errors.ModelError` for no model, a linear model,
    weights that are not positive and finite, different feature geometry or
    schema, or more than ``MAX_PARTS`` parts in all.
    """
    if not models:
        raise ModelError("combine: no model given")
    w = np.ones(len(models)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(models),) or not np.isfinite(w).all() or (w <= 0).any():
        raise ModelError("combine: one positive, finite weight per model expected")
    first = models[0]
    for i, m in enumerate(models):
        if m.kind == "linear":
            raise ModelError(f"combine: model {i} is linear; only tree models can be combined")
        if m.feature_config != first.feature_config:
            raise ModelError(
                f"combine: model {i} assumes other feature windows than model 0 "
                "(its columns would mean something else)"
            )
    names = _union_names(models)
    index = {n: k for k, n in enumerate(names)}
    cols: dict[str, list[npt.NDArray[Any]]] = {k: [] for k in (*_TREE_KEYS, "roots")}
    part_cols: dict[str, list[npt.NDArray[Any]]] = {
        k: [] for k in ("tree_part", "part_agg", "part_base", "part_weight")
    }
    node_off = 0
    part_off = 0
    for m, wm in zip(models, w.tolist(), strict=True):
        a = m.arrays
        parts = part_arrays(m.kind, a)
        feat = a["feature"]
        remap = np.asarray([index[n] for n in m.feature_names], dtype=np.int32)
        internal = feat >= 0
        cols["feature"].append(
            np.where(internal, remap[np.maximum(feat, 0)], feat).astype(np.int32)
        )
        cols["threshold"].append(a["threshold"])
        cols["value"].append(a["value"])
        for k in ("left", "right"):
            cols[k].append(np.where(internal, a[k] + node_off, a[k]).astype(np.int32))
        cols["roots"].append((a["roots"] + node_off).astype(np.int32))
        pw = parts["part_weight"].astype(np.float64)
        part_cols["tree_part"].append((parts["tree_part"] + part_off).astype(np.int32))
        part_cols["part_agg"].append(parts["part_agg"].astype(np.int32))
        part_cols["part_base"].append(parts["part_base"].astype(np.float64))
        part_cols["part_weight"].append(wm * pw / pw.sum())
        node_off += feat.shape[0]
        part_off += pw.shape[0]
    if part_off > MAX_PARTS:
        raise ModelError(f"combine: {part_off} parts in all; at most {MAX_PARTS}")
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    arrays.update({k: np.concatenate(v) for k, v in part_cols.items()})
    out_meta: dict[str, Any] = {
        "candidate": "consortium",
        "members": [
            {
                "model_id": m.meta.get("model_id"),
                "candidate": m.meta.get("candidate"),
                "weight": float(wm),
            }
            for m, wm in zip(models, w.tolist(), strict=True)
        ],
    }
    # drift references: the combining member's own training data (model 0), when the
    # columns are its columns
    if names == first.feature_names:
        for k in ("train_mean", "train_std", "train_edges", "train_bin_frac",
                  "train_score_quantiles", "feature_set"):  # fmt: skip
            if k in first.meta:
                out_meta[k] = first.meta[k]
    out_meta.update(meta or {})
    return CompiledModel(
        kind="blend", feature_names=names, arrays=arrays,
        feature_config=first.feature_config, meta=out_meta,
    )  # fmt: skip
