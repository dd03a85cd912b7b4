"""Reason codes: the features that pushed a transaction's score up.

For each transaction, model-feature contributions (see
:mod:`~fraudnet.core.scoring.compiled`) are summed per reason code, and
the codes with the largest positive totals (above ``min_contribution``)
are returned, strongest first. ``LOW_RISK`` when nothing pushed the score
up enough. Codes are short, stable strings from the feature schema
(e.g. ``CARD_AMOUNT_VS_HISTORY``).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["LOW_RISK", "reasons_many"]

LOW_RISK: Final = "LOW_RISK"


def reasons_many(
    contrib: npt.NDArray[np.float64],
    reason_of: tuple[str, ...],
    *,
    top: int = 3,
    min_contribution: float = 0.01,
) -> list[tuple[str, ...]]:
    """Top reason codes per row of ``contrib`` (n x model features)."""
    codes = sorted(set(reason_of))
    code_idx = {c: i for i, c in enumerate(codes)}
    # features -> codes as a 0/1 matrix: one matmul sums contributions per code
    m = np.zeros((len(reason_of), len(codes)), dtype=np.float64)
    for f, c in enumerate(reason_of):
        m[f, code_idx[c]] = 1.0
    per_code = contrib @ m
    k = min(top, len(codes))
    best = np.argsort(-per_code, axis=1, kind="stable")[:, :k]
    out: list[tuple[str, ...]] = []
    cache: dict[tuple[int, ...], tuple[str, ...]] = {}
    for i in range(per_code.shape[0]):
        sel = tuple(int(j) for j in best[i] if per_code[i, j] > min_contribution)
        hit = cache.get(sel)
        if hit is None:
            hit = tuple(codes[j] for j in sel) if sel else (LOW_RISK,)
            cache[sel] = hit
        out.append(hit)
    return out
