"""Per-entity window state (numpy arrays) and its batch API.

:class:`FeatureState` owns two entity maps (cards, terminals), each a
dense array of slots behind an open-addressing hash map
(:mod:`~fraudnet.core.features.hashmap`). Arrays start small and double up
to the configured bound, so memory follows the number of entities seen.

Rules:

1. A batch is folded in event-time order (stable sort on ``ts``); the
   feature row of each transaction includes the transaction itself and
   nothing later.
2. When a map is full at its bound, entities idle for more than
   ``retention_days`` (event time, relative to the batch's newest
   transaction) are evicted; if that frees less than 1/8 of the map, the
   least recently seen entities are evicted down to 7/8. Evictions are
   counted (:attr:`FeatureState.counters`). An evicted entity starts afresh
   when it returns.
3. Labels in replays travel with the transaction (``label == 1``) and are
   read only ``delay`` later; in production they arrive as separate events
   through :meth:`FeatureState.apply_labels`.
4. :meth:`snapshot` / :meth:`restore` round-trip the complete state as
   bytes (numpy arrays + JSON header, no pickle).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fraudnet.errors import InputError

from . import kernels as K
from .container import pack, unpack
from .hashmap import new_table, rebuild
from .schema import N_FEATURES, SCHEMA_VERSION, FeatureConfig

__all__ = ["CARD_ARRAYS", "TERM_ARRAYS", "FeatureState"]

_MAGIC: Final = b"FNFS"
_INITIAL: Final = 1024
F64 = npt.NDArray[np.float64]

# per-entity arrays: name -> (dtype, row shape from config, fill value)
CARD_ARRAYS: Final = ("c_keys", "c_ring_ts", "c_ring_amt", "c_ring_fp", "c_ovf_cnt", "c_ovf_f",
                       "c_ovf_head", "c_pos", "c_n", "c_last", "c_unordered")  # fmt: skip
TERM_ARRAYS: Final = ("t_keys", "t_head", "t_lhead", "t_lab_cnt", "t_lab_fraud", "t_rt_cnt",
                       "t_rt_dist", "t_last")  # fmt: skip
#: largest event time the card ring can hold (uint32 seconds)
MAX_TS: Final = float(2**32 - 1)
_COUNTER_NAMES: Final = (
    "terminal_late_dropped", "card_ring_saturated", "label_unknown_terminal", "label_too_old",
)  # fmt: skip


class FeatureState:
    """Card and terminal window state for one node (see module docstring)."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        c = self.config
        params = [c.delay_days * 86400.0, c.bucket_s, c.tz_offset_s, c.label_bucket_s]
        self.params = np.array(params, dtype=np.float64)
        self.kcounters = np.zeros(K.N_COUNTERS, dtype=np.int64)
        self.evicted = {"card": 0, "terminal": 0}
        self.a: dict[str, npt.NDArray[Any]] = {}
        self._args: tuple[Any, ...] | None = None
        self.c_meta = np.zeros(1, dtype=np.int64)
        self.t_meta = np.zeros(1, dtype=np.int64)
        self._alloc("card", min(_INITIAL, self.config.max_cards))
        self._alloc("terminal", min(_INITIAL, self.config.max_terminals))

    # ---------------------------------------------------------------- layout
    def row_spec(self, name: str) -> tuple[Any, tuple[int, ...], Any]:
        c = self.config
        spec: dict[str, tuple[Any, tuple[int, ...], Any]] = {
            "c_keys": (np.uint64, (), 0),
            "c_ring_ts": (np.uint32, (c.card_ring,), 0),
            "c_ring_amt": (np.float32, (c.card_ring,), 0.0),
            "c_ring_fp": (np.uint32, (c.card_terminals,), 0),
            "c_ovf_cnt": (np.uint16, (K.OVF_DAYS,), 0),
            "c_ovf_f": (np.float32, (K.OVF_DAYS, 3), 0.0),
            "c_ovf_head": (np.int32, (), K.NO_DAY),
            "c_pos": (np.int32, (), 0),
            "c_n": (np.int32, (), 0),
            "c_last": (np.float64, (), -np.inf),
            "c_unordered": (np.uint8, (), 0),
            "t_keys": (np.uint64, (), 0),
            "t_head": (np.int64, (), K.NO_HEAD),
            "t_lhead": (np.int64, (), K.NO_HEAD),
            "t_lab_cnt": (np.int32, (c.label_buckets,), 0),
            "t_lab_fraud": (np.int32, (c.label_buckets,), 0),
            "t_rt_cnt": (np.int32, (c.rt_buckets,), 0),
            "t_rt_dist": (np.int32, (c.rt_buckets,), 0),
            "t_last": (np.float64, (), -np.inf),
        }
        return spec[name]

    def _alloc(self, kind: str, capacity: int) -> None:
        self._args = None
        names = CARD_ARRAYS if kind == "card" else TERM_ARRAYS
        used = int((self.c_meta if kind == "card" else self.t_meta)[0])
        for name in names:
            dtype, row, fill = self.row_spec(name)
            new = np.full((capacity, *row), fill, dtype=dtype)
            old = self.a.get(name)
            if old is not None:
                new[:used] = old[:used]
            self.a[name] = new
        keys, slots = new_table(capacity)
        p = "c" if kind == "card" else "t"
        self.a[f"{p}_tab_keys"], self.a[f"{p}_tab_slot"] = keys, slots
        rebuild(keys, slots, self.a[f"{p}_keys"], used)

    def capacity(self, kind: str) -> int:
        return int(self.a["c_keys" if kind == "card" else "t_keys"].shape[0])

    @property
    def n_cards(self) -> int:
        return int(self.c_meta[0])

    @property
    def n_terminals(self) -> int:
        return int(self.t_meta[0])

    @property
    def counters(self) -> dict[str, int]:
        """Monotonic counters (for metrics): kernel events and evictions."""
        out = {n: int(v) for n, v in zip(_COUNTER_NAMES, self.kcounters, strict=True)}
        out["evicted_cards"] = self.evicted["card"]
        out["evicted_terminals"] = self.evicted["terminal"]
        return out

    def memory_bytes(self) -> int:
        return int(sum(a.nbytes for a in self.a.values()))

    # ------------------------------------------------------------- eviction
    def _make_room(self, kind: str, now: float) -> None:
        bound = self.config.max_cards if kind == "card" else self.config.max_terminals
        cap = self.capacity(kind)
        if cap < bound:
            self._alloc(kind, min(2 * cap, bound))
            return
        meta = self.c_meta if kind == "card" else self.t_meta
        used = int(meta[0])
        p = "c" if kind == "card" else "t"
        last = self.a[f"{p}_last"][:used]
        evict = last < now - self.config.retention_days * 86400.0
        target = used - cap * 7 // 8
        if int(evict.sum()) < target:
            oldest = np.argpartition(last, target - 1)[:target]
            evict[oldest] = True
        keep = np.flatnonzero(~evict)
        m = keep.shape[0]
        for name in CARD_ARRAYS if kind == "card" else TERM_ARRAYS:
            arr = self.a[name]
            arr[:m] = arr[keep]
            _, _, fill = self.row_spec(name)
            arr[m:used] = fill
        meta[0] = m
        rebuild(self.a[f"{p}_tab_keys"], self.a[f"{p}_tab_slot"], self.a[f"{p}_keys"], m)
        self.evicted[kind] += used - m

    # ----------------------------------------------------------------- batch
    def ensure_room(self, now: float) -> None:
        """Grow or evict (rule 2) any entity map that is full; ``now`` is event time."""
        if self.n_cards >= self.capacity("card"):
            self._make_room("card", now)
        if self.n_terminals >= self.capacity("terminal"):
            self._make_room("terminal", now)

    def fold_state_args(self) -> tuple[Any, ...]:
        """The state arguments of :func:`~.kernels.fold_many`, in order (up to
        ``counters``). Cached; the cache is dropped whenever arrays are replaced."""
        if self._args is not None:
            return self._args
        a = self.a
        self._args = (
            a["c_tab_keys"], a["c_tab_slot"], a["c_keys"], self.c_meta, a["c_ring_ts"],
            a["c_ring_amt"], a["c_ring_fp"], a["c_ovf_cnt"], a["c_ovf_f"], a["c_ovf_head"],
            a["c_pos"], a["c_n"], a["c_last"], a["c_unordered"],
            a["t_tab_keys"], a["t_tab_slot"], a["t_keys"], self.t_meta,
            a["t_head"], a["t_lhead"], a["t_lab_cnt"], a["t_lab_fraud"],
            a["t_rt_cnt"], a["t_rt_dist"], a["t_last"], self.params, self.kcounters,
        )  # fmt: skip
        return self._args

    def fold_arrays(
        self,
        card_key: npt.NDArray[np.uint64],
        terminal_key: npt.NDArray[np.uint64],
        ts_s: F64,
        amount: F64,
        label: npt.NDArray[np.int8] | None = None,
    ) -> F64:
        """Fold a batch into the state; return its feature matrix (n x schema width).

        Rows are in the batch's order; folding happens in event-time order.
        """
        n = ts_s.shape[0]
        if not (card_key.shape[0] == terminal_key.shape[0] == amount.shape[0] == n):
            raise InputError("feature batch: columns differ in length")
        ts = np.ascontiguousarray(ts_s, dtype=np.float64)
        amt = np.ascontiguousarray(amount, dtype=np.float64)
        if n and not (np.isfinite(ts).all() and np.isfinite(amt).all()):
            raise InputError("feature batch: non-finite timestamp or amount")
        if n and (ts.min() < 0.0 or ts.max() > MAX_TS):
            raise InputError("feature batch: timestamp outside 1970..2106 (uint32 seconds)")
        lab = (
            np.full(n, -1, dtype=np.int8)
            if label is None
            else np.ascontiguousarray(label, dtype=np.int8)
        )
        ck = np.ascontiguousarray(card_key, dtype=np.uint64)
        tk = np.ascontiguousarray(terminal_key, dtype=np.uint64)
        order = np.argsort(ts, kind="stable").astype(np.int64)
        out = np.empty((n, N_FEATURES), dtype=np.float64)
        start = 0
        now = float(ts.max()) if n else 0.0
        while start < n:
            args = (*self.fold_state_args(), ck, tk, ts, amt, lab, order, start, out)
            done = K.fold_many(*args)
            if done >= n:
                break
            self.ensure_room(now)
            start = done
        return out

    def apply_labels(
        self,
        terminal_key: npt.NDArray[np.uint64],
        tx_ts_s: F64,
        label: npt.NDArray[np.int8],
    ) -> int:
        """Apply label events: ``label`` 1 = fraud confirmed (chargeback, confirmed
        fraud), 0 = retraction of an earlier fraud label (false positive).

        ``tx_ts_s`` is the *transaction's* event time. The caller de-duplicates
        label events per transaction. Returns how many were applied; skipped
        ones are counted in :attr:`counters`.
        """
        n = terminal_key.shape[0]
        if not (tx_ts_s.shape[0] == label.shape[0] == n):
            raise InputError("label batch: columns differ in length")
        ts = np.ascontiguousarray(tx_ts_s, dtype=np.float64)
        if n and not np.isfinite(ts).all():
            raise InputError("label batch: non-finite transaction time")
        lab = np.asarray(label)
        if n and not np.isin(lab, (0, 1)).all():
            raise InputError("label batch: labels must be 0 or 1")
        delta = np.where(lab == 1, 1, -1).astype(np.int8)
        a = self.a
        keys = np.ascontiguousarray(terminal_key, dtype=np.uint64)
        applied = K.apply_labels_many(
            a["t_tab_keys"], a["t_tab_slot"], a["t_lhead"], a["t_lab_fraud"], self.params,
            self.kcounters, keys, ts, delta,
        )  # fmt: skip
        return int(applied)

    # -------------------------------------------------------------- snapshot
    def snapshot_shard(self, shard: int, n_shards: int) -> bytes:
        """The entities with ``key mod n_shards == shard`` (see :mod:`.shards`)."""
        from .shards import snapshot_shard

        return snapshot_shard(self, shard, n_shards)

    def restore_shard(self, data: bytes) -> tuple[int, int]:
        """Merge a :meth:`snapshot_shard` blob; returns (cards, terminals) restored."""
        from .shards import restore_shard

        return restore_shard(self, data)

    def snapshot(self) -> bytes:
        """All state as bytes (only used slots are written)."""
        nc, nt = self.n_cards, self.n_terminals
        arrays = {n: self.a[n][:nc] for n in CARD_ARRAYS}
        arrays.update({n: self.a[n][:nt] for n in TERM_ARRAYS})
        arrays["counters"] = self.kcounters
        meta = {
            "schema_version": SCHEMA_VERSION,
            "layout": K.STATE_LAYOUT,
            "config": self.config.to_json(),
            "n_cards": nc,
            "n_terminals": nt,
            "evicted": dict(self.evicted),
        }
        return pack(_MAGIC, meta, arrays)

    @classmethod
    def restore(cls, data: bytes) -> FeatureState:
        """Rebuild a state from :meth:`snapshot`; :class:`InputError` if damaged."""
        meta, arrays = unpack(data, _MAGIC, "feature state snapshot")
        try:
            config = FeatureConfig.from_json(meta["config"])
            nc, nt = int(meta["n_cards"]), int(meta["n_terminals"])
            evicted = {k: int(meta["evicted"][k]) for k in ("card", "terminal")}
        except Exception as e:
            raise InputError(f"feature state snapshot: bad header ({e})") from None
        if meta.get("schema_version") != SCHEMA_VERSION or meta.get("layout") != K.STATE_LAYOUT:
            raise InputError(
                f"feature state snapshot: schema {meta.get('schema_version')!r} layout "
                f"{meta.get('layout')!r}, this node uses {SCHEMA_VERSION} / {K.STATE_LAYOUT}"
            )
        if not (0 <= nc <= config.max_cards and 0 <= nt <= config.max_terminals):
            raise InputError("feature state snapshot: entity counts exceed the config bounds")
        st = cls(config)
        for kind, count in (("card", nc), ("terminal", nt)):
            cap = st.capacity(kind)
            while cap < count:
                cap *= 2
            bound = config.max_cards if kind == "card" else config.max_terminals
            cap = min(cap, bound)
            names = CARD_ARRAYS if kind == "card" else TERM_ARRAYS
            for name in names:
                dtype, row, fill = st.row_spec(name)
                arr = arrays.get(name)
                if arr is None or arr.dtype != np.dtype(dtype) or arr.shape != (count, *row):
                    raise InputError(
                        f"feature state snapshot: array {name!r} missing or mis-shaped"
                    )
                full = np.full((cap, *row), fill, dtype=dtype)
                full[:count] = arr
                st.a[name] = full
            keys = st.a["c_keys" if kind == "card" else "t_keys"][:count]
            if np.unique(keys).shape[0] != count:
                raise InputError(f"feature state snapshot: duplicate {kind} keys")
            (st.c_meta if kind == "card" else st.t_meta)[0] = count
            p = "c" if kind == "card" else "t"
            st.a[f"{p}_tab_keys"], st.a[f"{p}_tab_slot"] = new_table(cap)
            rebuild(st.a[f"{p}_tab_keys"], st.a[f"{p}_tab_slot"], st.a[f"{p}_keys"], count)
        ctr = arrays.get("counters")
        if ctr is None or ctr.shape != (K.N_COUNTERS,) or ctr.dtype != np.int64:
            raise InputError("feature state snapshot: counters missing or mis-shaped")
        st.kcounters[:] = ctr
        st.evicted = evicted
        st._args = None
        c_n = st.a["c_n"][:nc]
        c_pos = st.a["c_pos"][:nc]
        if ((c_n < 0) | (c_n > config.card_ring) | (c_pos < 0) | (c_pos >= config.card_ring)).any():
            raise InputError("feature state snapshot: card ring positions out of range")
        return st
