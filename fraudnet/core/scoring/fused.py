"""One kernel call per batch: fold features, score, pick reason codes, update drift counts.

:func:`score_fused` is what :meth:`ModelScorer.score_many` runs. It chains
the feature kernel (:func:`~fraudnet.core.features.kernels.fold_many`),
the model kernel (:func:`~.compiled.forest_many` or
:func:`~.compiled.linear_many`) and, per row, the top reason codes and the
drift histograms, so a single transaction costs one Python -> Numba
transition instead of a dozen numpy calls. Its result equals the unfused
path (``FeatureState.fold_arrays`` + ``CompiledModel.predict_many`` +
:func:`~.reasons.reasons_many`); a test checks that, and the pure-Python
twin (``score_fused.py_func``).

The kernel's on-disk cache is keyed on its whole call tree
(:func:`~.jitcache.deep_cache`): numba alone would keep serving a stale
feature or tree kernel compiled into it after those modules change.

Input checks happen inside the kernel before anything is folded: a
non-finite or out-of-range time or amount returns ``-(row + 1)``.
"""

from __future__ import annotations

import math
from typing import Final

import numba
import numpy as np
import numpy.typing as npt

from ..features.kernels import fold_many
from .compiled import forest_many, linear_many
from .jitcache import deep_cache

__all__ = ["MAX_TS", "SCORE_EDGES", "bin_of", "reason_keys", "score_fused"]

F64 = npt.NDArray[np.float64]
MAX_TS: Final = float(2**32 - 1)
#: upper bounds of the score histogram buckets (Prometheus ``le``; the last is +Inf)
SCORE_EDGES: Final = np.array(
    [0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99], dtype=np.float64
)
KIND_FOREST: Final = 0  # any tree model: forest, gbm, blend (see compiled.forest_many)
KIND_GBM: Final = 1
KIND_LINEAR: Final = 2


@numba.njit(cache=True, nogil=True)
def bin_of(edges: F64, v: float) -> int:  # pragma: no cover - numba
    """Index of the first edge ``>= v`` (``len(edges)`` when above all): ``le`` buckets."""
    lo = 0
    hi = edges.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if v <= edges[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, nogil=True)
def reason_keys(
    contrib: F64,
    code_of: npt.NDArray[np.int64],
    n_codes: int,
    top: int,
    min_contribution: float,
    keys: npt.NDArray[np.int64],
) -> None:  # pragma: no cover - numba
    """Top ``top`` reason codes per row, encoded as one integer per row.

    Contributions are summed per code; codes are taken by decreasing sum
    (ties: lower code index first) while the sum exceeds
    ``min_contribution``. Key = sum over ranks r of ``(code + 1) * (n_codes
    + 1) ** r``; 0 means no code (``LOW_RISK``).
    """
    per = np.empty(n_codes, dtype=np.float64)
    used = np.zeros(n_codes, dtype=np.bool_)
    base = n_codes + 1
    for i in range(contrib.shape[0]):
        per[:] = 0.0
        used[:] = False
        for f in range(contrib.shape[1]):
            per[code_of[f]] += contrib[i, f]
        key = 0
        mult = 1
        for _ in range(min(top, n_codes)):
            best = -1
            for c in range(n_codes):
                if not used[c] and (best < 0 or per[c] > per[best]):
                    best = c
            if per[best] <= min_contribution:
                break
            used[best] = True
            key += (best + 1) * mult
            mult *= base
        keys[i] = key


@deep_cache  # its callees live in other modules: numba's own key would miss their changes
@numba.njit(cache=True, nogil=True)
def score_fused(  # type: ignore[no-untyped-def]  # 56 arrays/scalars, documented below
    # what stays the same from call to call comes first (the caller keeps it as one
    # tuple): the state arrays (FeatureState.fold_state_args), the model, the drift
    # counts and the work buffers; then the batch columns, start and the output scores
    c_tab_keys,
    c_tab_slot,
    c_keys,
    c_meta,
    c_ring_ts,
    c_ring_amt,
    c_ring_fp,
    c_ovf_cnt,
    c_ovf_f,
    c_ovf_head,
    c_pos,
    c_n,
    c_last,
    c_unordered,
    t_tab_keys,
    t_tab_slot,
    t_keys,
    t_meta,
    t_head,
    t_lhead,
    t_lab_cnt,
    t_lab_fraud,
    t_rt_cnt,
    t_rt_dist,
    t_last,
    params,
    counters,
    kind,
    cols,
    nodes,
    trees,
    parts,
    base,
    coef,
    mean,
    scale,
    code_of,
    n_codes,
    top,
    min_contribution,
    fsum,
    fedges,
    fcounts,
    score_counts,
    score_sum,
    order,
    x,
    contrib,
    keys,
    card_key,
    term_key,
    ts,
    amount,
    label,
    start,
    scores,
):  # pragma: no cover - numba
    """Fold, score and explain ``order[start:]`` (see module docstring).

    ``start == 0`` validates the batch and computes ``order`` (stable by
    time). Returns ``n`` when done, ``-(row + 1)`` for a bad input row, or
    the position at which an entity map was full (the caller evicts and
    calls again with that ``start``; rows before it are final, the drift
    counts are updated once the batch completes).
    """
    n = ts.shape[0]
    if start == 0:
        for i in range(n):
            t = ts[i]
            a = amount[i]
            if not (math.isfinite(t) and math.isfinite(a)) or t < 0.0 or t > MAX_TS:
                return -(i + 1)
        if n == 1:
            order[0] = 0
        else:
            order[:] = np.argsort(ts, kind="mergesort")
    done = fold_many(
        c_tab_keys, c_tab_slot, c_keys, c_meta, c_ring_ts, c_ring_amt, c_ring_fp, c_ovf_cnt,
        c_ovf_f, c_ovf_head, c_pos, c_n, c_last, c_unordered,
        t_tab_keys, t_tab_slot, t_keys, t_meta, t_head, t_lhead, t_lab_cnt, t_lab_fraud,
        t_rt_cnt, t_rt_dist, t_last, params, counters,
        card_key, term_key, ts, amount, label, order, start, x,
    )  # fmt: skip
    if done < n:
        return done
    if kind == KIND_LINEAR:
        linear_many(x, cols, coef, mean, scale, base, scores, contrib)
    else:
        forest_many(x, cols, nodes, trees, parts, scores, contrib)
    reason_keys(contrib, code_of, n_codes, top, min_contribution, keys)
    nf = cols.shape[0]
    nb = fedges.shape[1]
    for i in range(n):
        score_counts[bin_of(SCORE_EDGES, scores[i])] += 1
        score_sum[0] += scores[i]
        for f in range(nf):
            v = x[i, cols[f]]
            fsum[0, f] += v
            fsum[1, f] += v * v
            if nb > 0:
                fcounts[f, bin_of(fedges[f], v)] += 1
    return n
