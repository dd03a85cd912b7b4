"""Open-addressing hash map ``uint64 key -> dense slot`` usable inside Numba kernels.

Theory of operation: the table has a power-of-two size, at least twice the
entity bound, so the load factor never exceeds 1/2. ``tab_slot[h] == -1``
marks an empty bucket (every 64-bit key is valid, including 0). Collisions
use linear probing. There is no deletion: eviction rebuilds the whole table
from the surviving dense slots (:func:`rebuild`), which keeps probing
simple and amortises to O(1) per insertion.

Keys are keyed pseudonyms (HMAC outputs), so an attacker cannot choose keys
that collide; the mixing below still spreads small integer keys (test data).
Every constant is an explicit ``uint64``: in Numba, mixing ``uint64`` with a
signed integer silently promotes to ``float64``.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["find", "find_or_insert", "new_table", "rebuild", "table_size"]

_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S15 = np.uint64(15)
_GOLD = np.uint64(0x9E3779B1)


def table_size(capacity: int) -> int:
    """Smallest power of two >= 2 * capacity."""
    size = 1
    while size < 2 * capacity:
        size *= 2
    return size


def new_table(capacity: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int32]]:
    size = table_size(capacity)
    return np.zeros(size, dtype=np.uint64), np.full(size, -1, dtype=np.int32)


@numba.njit(cache=True, nogil=True)
def home(key: np.uint64, mask: int) -> int:  # pragma: no cover - numba
    lo = key & _M32
    hi = key >> _S32
    h = ((lo ^ hi) * _GOLD) & _M32
    h = h ^ (h >> _S15)
    return int(h) & mask


@numba.njit(cache=True, nogil=True)
def find(tab_keys: npt.NDArray[np.uint64], tab_slot: npt.NDArray[np.int32], key: np.uint64) -> int:
    """Dense slot of ``key``, or -1."""
    mask = tab_keys.shape[0] - 1
    h = home(key, mask)
    while True:
        s = tab_slot[h]
        if s < 0:
            return -1
        if tab_keys[h] == key:
            return int(s)
        h = (h + 1) & mask


@numba.njit(cache=True, nogil=True)
def find_or_insert(
    tab_keys: npt.NDArray[np.uint64],
    tab_slot: npt.NDArray[np.int32],
    slot_keys: npt.NDArray[np.uint64],
    meta: npt.NDArray[np.int64],
    key: np.uint64,
) -> int:
    """Dense slot of ``key``, inserting it as slot ``meta[0]`` when absent.

    ``meta[0]`` is the number of used slots; returns -1 when the map is full
    (``meta[0] == slot_keys.shape[0]``): the caller evicts and retries.
    """
    mask = tab_keys.shape[0] - 1
    h = home(key, mask)
    while True:
        s = tab_slot[h]
        if s < 0:
            n = meta[0]
            if n >= slot_keys.shape[0]:
                return -1
            tab_keys[h] = key
            tab_slot[h] = np.int32(n)
            slot_keys[n] = key
            meta[0] = n + 1
            return int(n)
        if tab_keys[h] == key:
            return int(s)
        h = (h + 1) & mask


@numba.njit(cache=True, nogil=True)
def rebuild(
    tab_keys: npt.NDArray[np.uint64],
    tab_slot: npt.NDArray[np.int32],
    slot_keys: npt.NDArray[np.uint64],
    used: int,
) -> None:
    """Refill the table from ``slot_keys[:used]`` (slot i holds key slot_keys[i])."""
    tab_slot[:] = -1
    mask = tab_keys.shape[0] - 1
    for i in range(used):
        key = slot_keys[i]
        h = home(key, mask)
        while tab_slot[h] >= 0:
            h = (h + 1) & mask
        tab_keys[h] = key
        tab_slot[h] = np.int32(i)
