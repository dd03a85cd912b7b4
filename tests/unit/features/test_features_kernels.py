"""Kernel twins, snapshots, labels, eviction and bad input of the feature state."""

from __future__ import annotations

import numpy as np
import pytest

from fraudnet.core.features import FEATURE_NAMES, FeatureConfig, FeatureState, hashmap, kernels
from fraudnet.errors import ConfigError, InputError

DAY = 86400.0
COL = {n: i for i, n in enumerate(FEATURE_NAMES)}


def stream(seed: int, n: int = 300, cards: int = 12, terms: int = 5):
    rng = np.random.default_rng(seed)
    ts = np.floor(1.52e9 + np.cumsum(rng.exponential(40 * DAY / n, n)))
    return (
        rng.integers(0, cards, n).astype(np.uint64),
        rng.integers(0, terms, n).astype(np.uint64),
        ts,
        np.round(rng.gamma(2.0, 40.0, n), 2),
        (rng.random(n) < 0.1).astype(np.int8),
    )


def twin(kernel):
    """The pure-Python twin (the kernel itself when NUMBA_DISABLE_JIT=1)."""
    return getattr(kernel, "py_func", kernel)


def _fold_with(kernel, st: FeatureState, ck, tk, ts, amt, lab):
    order = np.argsort(ts, kind="stable").astype(np.int64)
    out = np.empty((len(ts), len(FEATURE_NAMES)))
    done = kernel(*st.fold_state_args(), ck, tk, ts, amt, lab, order, 0, out)
    assert done == len(ts)
    return out


def test_fold_kernel_equals_its_python_twin() -> None:
    ck, tk, ts, amt, lab = stream(3)
    # late events: the second half re-sends older timestamps (unordered rings)
    ts2 = ts.copy()
    ts2[200:] -= 5 * DAY
    # a small ring so events overflow into the day buckets
    cfg = FeatureConfig(card_ring=8, card_terminals=4)
    a, b = FeatureState(cfg), FeatureState(cfg)
    for s in (slice(0, 150), slice(150, 300)):
        xa = _fold_with(kernels.fold_many, a, ck[s], tk[s], ts2[s], amt[s], lab[s])
        xb = _fold_with(twin(kernels.fold_many), b, ck[s], tk[s], ts2[s], amt[s], lab[s])
        np.testing.assert_array_equal(xa, xb)
    for name in a.a:
        np.testing.assert_array_equal(a.a[name], b.a[name], err_msg=name)
    np.testing.assert_array_equal(a.kcounters, b.kcounters)
    assert a.counters["card_ring_saturated"] > 0 and (a.a["c_ovf_cnt"] > 0).any()


def test_label_kernel_equals_its_python_twin() -> None:
    ck, tk, ts, amt, _ = stream(4)
    states = [FeatureState(), FeatureState()]
    for st in states:
        st.fold_arrays(ck, tk, ts, amt)
    keys, when = tk[::7].copy(), ts[::7].copy()
    delta = np.ones(len(keys), dtype=np.int8)
    delta[::3] = -1
    for st, kern in zip(states, (kernels.apply_labels_many, twin(kernels.apply_labels_many)),
                        strict=True):  # fmt: skip
        a = st.a
        kern(a["t_tab_keys"], a["t_tab_slot"], a["t_lhead"], a["t_lab_fraud"], st.params,
             st.kcounters, keys, when, delta)  # fmt: skip
    np.testing.assert_array_equal(states[0].a["t_lab_fraud"], states[1].a["t_lab_fraud"])
    np.testing.assert_array_equal(states[0].kcounters, states[1].kcounters)


def test_hashmap_insert_find_full_and_rebuild() -> None:
    keys, slots = hashmap.new_table(64)
    slot_keys = np.zeros(64, dtype=np.uint64)
    meta = np.zeros(1, dtype=np.int64)
    vals = np.array([0, 1, 2**64 - 1, 12345678901234567890, *range(100, 160)], dtype=np.uint64)
    got = [hashmap.find_or_insert(keys, slots, slot_keys, meta, v) for v in vals]
    assert got == list(range(64))
    assert hashmap.find_or_insert(keys, slots, slot_keys, meta, np.uint64(7)) == -1
    assert [hashmap.find(keys, slots, v) for v in vals] == list(range(64))
    assert hashmap.find(keys, slots, np.uint64(7)) == -1
    hashmap.rebuild(keys, slots, slot_keys[::-1].copy(), 64)
    assert hashmap.find(keys, slots, vals[0]) == 63


