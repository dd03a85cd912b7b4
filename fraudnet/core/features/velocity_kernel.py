"""Numba kernel of the policy velocity windows (see :mod:`fraudnet.core.policy.velocity`).

Kept beside the feature kernels because core confines Numba to the
``features`` and ``scoring`` packages (tests/test_architecture.py). It uses
the feature hash map and the same bucket-ring-with-head technique as the
terminal windows of :mod:`.kernels`; the state it folds into is owned by
:class:`fraudnet.core.policy.velocity.VelocityState`. Owned by the policy
(issue 8); nothing in the feature pipeline calls it.
"""

from __future__ import annotations

import math
from typing import Final

import numba
import numpy as np
import numpy.typing as npt

from .hashmap import find_or_insert

__all__ = ["NO_HEAD", "fold_velocity_many"]

NO_HEAD: Final = -(1 << 62)


@numba.njit(cache=True, nogil=True)
def fold_velocity_many(
    tab_keys: npt.NDArray[np.uint64],
    tab_slot: npt.NDArray[np.int32],
    slot_keys: npt.NDArray[np.uint64],
    meta: npt.NDArray[np.int64],
    head: npt.NDArray[np.int64],
    cnt: npt.NDArray[np.int32],
    sm: npt.NDArray[np.float64],
    last: npt.NDArray[np.float64],
    wcnt: npt.NDArray[np.int64],
    wsum: npt.NDArray[np.float64],
    keys: npt.NDArray[np.uint64],
    present: npt.NDArray[np.bool_],
    ts: npt.NDArray[np.float64],
    amt: npt.NDArray[np.float64],
    order: npt.NDArray[np.int64],
    start: int,
    nwin: int,
    bucket_s: float,
    out_cnt: npt.NDArray[np.float64],
    out_sum: npt.NDArray[np.float64],
    counters: npt.NDArray[np.int64],
) -> int:
    """Fold ``order[start:]`` into the state; write each transaction's window values.

    ``wcnt`` / ``wsum`` hold each entity's running totals of the buckets
    ``head - nwin + 1 .. head`` (the window of a transaction in the head
    bucket, the common case), kept up to date as the head moves, so an
    in-order transaction costs O(1); a late one (bucket before the head)
    sums its buckets directly.

    Returns the position in ``order`` where it stopped: ``len(order)`` when
    done, earlier when the entity map is full (the caller makes room and
    calls again from there).
    """
    length = cnt.shape[1]
    n: int = order.shape[0]
    for j in range(start, n):
        i = order[j]
        if not present[i]:
            out_cnt[i] = np.nan
            out_sum[i] = np.nan
            continue
        s = find_or_insert(tab_keys, tab_slot, slot_keys, meta, keys[i])
        if s < 0:
            return j
        t = ts[i]
        b = math.floor(t / bucket_s)
        h = head[s]
        if h == NO_HEAD or b - h >= length:
            cnt[s, :] = 0
            sm[s, :] = 0.0
            wcnt[s] = 0
            wsum[s] = 0.0
            head[s] = b
        elif b > h:
            # buckets leaving the window, before the ring slots are reused
            hi = b - nwin
            if hi > h:
                hi = h
            for y in range(h - nwin + 1, hi + 1):
                wcnt[s] -= cnt[s, y % length]
                wsum[s] -= sm[s, y % length]
            if wcnt[s] == 0:
                wsum[s] = 0.0  # no drift from repeated subtraction
            idx = (h + 1) % length
            for _ in range(b - h):
                cnt[s, idx] = 0
                sm[s, idx] = 0.0
                idx += 1
                if idx == length:
                    idx = 0
            head[s] = b
        h = head[s]
        if h - b < length:
            cnt[s, b % length] += 1
            sm[s, b % length] += amt[i]
            if b > h - nwin:
                wcnt[s] += 1
                wsum[s] += amt[i]
        else:
            counters[0] += 1
        if t > last[s]:
            last[s] = t
        if b == h:
            out_cnt[i] = wcnt[s]
            out_sum[i] = wsum[s]
            continue
        lo = b - nwin + 1
        if lo < h - length + 1:
            lo = h - length + 1
        c = 0
        a = 0.0
        for x in range(lo, b + 1):
            c += cnt[s, x % length]
            a += sm[s, x % length]
        out_cnt[i] = c
        out_sum[i] = a
    return n
