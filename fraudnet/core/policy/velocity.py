"""Velocity windows for policy rules: count and sum of amount per entity over a window.

Built with the feature package's machinery: the same open-addressing hash
map (:mod:`fraudnet.core.features.hashmap`) in front of dense per-entity
slots, the same ring of time buckets with a moving head as the terminal
windows of :mod:`fraudnet.core.features.kernels`, one Numba kernel call per
batch (:func:`~fraudnet.core.features.velocity_kernel.fold_velocity_many`,
which lives beside the feature kernels because core confines Numba to the
features and scoring packages; pure twin ``fold_velocity_many.py_func``,
parity-tested) and the same bounded growth/eviction policy.

Theory of operation. A :class:`VelocityKey` ``(entity, window_s, bucket_s)``
owns one :class:`VelocityState`; every velocity of a bundle with that key
reads it (count and sum are kept together), so a batch is folded once per
key however many rules use it, and a live policy and a shadow candidate
share the state instead of counting a transaction twice.

Per entity: a ring of ``L = n + 2`` buckets (``n = window_s / bucket_s``)
indexed by absolute bucket number mod ``L``, and a head (newest bucket).
A transaction at ``t`` (bucket ``b = floor(t / bucket_s)``) is added to its
bucket, then the window value is the sum of buckets ``b - n + 1 .. b``
(including the transaction, nothing later). Error bound (the convention of
the features' terminal windows): the window ``(t - window, t]`` is replaced
by whole buckets that all lie inside it, so the value never counts an event
outside the window and misses at most the events of bucket ``b - n`` that
fall inside the window (at most one bucket's worth; exact when ``t - window``
is on a bucket boundary). A transaction more
than ``L`` buckets behind its entity's head is not added (counted in
``late_dropped``) and sees only the buckets still in the ring.

Rules:

1. A batch is folded in event-time order (stable sort), like the features.
2. Absent optional entities (no merchant / device) are not folded; their
   value is NaN, so conditions over them are false.
3. When full at ``max_entities``: entities idle for longer than the window
   are evicted first (lossless: their window is empty), then the least
   recently seen down to 7/8 (counted in ``evicted_active``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fraudnet.errors import InputError, PolicyError

from ..features.container import pack, unpack
from ..features.hashmap import new_table, rebuild
from ..features.velocity_kernel import NO_HEAD, fold_velocity_many
from .inputs import PolicyInput

__all__ = [
    "ENTITIES",
    "MAX_BUCKETS",
    "VelocityKey",
    "VelocitySpec",
    "VelocityState",
    "VelocityStore",
    "fold_velocity_many",
]

ENTITIES: Final = ("card", "terminal", "merchant", "device")
MEASURES: Final = ("count", "sum")
MAX_BUCKETS: Final = 1440
_INITIAL: Final = 1024
_MAGIC: Final = b"FNPV"
_STATE_ARRAYS: Final = ("slot_keys", "head", "cnt", "sum", "last", "wcnt", "wsum")
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, order=True)
class VelocityKey:
    """Identity of a velocity state: entity kind, window and bucket width (seconds)."""

    entity: str
    window_s: float
    bucket_s: float

    @property
    def buckets(self) -> int:
        return round(self.window_s / self.bucket_s)


@dataclass(frozen=True, slots=True)
class VelocitySpec:
    """A velocity declared in a bundle: ``measure`` (count|sum) of ``key``."""

    id: str
    measure: str
    key: VelocityKey

    def __post_init__(self) -> None:
        k = self.key
        if k.entity not in ENTITIES:
            raise PolicyError(f"velocity {self.id!r}: entity must be one of {', '.join(ENTITIES)}")
        if self.measure not in MEASURES:
            raise PolicyError(f"velocity {self.id!r}: measure must be count or sum")
        if not (1.0 <= k.bucket_s <= k.window_s <= 90 * 86400.0):
            raise PolicyError(f"velocity {self.id!r}: need 1 s <= resolution <= window <= 90 days")
        n = k.window_s / k.bucket_s
        if abs(n - round(n)) > 1e-9 or not 1 <= round(n) <= MAX_BUCKETS:
            raise PolicyError(
                f"velocity {self.id!r}: resolution must divide the window into 1-{MAX_BUCKETS} "
                "buckets"
            )


class VelocityState:
    """Window state of one :class:`VelocityKey` (see module docstring)."""

    def __init__(self, key: VelocityKey, max_entities: int = 1 << 20) -> None:
        self.key = key
        self.max_entities = max_entities
        self.length = key.buckets + 2
        self.meta = np.zeros(1, dtype=np.int64)
        self.counters = np.zeros(1, dtype=np.int64)
        self.evicted_idle = 0
        self.evicted_active = 0
        self._alloc(min(_INITIAL, max_entities))

    slot_keys: npt.NDArray[np.uint64]
    head: npt.NDArray[np.int64]
    cnt: npt.NDArray[np.int32]
    sum: npt.NDArray[np.float64]
    last: npt.NDArray[np.float64]
    wcnt: npt.NDArray[np.int64]
    wsum: npt.NDArray[np.float64]
    tab_keys: npt.NDArray[np.uint64]
    tab_slot: npt.NDArray[np.int32]

    def _alloc(self, cap: int) -> None:
        used = int(self.meta[0])
        L = self.length

        def grow(old: npt.NDArray[np.generic] | None, new: npt.NDArray[np.generic]) -> None:
            if old is not None:
                new[:used] = old[:used]

        new_keys = np.zeros(cap, dtype=np.uint64)
        new_head = np.full(cap, NO_HEAD, dtype=np.int64)
        new_cnt = np.zeros((cap, L), dtype=np.int32)
        new_sum = np.zeros((cap, L), dtype=np.float64)
        new_last = np.full(cap, -np.inf, dtype=np.float64)
        new_wcnt = np.zeros(cap, dtype=np.int64)
        new_wsum = np.zeros(cap, dtype=np.float64)
        if used:
            grow(self.slot_keys, new_keys)
            grow(self.head, new_head)
            grow(self.cnt, new_cnt)
            grow(self.sum, new_sum)
            grow(self.last, new_last)
            grow(self.wcnt, new_wcnt)
            grow(self.wsum, new_wsum)
        self.slot_keys, self.head, self.cnt, self.sum, self.last = (
            new_keys, new_head, new_cnt, new_sum, new_last,
        )  # fmt: skip
        self.wcnt, self.wsum = new_wcnt, new_wsum
        self.tab_keys, self.tab_slot = new_table(cap)
        rebuild(self.tab_keys, self.tab_slot, self.slot_keys, used)

    @property
    def capacity(self) -> int:
        return int(self.slot_keys.shape[0])

    @property
    def entities(self) -> int:
        return int(self.meta[0])

    @property
    def late_dropped(self) -> int:
        return int(self.counters[0])

    def memory_bytes(self) -> int:
        arrays = (self.slot_keys, self.head, self.cnt, self.sum, self.last, self.wcnt,
                  self.wsum, self.tab_keys, self.tab_slot)  # fmt: skip
        return int(sum(a.nbytes for a in arrays))

    def _make_room(self, now: float) -> None:
        cap = self.capacity
        if cap < self.max_entities:
            self._alloc(min(2 * cap, self.max_entities))
            return
        used = int(self.meta[0])
        last = self.last[:used]
        evict = last < now - self.key.window_s - self.key.bucket_s
        idle = int(evict.sum())
        target = used - cap * 7 // 8
        if idle < target:
            oldest = np.argpartition(last, target - 1)[:target]
            evict[oldest] = True
        keep = np.flatnonzero(~evict)
        m = int(keep.shape[0])
        for arr, fill in ((self.slot_keys, 0), (self.head, NO_HEAD), (self.cnt, 0),
                          (self.sum, 0.0), (self.last, -np.inf), (self.wcnt, 0),
                          (self.wsum, 0.0)):  # fmt: skip
            arr[:m] = arr[keep]
            arr[m:used] = fill
        self.meta[0] = m
        rebuild(self.tab_keys, self.tab_slot, self.slot_keys, m)
        self.evicted_idle += min(idle, used - m)
        self.evicted_active += max(0, used - m - idle)

    def fold_many(
        self,
        keys: npt.NDArray[np.uint64],
        present: npt.NDArray[np.bool_],
        ts_s: F64,
        amount: F64,
        order: npt.NDArray[np.int64] | None = None,
    ) -> tuple[F64, F64]:
        """Fold a batch; return (count, sum) of each transaction's window (NaN when absent).

        ``order`` is the batch's stable event-time order when the caller has it.
        """
        n = int(ts_s.shape[0])
        out_cnt = np.empty(n, dtype=np.float64)
        out_sum = np.empty(n, dtype=np.float64)
        if n == 0:
            return out_cnt, out_sum
        ts = np.ascontiguousarray(ts_s, dtype=np.float64)
        amt = np.ascontiguousarray(amount, dtype=np.float64)
        if not (np.isfinite(ts).all() and np.isfinite(amt).all()):
            raise PolicyError("velocity batch: non-finite timestamp or amount")
        if order is None:
            order = np.argsort(ts, kind="stable").astype(np.int64)
        k = np.ascontiguousarray(keys, dtype=np.uint64)
        p = np.ascontiguousarray(present, dtype=np.bool_)
        start = 0
        now = float(ts.max())
        while True:
            done: int = fold_velocity_many(
                self.tab_keys, self.tab_slot, self.slot_keys, self.meta, self.head, self.cnt,
                self.sum, self.last, self.wcnt, self.wsum, k, p, ts, amt, order, start,
                self.key.buckets,
                self.key.bucket_s, out_cnt, out_sum, self.counters,
            )  # fmt: skip
            if done >= n:
                return out_cnt, out_sum
            self._make_room(now)
            start = done


def _entity_columns(
    inp: PolicyInput, entity: str
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    n = len(inp)
    if entity == "card":
        return inp.card_key, np.ones(n, dtype=np.bool_)
    if entity == "terminal":
        return inp.terminal_key, np.ones(n, dtype=np.bool_)
    if entity == "merchant":
        return inp.merchant_key, inp.has_merchant
    return inp.device_key, inp.has_device


class VelocityStore:
    """All velocity states of a node, shared by the live and shadow policies.

    Not thread-safe: the node's decide path (one thread) calls :meth:`fold_many`.
    """

    def __init__(self, max_entities: int = 1 << 20) -> None:
        self.max_entities = max_entities
        self.states: dict[VelocityKey, VelocityState] = {}

    def fold_many(self, specs: Mapping[str, VelocitySpec], inp: PolicyInput) -> dict[str, F64]:
        """Fold ``inp`` once into every state the specs need; values by spec id."""
        per_key: dict[VelocityKey, tuple[F64, F64]] = {}
        order = np.argsort(inp.ts_s, kind="stable").astype(np.int64) if specs else None
        for spec in sorted(specs.values(), key=lambda s: s.key):
            if spec.key not in per_key:
                st = self.states.get(spec.key)
                if st is None:
                    st = self.states[spec.key] = VelocityState(spec.key, self.max_entities)
                keys, present = _entity_columns(inp, spec.key.entity)
                per_key[spec.key] = st.fold_many(keys, present, inp.ts_s, inp.amount, order)
        return {sid: per_key[s.key][0 if s.measure == "count" else 1] for sid, s in specs.items()}

    def retain(self, keys: set[VelocityKey]) -> list[VelocityKey]:
        """Drop states no policy uses any more; returns the dropped keys."""
        dropped = [k for k in self.states if k not in keys]
        for k in dropped:
            del self.states[k]
        return dropped

    def snapshot(self) -> bytes:
        """All velocity states as bytes (numpy arrays + JSON header, no pickle)."""
        meta: dict[str, Any] = {"version": 1, "max_entities": self.max_entities, "states": []}
        arrays: dict[str, npt.NDArray[Any]] = {}
        for k, (key, st) in enumerate(sorted(self.states.items())):
            m = st.entities
            meta["states"].append({
                "entity": key.entity, "window_s": key.window_s, "bucket_s": key.bucket_s,
                "entities": m, "late_dropped": st.late_dropped,
                "evicted_idle": st.evicted_idle, "evicted_active": st.evicted_active,
            })  # fmt: skip
            for name in _STATE_ARRAYS:
                arrays[f"{k}.{name}"] = getattr(st, name)[:m]
        return pack(_MAGIC, meta, arrays)

    @classmethod
    def restore(cls, data: bytes) -> VelocityStore:
        """Rebuild a store from :meth:`snapshot`; :class:`InputError` when damaged."""
        meta, arrays = unpack(data, _MAGIC, "velocity snapshot")
        try:
            store = cls(int(meta["max_entities"]))
            for k, sm in enumerate(meta["states"]):
                key = VelocityKey(str(sm["entity"]), float(sm["window_s"]), float(sm["bucket_s"]))
                VelocitySpec("snapshot", "count", key)  # validates the geometry
                st = VelocityState(key, store.max_entities)
                m = int(sm["entities"])
                if not 0 <= m <= store.max_entities:
                    raise ValueError(f"state {k}: {m} entities out of bounds")
                cap = st.capacity
                while cap < m:
                    cap *= 2
                st._alloc(min(cap, store.max_entities))
                for name in _STATE_ARRAYS:
                    arr = arrays[f"{k}.{name}"]
                    dst = getattr(st, name)
                    if arr.dtype != dst.dtype or arr.shape != (m, *dst.shape[1:]):
                        raise ValueError(f"state {k}: array {name!r} mis-shaped")
                    dst[:m] = arr
                if np.unique(st.slot_keys[:m]).shape[0] != m:
                    raise ValueError(f"state {k}: duplicate keys")
                st.meta[0] = m
                rebuild(st.tab_keys, st.tab_slot, st.slot_keys, m)
                st.counters[0] = int(sm["late_dropped"])
                st.evicted_idle = int(sm["evicted_idle"])
                st.evicted_active = int(sm["evicted_active"])
                store.states[key] = st
        except (KeyError, TypeError, ValueError, PolicyError) as e:
            raise InputError(f"velocity snapshot: {e}") from None
        return store

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            f"{k.entity}/{k.window_s:g}s/{k.bucket_s:g}s": {
                "entities": st.entities,
                "memory_bytes": st.memory_bytes(),
                "late_dropped": st.late_dropped,
                "evicted_idle": st.evicted_idle,
                "evicted_active": st.evicted_active,
            }
            for k, st in self.states.items()
        }
