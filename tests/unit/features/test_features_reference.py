"""Streaming features == a straightforward batch computation on the same data.

Card features are exact; terminal features equal the stated bucket
approximation exactly and stay within the stated bound of the exact
(handbook) windows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudnet.core.features import FEATURE_NAMES, FeatureConfig, FeatureState

DAY = 86400.0
COL = {n: i for i, n in enumerate(FEATURE_NAMES)}


def make_stream(seed: int, n: int = 400, cards: int = 8, terms: int = 4, days: float = 50.0):
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(days * DAY / n, n)
    gaps[rng.random(n) < 0.05] = 0.0  # ties
    ts = np.floor(1.52e9 + np.cumsum(gaps))
    ck = rng.integers(0, cards, n).astype(np.uint64)
    tk = rng.integers(0, terms, n).astype(np.uint64)
    amt = np.round(rng.gamma(2.0, 40.0, n), 2)
    lab = (rng.random(n) < 0.08).astype(np.int8)
    return ck, tk, ts, amt, lab


def card_reference(ck, tk, ts, amt_in):
    n = len(ts)
    rows = []
    # the ring keeps earlier amounts as float32; the current one is exact
    amt32 = amt_in.astype(np.float32).astype(np.float64)
    for i in range(n):
        amt = amt32.copy()
        amt[i] = amt_in[i]
        t = ts[i]
        prev = [j for j in range(i) if ck[j] == ck[i]]
        cur = [*prev, i]
        r = {}
        for nd, name in ((1, "1DAY"), (7, "7DAY"), (30, "30DAY")):
            win = [j for j in cur if t - ts[j] < nd * DAY]
            r[f"CARD_NB_TX_{name}"] = len(win)
            r[f"CARD_AVG_AMOUNT_{name}"] = float(np.mean(amt[win]))
        r["CARD_NB_TX_1HOUR"] = len([j for j in cur if t - ts[j] < 3600])
        p30 = [j for j in prev if t - ts[j] < 30 * DAY]
        if p30:
            mean = float(np.mean(amt[p30]))
            std = float(np.std(amt[p30]))
            r["CARD_AMOUNT_RATIO_30DAY"] = amt[i] / mean
            r["CARD_AMOUNT_ZSCORE_30DAY"] = (amt[i] - mean) / max(std, 1.0)
            r["CARD_AMOUNT_RATIO_MAX_30DAY"] = amt[i] / float(np.max(amt[p30]))
            r["CARD_NB_HIGH_AMOUNT_14DAY"] = len(
                [j for j in cur if t - ts[j] < 14 * DAY and amt[j] > 2 * mean]
            )
        else:
            r["CARD_AMOUNT_RATIO_30DAY"] = 1.0
            r["CARD_AMOUNT_ZSCORE_30DAY"] = 0.0
            r["CARD_AMOUNT_RATIO_MAX_30DAY"] = 1.0
            r["CARD_NB_HIGH_AMOUNT_14DAY"] = 0
        old = [j for j in prev if 14 * DAY <= t - ts[j] < 30 * DAY]
        if old:
            om = float(np.mean(amt[old]))
            r["CARD_AMOUNT_RATIO_OLD_HISTORY"] = amt[i] / om
            r["CARD_NB_ABOVE_OLD_2X_14DAY"] = len(
                [j for j in cur if t - ts[j] < 14 * DAY and amt[j] > 2 * om]
            )
        else:
            r["CARD_AMOUNT_RATIO_OLD_HISTORY"] = 1.0
            r["CARD_NB_ABOVE_OLD_2X_14DAY"] = 0
        r["CARD_SECS_SINCE_PREV"] = min(t - ts[prev[-1]], 45 * DAY) if prev else 45 * DAY
        r["CARD_DISTINCT_TERMINALS_1DAY"] = len({int(tk[j]) for j in cur if t - ts[j] < DAY})
        rows.append(r)
    return rows


@pytest.fixture(scope="module")
def stream():
    ck, tk, ts, amt, lab = make_stream(1)
    cfg = FeatureConfig()
    st = FeatureState(cfg)
    x = np.vstack([st.fold_arrays(ck[s:s + 50], tk[s:s + 50], ts[s:s + 50], amt[s:s + 50],
                                  lab[s:s + 50]) for s in range(0, len(ts), 50)])  # fmt: skip
    return ck, tk, ts, amt, lab, cfg, x


def test_card_features_equal_batch_computation(stream) -> None:
    ck, tk, ts, amt, _lab, _cfg, x = stream
    ref = card_reference(ck, tk, ts, amt)
    for name in ref[0]:
        want = np.array([r[name] for r in ref])
        got = x[:, COL[name]]
        # amounts are kept as float32 in the ring (relative error <= 2**-24 each)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=name)


def test_handbook_flags(stream) -> None:
    _ck, _tk, ts, _amt, _lab, _cfg, x = stream
    dow = (np.floor(ts / DAY).astype(np.int64) + 3) % 7
    hour = np.floor((ts % DAY) / 3600)
    np.testing.assert_array_equal(x[:, COL["TX_DURING_WEEKEND"]], (dow >= 5).astype(float))
    np.testing.assert_array_equal(x[:, COL["TX_DURING_NIGHT"]], (hour <= 6).astype(float))


def test_terminal_features_match_buckets_and_bound(stream) -> None:
    ck, tk, ts, _amt, lab, cfg, x = stream
    w, d, lw = cfg.bucket_s, cfg.delay_days * DAY, cfg.label_bucket_s
    bpd = round(DAY / w)
    lpd = round(DAY / lw)
    bucket = np.floor(ts / w).astype(np.int64)
    lbucket = np.floor(ts / lw).astype(np.int64)
    checked_bound = 0
    for i in range(len(ts)):
        t = ts[i]
        mine = np.array([j for j in range(i + 1) if tk[j] == tk[i]])
        bj, tj, fj, lj = bucket[mine], ts[mine], lab[mine] == 1, lbucket[mine]
        q = math.floor((t - d) / lw)
        for nd, name in ((1, "1DAY"), (7, "7DAY"), (30, "30DAY")):
            inb = (lj >= q - nd * lpd) & (lj <= q - 1)
            cnt = x[i, COL[f"TERM_NB_TX_{name}_DELAY"]]
            assert cnt == inb.sum()
            risk = fj[inb].sum() / inb.sum() if inb.sum() else 0.0
            assert x[i, COL[f"TERM_RISK_{name}_DELAY"]] == pytest.approx(risk, abs=1e-12)
            exact = ((tj > t - (nd * DAY + d)) & (tj <= t - d)).sum()
            bound = (lj == q).sum() + (lj == q - nd * lpd).sum()
            assert abs(cnt - exact) <= bound
            checked_bound += int(exact > 0)
            assert tj[inb].max(initial=-np.inf) < t - d or not inb.any()  # no young label
        b = bucket[i]
        inr = (bj >= b - bpd + 1) & (bj <= b)
        assert x[i, COL["TERM_NB_TX_1DAY"]] == inr.sum()
        exact24 = (tj > t - DAY).sum()
        assert abs(inr.sum() - exact24) <= (bj == b - bpd).sum()
        latest: dict[int, float] = {}
        for j in mine:
            latest[int(ck[j])] = max(latest.get(int(ck[j]), -np.inf), ts[j])
        lb = {c: math.floor(v / w) for c, v in latest.items()}
        approx = sum(1 for v in lb.values() if b - bpd + 1 <= v <= b)
        assert x[i, COL["TERM_DISTINCT_CARDS_1DAY"]] == approx
        exact_d = sum(1 for v in latest.values() if v > t - DAY)
        assert abs(approx - exact_d) <= sum(1 for v in lb.values() if v == b - bpd)
        fr = lj[fj & (lj >= q - 30 * lpd) & (lj <= q - 1)]
        want = min(45 * DAY, t - (fr.max() + 1) * lw) / DAY if fr.size else 45.0
        assert x[i, COL["TERM_DAYS_SINCE_KNOWN_FRAUD"]] == pytest.approx(want)
    assert checked_bound > 100


def test_card_windows_past_the_ring_stay_within_the_overflow_bound() -> None:
    """With a ring of K events, windows holding <= K events are exact; beyond, the
    count misses at most the overflowed events of the window's edge day."""
    ck, tk, ts, amt, _lab = make_stream(7, n=600, cards=2, terms=5, days=40.0)
    k = 16
    st = FeatureState(FeatureConfig(card_ring=k, card_terminals=8))
    x = np.vstack([st.fold_arrays(ck[s:s + 64], tk[s:s + 64], ts[s:s + 64], amt[s:s + 64])
                   for s in range(0, len(ts), 64)])  # fmt: skip
    overflowed = exact_rows = 0
    for i in range(len(ts)):
        t = ts[i]
        mine = np.flatnonzero(ck[: i + 1] == ck[i])
        # events i has pushed out of the ring: all but the newest k before i
        prev = mine[:-1]
        out = prev[:-k] if len(prev) > k else prev[:0]
        for nd, name in ((1, "1DAY"), (7, "7DAY"), (30, "30DAY")):
            exact = int((t - ts[mine] < nd * DAY).sum())
            got = x[i, COL[f"CARD_NB_TX_{name}"]]
            edge = math.floor((t - nd * DAY) / DAY)
            in_win = out[t - ts[out] < nd * DAY]
            bound = int((np.floor(ts[in_win] / DAY) == edge).sum())
            assert exact - bound <= got <= exact, (i, name)
            if in_win.size == 0:
                assert got == exact
                exact_rows += 1
            else:
                overflowed += 1
    assert overflowed > 100 and exact_rows > 100