def test_snapshot_round_trip_continues_identically() -> None:
    ck, tk, ts, amt, lab = stream(5)
    whole = FeatureState()
    x_whole = whole.fold_arrays(ck, tk, ts, amt, lab)
    part = FeatureState()
    part.fold_arrays(ck[:170], tk[:170], ts[:170], amt[:170], lab[:170])
    restored = FeatureState.restore(part.snapshot())
    x_rest = restored.fold_arrays(ck[170:], tk[170:], ts[170:], amt[170:], lab[170:])
    np.testing.assert_array_equal(x_rest, x_whole[170:])
    assert restored.snapshot() == whole.snapshot()


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[:40], lambda b: b"XXXX" + b[4:], lambda b: b[:8] + b"}" + b[9:],
     lambda b: b[:-10]],
)  # fmt: skip
def test_damaged_snapshot_is_a_typed_error(damage) -> None:
    ck, tk, ts, amt, lab = stream(6, n=50)
    st = FeatureState()
    st.fold_arrays(ck, tk, ts, amt, lab)
    with pytest.raises(InputError, match="feature state snapshot"):
        FeatureState.restore(damage(st.snapshot()))


def test_label_in_replay_is_used_only_after_the_delay() -> None:
    st = FeatureState(FeatureConfig(delay_days=7))
    t0 = 1.53e9
    one = np.ones(1, dtype=np.uint64)

    def fold(t: float, label: int, card: int) -> np.ndarray:
        return st.fold_arrays(np.array([card], dtype=np.uint64), one, np.array([t]),
                              np.array([10.0]), np.array([label], dtype=np.int8))[0]  # fmt: skip

    fold(t0, 1, 1)
    assert fold(t0 + 6.9 * DAY, -1, 2)[COL["TERM_RISK_7DAY_DELAY"]] == 0.0
    assert fold(t0 + 7.5 * DAY, -1, 3)[COL["TERM_RISK_7DAY_DELAY"]] == 1.0


def test_label_events_feed_the_terminal_risk() -> None:
    st = FeatureState(FeatureConfig(delay_days=7))
    t0 = 1.53e9
    term = np.array([9], dtype=np.uint64)
    st.fold_arrays(np.array([1], dtype=np.uint64), term, np.array([t0]), np.array([5.0]))
    assert st.apply_labels(term, np.array([t0]), np.array([1], dtype=np.int8)) == 1
    x = st.fold_arrays(np.array([2], dtype=np.uint64), term, np.array([t0 + 8 * DAY]),
                       np.array([5.0]))  # fmt: skip
    assert x[0, COL["TERM_RISK_7DAY_DELAY"]] == 1.0
    # retraction (false positive) undoes it; unknown terminals are counted, not applied
    st.apply_labels(term, np.array([t0]), np.array([0], dtype=np.int8))
    assert st.apply_labels(np.array([77], dtype=np.uint64), np.array([t0]),
                           np.array([1], dtype=np.int8)) == 0  # fmt: skip
    assert st.counters["label_unknown_terminal"] == 1
    x = st.fold_arrays(np.array([3], dtype=np.uint64), term, np.array([t0 + 8.1 * DAY]),
                       np.array([5.0]))  # fmt: skip
    assert x[0, COL["TERM_RISK_7DAY_DELAY"]] == 0.0


def test_entity_bound_evicts_least_recent_and_keeps_going() -> None:
    st = FeatureState(FeatureConfig(max_cards=16, max_terminals=16))
    n = 200
    ck = np.arange(n, dtype=np.uint64)
    x = st.fold_arrays(ck, ck % 40, 1.5e9 + np.arange(n) * 60.0, np.full(n, 3.0))
    assert st.n_cards <= 16 and st.n_terminals <= 16
    assert st.counters["evicted_cards"] >= n - 16
    assert (x[:, COL["CARD_NB_TX_1DAY"]] == 1).all()
    # the most recent card survived eviction
    y = st.fold_arrays(ck[-1:], ck[-1:] % 40, np.array([1.5e9 + n * 60.0]), np.array([3.0]))
    assert y[0, COL["CARD_NB_TX_1DAY"]] == 2


def test_bad_input_and_config_are_typed_errors() -> None:
    st = FeatureState()
    with pytest.raises(InputError, match="non-finite"):
        st.fold_arrays(np.ones(1, np.uint64), np.ones(1, np.uint64), np.array([np.nan]),
                       np.ones(1))  # fmt: skip
    with pytest.raises(InputError, match="differ in length"):
        st.fold_arrays(np.ones(2, np.uint64), np.ones(1, np.uint64), np.ones(1), np.ones(1))
    with pytest.raises(ConfigError, match="bucket_s"):
        FeatureConfig(bucket_s=7000)
    with pytest.raises(ConfigError, match="unknown keys"):
        FeatureConfig.from_json({"delay_days": 7, "bogus": 1})


def test_bytes_per_entity_is_stated() -> None:
    cfg = FeatureConfig()
    # issue 7: at most 1 KiB per card and per terminal, whatever the rate
    assert cfg.bytes_per_card() == 949 <= 1024
    assert cfg.bytes_per_terminal() == 872 <= 1024
    st = FeatureState(cfg)
    per_card = sum(st.a[n][0].nbytes for n in st.a if n.startswith("c_") and "tab" not in n)
    assert per_card + 2 * 12 == cfg.bytes_per_card()
    per_term = sum(st.a[n][0].nbytes for n in st.a if n.startswith("t_") and "tab" not in n)
    assert per_term + 2 * 12 == cfg.bytes_per_terminal()
