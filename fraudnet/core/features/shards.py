"""Per-shard snapshots of the feature state, for coalesced durable writes.

The node keeps state durable by writing, every few seconds, one value per
*shard* of entities instead of one table write per card per transaction
(ADR 0100). An entity (card or terminal) belongs to shard ``key mod
n_shards``; keys are keyed pseudonyms, so shards are balanced.

* :func:`snapshot_shard` encodes the cards and terminals of one shard
  (``FNSS`` container: arrays + JSON header, no pickle). Shard 0 also
  carries the state's counters.
* :func:`restore_shard` merges such a blob into a state built with the
  same :class:`~.schema.FeatureConfig`: each entity is inserted, or
  overwritten if present. Restoring every shard of a snapshot set into an
  empty state gives the same features as the state that wrote them.

Any damage (bad magic, truncation, wrong dtypes or shapes, keys outside
the shard, ring positions out of range, another config) is an
:class:`~fraudnet.errors.InputError` and leaves the state unchanged (all
checks run before the first write). The one exception: if the state's
entity bound is reached in the middle of a merge, the entities merged so
far stay and an ``InputError`` is raised (restore into a state built with
the same bounds as the writer's to avoid this).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from fraudnet.errors import InputError

from . import kernels as K
from .container import pack, unpack
from .hashmap import find_or_insert
from .schema import SCHEMA_VERSION, FeatureConfig

if TYPE_CHECKING:
    from .state import FeatureState

__all__ = ["MAX_SHARDS", "restore_shard", "snapshot_shard"]

_MAGIC: Final = b"FNSS"
MAX_SHARDS: Final = 1 << 16
_WHAT: Final = "feature state shard"


def _members(keys: npt.NDArray[np.uint64], shard: int, n_shards: int) -> npt.NDArray[np.intp]:
    return np.flatnonzero(keys % np.uint64(n_shards) == np.uint64(shard))


def snapshot_shard(state: FeatureState, shard: int, n_shards: int) -> bytes:
    """Bytes of the entities of ``shard`` (``0 <= shard < n_shards <= 65536``)."""
    if not (1 <= n_shards <= MAX_SHARDS and 0 <= shard < n_shards):
        raise InputError(f"{_WHAT}: shard {shard} of {n_shards} out of range")
    from .state import CARD_ARRAYS, TERM_ARRAYS

    arrays: dict[str, npt.NDArray[Any]] = {}
    counts = {}
    for kind, names in (("card", CARD_ARRAYS), ("terminal", TERM_ARRAYS)):
        used = state.n_cards if kind == "card" else state.n_terminals
        keys = state.a[names[0]][:used]
        idx = _members(keys, shard, n_shards)
        counts[kind] = int(idx.shape[0])
        for name in names:
            arrays[name] = state.a[name][idx]
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "layout": K.STATE_LAYOUT,
        "config": state.config.to_json(), "shard": shard, "n_shards": n_shards,
        "n_cards": counts["card"], "n_terminals": counts["terminal"],
    }  # fmt: skip
    if shard == 0:
        arrays["counters"] = state.kcounters
        meta["evicted"] = dict(state.evicted)
    return pack(_MAGIC, meta, arrays)


def restore_shard(state: FeatureState, data: bytes) -> tuple[int, int]:
    """Merge a :func:`snapshot_shard` blob into ``state``; returns (cards, terminals)."""
    from .state import CARD_ARRAYS, TERM_ARRAYS

    meta, arrays = unpack(data, _MAGIC, _WHAT)
    try:
        config = FeatureConfig.from_json(meta["config"])
        shard, n_shards = int(meta["shard"]), int(meta["n_shards"])
        counts = {"card": int(meta["n_cards"]), "terminal": int(meta["n_terminals"])}
    except Exception as e:
        raise InputError(f"{_WHAT}: bad header ({e})") from None
    if meta.get("schema_version") != SCHEMA_VERSION or meta.get("layout") != K.STATE_LAYOUT:
        raise InputError(
            f"{_WHAT}: schema {meta.get('schema_version')!r} layout {meta.get('layout')!r}, "
            f"this node uses {SCHEMA_VERSION} / {K.STATE_LAYOUT}"
        )
    if config != state.config:
        raise InputError(f"{_WHAT}: written with another feature config")
    if not (1 <= n_shards <= MAX_SHARDS and 0 <= shard < n_shards):
        raise InputError(f"{_WHAT}: shard {shard} of {n_shards} out of range")
    # validate everything before touching the state
    for kind, names in (("card", CARD_ARRAYS), ("terminal", TERM_ARRAYS)):
        count = counts[kind]
        bound = config.max_cards if kind == "card" else config.max_terminals
        if not 0 <= count <= bound:
            raise InputError(f"{_WHAT}: {count} {kind}s exceed the bound {bound}")
        for name in names:
            dtype, row, _ = state.row_spec(name)
            arr = arrays.get(name)
            if arr is None or arr.dtype != np.dtype(dtype) or arr.shape != (count, *row):
                raise InputError(f"{_WHAT}: array {name!r} missing or mis-shaped")
        keys = arrays[names[0]]
        if np.unique(keys).shape[0] != count:
            raise InputError(f"{_WHAT}: duplicate {kind} keys")
        if _members(keys, shard, n_shards).shape[0] != count:
            raise InputError(f"{_WHAT}: {kind} keys outside shard {shard} of {n_shards}")
    ring = config.card_ring
    c_n, c_pos = arrays["c_n"], arrays["c_pos"]
    if ((c_n < 0) | (c_n > ring) | (c_pos < 0) | (c_pos >= ring)).any():
        raise InputError(f"{_WHAT}: card ring positions out of range")
    ctr = arrays.get("counters")
    if ctr is not None and (ctr.shape != (K.N_COUNTERS,) or ctr.dtype != np.int64):
        raise InputError(f"{_WHAT}: counters mis-shaped")
    for kind, names in (("card", CARD_ARRAYS), ("terminal", TERM_ARRAYS)):
        keys = arrays[names[0]]
        p = "c" if kind == "card" else "t"
        meta_arr = state.c_meta if kind == "card" else state.t_meta
        slots = np.empty(keys.shape[0], dtype=np.int64)
        for j in range(keys.shape[0]):
            while True:
                a = state.a
                s = find_or_insert(a[f"{p}_tab_keys"], a[f"{p}_tab_slot"], a[names[0]], meta_arr,
                                   keys[j])  # fmt: skip
                if s >= 0:
                    break
                if state.capacity(kind) >= (
                    state.config.max_cards if kind == "card" else state.config.max_terminals
                ):
                    raise InputError(f"{_WHAT}: no room for its {kind}s (entity bound reached)")
                state.ensure_room(0.0)  # grows (the map is below its bound)
            slots[j] = s
        for name in names[1:]:
            state.a[name][slots] = arrays[name]
    if ctr is not None:
        state.kcounters[:] = ctr
        ev = meta.get("evicted", {})
        if isinstance(ev, dict):
            state.evicted = {k: int(ev.get(k, 0)) for k in ("card", "terminal")}
    return counts["card"], counts["terminal"]
