"""Ring helpers of the feature kernels: bucket-ring head moves, card overflow days,
terminal fingerprints (see :mod:`.kernels` for the theory of operation)."""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["NO_DAY", "OVF_DAYS", "advance", "fingerprint", "overflow_add"]

#: overflow day buckets per card (30-day window + the current day + 1)
OVF_DAYS = 32
NO_DAY = -1
_DAY = 86400.0
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@numba.njit(cache=True, nogil=True)
def fingerprint(key: np.uint64) -> np.uint32:  # pragma: no cover - numba
    """32-bit fold of a 64-bit terminal key (identity for keys below 2^32)."""
    return np.uint32((key ^ (key >> _S32)) & _M32)


@numba.njit(cache=True, nogil=True)
def advance(
    head: int, b: int, ring_a: npt.NDArray[np.int32], ring_b: npt.NDArray[np.int32], row: int
) -> None:  # pragma: no cover - numba
    """Clear the slots a head move from ``head`` to ``b`` passes over in one ring pair."""
    length = ring_a.shape[1]
    if b - head >= length:
        ring_a[row, :] = 0
        ring_b[row, :] = 0
    else:
        idx = (head + 1) % length
        for _ in range(b - head):
            ring_a[row, idx] = 0
            ring_b[row, idx] = 0
            idx += 1
            if idx == length:
                idx = 0


@numba.njit(cache=True, nogil=True)
def overflow_add(
    c_ovf_head: npt.NDArray[np.int32],
    c_ovf_cnt: npt.NDArray[np.uint16],
    c_ovf_f: npt.NDArray[np.float32],
    cs: int,
    s: float,
    x: float,
) -> bool:  # pragma: no cover - numba
    """Add an event pushed out of the ring to its overflow day; False if too old."""
    d = math.floor(s / _DAY)
    head = c_ovf_head[cs]
    if d > head:
        if head == NO_DAY or d - head >= OVF_DAYS:
            for k in range(OVF_DAYS):
                c_ovf_cnt[cs, k] = 0
                c_ovf_f[cs, k, 0] = 0.0
                c_ovf_f[cs, k, 1] = 0.0
                c_ovf_f[cs, k, 2] = 0.0
        else:
            for dd in range(head + 1, d + 1):
                k = dd % OVF_DAYS
                c_ovf_cnt[cs, k] = 0
                c_ovf_f[cs, k, 0] = 0.0
                c_ovf_f[cs, k, 1] = 0.0
                c_ovf_f[cs, k, 2] = 0.0
        c_ovf_head[cs] = d
        head = d
    if d <= head - OVF_DAYS:
        return False
    k = d % OVF_DAYS
    if c_ovf_cnt[cs, k] < 65535:  # saturates (65,535 overflowed events in one day)
        c_ovf_cnt[cs, k] += 1
    c_ovf_f[cs, k, 0] += x
    c_ovf_f[cs, k, 1] += x * x
    c_ovf_f[cs, k, 2] = max(c_ovf_f[cs, k, 2], x)
    return True
