"""Numba kernels: fold a batch into the window state and write its features.

One kernel call per batch (:func:`fold_many`), one per label batch
(:func:`apply_labels_many`). Both are plain ``@njit`` functions: their
pure-Python twin is ``kernel.py_func`` (parity-tested), and the suite also
runs with ``NUMBA_DISABLE_JIT=1``. A compile failure raises; there is no
silent fallback to Python.

Card state (compact, fixed size; see docs/features.md for the bounds):

* a ring of the card's last ``K`` events: time as ``uint32`` whole seconds
  (``floor(ts)``) and amount as ``float32``;
* the terminal fingerprints (``uint32`` fold of the key) of the last
  ``TF`` events, at ring position ``pos % TF`` (``K`` is a multiple of
  ``TF``);
* overflow day buckets (32 days, by absolute UTC day ``mod 32``): count,
  sum, sum of squares and maximum of the events pushed out of the ring.

A window ``(t - n, t]`` is the scan of the ring plus the overflow days
``D > floor((t - n) / day)``. It is exact while the card has at most ``K``
events in the window (nothing overflowed); otherwise it misses at most
the overflowed events of the edge day ``floor((t - n) / day)``. Features
that need individual events (1 h count, distinct terminals, high-amount
count, time since previous) read the ring only.

Terminal windows (approximate): every terminal keeps rings of time buckets
indexed by absolute bucket number ``mod L`` and a head (the newest bucket
seen); moving a head forward clears the buckets it passes. Two rings:

* labelled ring (width ``lw``, default 12 h; 30 days + delay):
  transactions and known frauds per bucket. The delayed window
  ``(t - (n + d), t - d]`` is replaced by the ``n`` days of whole buckets
  ending at ``q = floor((t - d) / lw)`` (exclusive), so no label younger
  than ``d`` is ever read, and the count is off by at most the events of
  bucket ``q`` and of bucket ``q - n/lw``.
* real-time ring (width ``w``, default 1 h; 24 h): transactions, and
  "latest visits": bucket ``x`` counts the cards whose newest transaction
  at this terminal falls in ``x`` (the card's fingerprint ring tells the
  kernel where its previous visit was, so it moves that card from the old
  bucket to the new one). The 24 h window is the buckets ``b - 24h/w + 1
  .. b``; it misses at most the events (or cards) of bucket ``b - 24h/w``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from .hashmap import find, find_or_insert
from .rings import NO_DAY, OVF_DAYS, advance, fingerprint, overflow_add

__all__ = [
    "C_LABEL_TOO_OLD",
    "C_LABEL_UNKNOWN_TERMINAL",
    "C_RING_SATURATED",
    "C_TERMINAL_LATE_DROPPED",
    "NO_DAY",
    "NO_HEAD",
    "OVF_DAYS",
    "P_BUCKET_S",
    "P_DELAY_S",
    "P_LABEL_BUCKET_S",
    "P_TZ_S",
    "apply_labels_many",
    "fingerprint",
    "fold_many",
]

P_DELAY_S = 0
P_BUCKET_S = 1
P_TZ_S = 2
P_LABEL_BUCKET_S = 3
N_PARAMS = 4
#: version of the state array layout (snapshots of another layout are refused)
STATE_LAYOUT = 2


#: counters[...] indices
C_TERMINAL_LATE_DROPPED = 0
C_RING_SATURATED = 1
C_LABEL_UNKNOWN_TERMINAL = 2
C_LABEL_TOO_OLD = 3
N_COUNTERS = 4

NO_HEAD = -(1 << 62)
_DAY = 86400.0
_HOUR = 3600.0
_SINCE_CAP = 45 * _DAY


@numba.njit(cache=True, nogil=True)
def fold_many(
    c_tab_keys: npt.NDArray[np.uint64],
    c_tab_slot: npt.NDArray[np.int32],
    c_keys: npt.NDArray[np.uint64],
    c_meta: npt.NDArray[np.int64],
    c_ring_ts: npt.NDArray[np.uint32],
    c_ring_amt: npt.NDArray[np.float32],
    c_ring_fp: npt.NDArray[np.uint32],
    c_ovf_cnt: npt.NDArray[np.uint16],
    c_ovf_f: npt.NDArray[np.float32],
    c_ovf_head: npt.NDArray[np.int32],
    c_pos: npt.NDArray[np.int32],
    c_n: npt.NDArray[np.int32],
    c_last: npt.NDArray[np.float64],
    c_unordered: npt.NDArray[np.uint8],
    t_tab_keys: npt.NDArray[np.uint64],
    t_tab_slot: npt.NDArray[np.int32],
    t_keys: npt.NDArray[np.uint64],
    t_meta: npt.NDArray[np.int64],
    t_head: npt.NDArray[np.int64],
    t_lhead: npt.NDArray[np.int64],
    t_lab_cnt: npt.NDArray[np.int32],
    t_lab_fraud: npt.NDArray[np.int32],
    t_rt_cnt: npt.NDArray[np.int32],
    t_rt_dist: npt.NDArray[np.int32],
    t_last: npt.NDArray[np.float64],
    params: npt.NDArray[np.float64],
    counters: npt.NDArray[np.int64],
    card_key: npt.NDArray[np.uint64],
    term_key: npt.NDArray[np.uint64],
    ts: npt.NDArray[np.float64],
    amount: npt.NDArray[np.float64],
    label: npt.NDArray[np.int8],
    order: npt.NDArray[np.int64],
    start: int,
    out: npt.NDArray[np.float64],
) -> int:  # pragma: no cover - numba
    """Fold ``order[start:]`` into the state and write feature rows ``out[order[j]]``.

    Returns ``len(order)`` when done, or the position ``j`` at which a map
    was full (nothing of transaction ``order[j]`` was folded except possibly
    a new, still empty, entity slot): the caller evicts and calls again with
    ``start=j``.
    """
    delay = params[P_DELAY_S]
    w = params[P_BUCKET_S]
    tz = params[P_TZ_S]
    lw = params[P_LABEL_BUCKET_S]
    ring_k = c_ring_ts.shape[1]
    tf = c_ring_fp.shape[1]
    bl = t_lab_cnt.shape[1]
    br = t_rt_cnt.shape[1]
    bpd = round(_DAY / w)
    lpd = round(_DAY / lw)
    seen_terms = np.empty(tf + 1, dtype=np.uint32)
    recent_amt = np.empty(ring_k + 1, dtype=np.float64)
    for j in range(start, order.shape[0]):
        i = order[j]
        cs = find_or_insert(c_tab_keys, c_tab_slot, c_keys, c_meta, card_key[i])
        if cs < 0:
            return j
        tsl = find_or_insert(t_tab_keys, t_tab_slot, t_keys, t_meta, term_key[i])
        if tsl < 0:
            return j
        t = np.floor(ts[i])  # whole seconds: the ring stores uint32 seconds
        a = amount[i]
        tk = term_key[i]
        fp = fingerprint(tk)
        row = out[i]

        # ---- card: one scan of the ring, newest first ----
        # The ring is in event-time order unless the card ever received a late
        # event (c_unordered); then the early exit is disabled and the scan is full.
        n = c_n[cs]
        pos = c_pos[cs]
        ordered = c_unordered[cs] == 0
        prev_ts = -math.inf
        prev_at_term = -math.inf
        later_at_term = False
        p_cnt = 0
        p_sum = 0.0
        p_sq = 0.0
        p_max = 0.0
        cnt_h = 1
        cnt_1 = 1
        cnt_7 = 1
        sum_1 = a
        sum_7 = a
        seen_terms[0] = fp
        n_terms = 1
        recent_amt[0] = a
        n_recent = 1
        old_cnt = 0
        old_sum = 0.0
        idx = pos
        for step in range(n):
            idx -= 1
            if idx < 0:
                idx = ring_k - 1
            s = np.float64(c_ring_ts[cs, idx])
            known_fp = step < tf
            term = c_ring_fp[cs, idx % tf]
            if s > t:
                if known_fp and term == fp:
                    later_at_term = True
                continue
            age = t - s
            prev_ts = max(prev_ts, s)
            if known_fp and term == fp:
                prev_at_term = max(prev_at_term, s)
            if age >= 30 * _DAY:
                if ordered:
                    break  # everything older is older still
                continue
            x = np.float64(c_ring_amt[cs, idx])
            p_cnt += 1
            p_sum += x
            p_sq += x * x
            p_max = max(p_max, x)
            if age < 14 * _DAY:
                recent_amt[n_recent] = x
                n_recent += 1
            else:
                old_cnt += 1
                old_sum += x
            if age < 7 * _DAY:
                cnt_7 += 1
                sum_7 += x
                if age < _DAY:
                    cnt_1 += 1
                    sum_1 += x
                    if age < _HOUR:
                        cnt_h += 1
                    if known_fp:
                        dup = False
                        for mm in range(n_terms):
                            if seen_terms[mm] == term:
                                dup = True
                                break
                        if not dup:
                            seen_terms[n_terms] = term
                            n_terms += 1
        # ---- card: overflow days inside the windows ----
        oh = c_ovf_head[cs]
        if oh != NO_DAY:
            d30 = math.floor((t - 30 * _DAY) / _DAY) + 1
            d7 = math.floor((t - 7 * _DAY) / _DAY) + 1
            d1 = math.floor((t - _DAY) / _DAY) + 1
            d14 = math.floor((t - 14 * _DAY) / _DAY) + 1
            dt = math.floor(t / _DAY)
            for d in range(max(d30, oh - OVF_DAYS + 1), min(dt, oh) + 1):
                k = d % OVF_DAYS
                c = int(c_ovf_cnt[cs, k])
                if c == 0:
                    continue
                sm = np.float64(c_ovf_f[cs, k, 0])
                p_cnt += c
                p_sum += sm
                p_sq += np.float64(c_ovf_f[cs, k, 1])
                p_max = max(p_max, np.float64(c_ovf_f[cs, k, 2]))
                if d < d14:
                    old_cnt += c
                    old_sum += sm
                if d >= d7:
                    cnt_7 += c
                    sum_7 += sm
                    if d >= d1:
                        cnt_1 += c
                        sum_1 += sm
        cnt_30 = p_cnt + 1
        sum_30 = p_sum + a
        # ---- card: insert (the oldest inserted event moves to its overflow day) ----
        if n == ring_k:
            s_old = np.float64(c_ring_ts[cs, pos])
            if (
                overflow_add(
                    c_ovf_head, c_ovf_cnt, c_ovf_f, cs, s_old, np.float64(c_ring_amt[cs, pos])
                )
                and t - s_old < 30 * _DAY
            ):
                counters[C_RING_SATURATED] += 1
        if t < c_last[cs]:
            c_unordered[cs] = 1
        c_ring_ts[cs, pos] = np.uint32(t)
        c_ring_amt[cs, pos] = np.float32(a)
        c_ring_fp[cs, pos % tf] = fp
        c_pos[cs] = (pos + 1) % ring_k
        if n < ring_k:
            c_n[cs] = n + 1
        c_last[cs] = max(c_last[cs], t)

        # ---- terminal: move heads, add the event ----
        b = math.floor(t / w)
        head = t_head[tsl]
        if b > head:
            advance(head, b, t_rt_cnt, t_rt_dist, tsl)
            head = b
            t_head[tsl] = b
        lb = math.floor(t / lw)
        lhead = t_lhead[tsl]
        if lb > lhead:
            advance(lhead, lb, t_lab_cnt, t_lab_fraud, tsl)
            lhead = lb
            t_lhead[tsl] = lb
        if lb > lhead - bl:
            t_lab_cnt[tsl, lb % bl] += 1
            if label[i] == 1:
                t_lab_fraud[tsl, lb % bl] += 1
        else:
            counters[C_TERMINAL_LATE_DROPPED] += 1
        if b > head - br:
            t_rt_cnt[tsl, b % br] += 1
            if not later_at_term:
                if prev_at_term > -math.inf:
                    bp = math.floor(prev_at_term / w)
                    if bp > head - br:
                        t_rt_dist[tsl, bp % br] -= 1
                t_rt_dist[tsl, b % br] += 1
        t_last[tsl] = max(t_last[tsl], t)
        # ---- terminal: real-time 24 h window, buckets max(b-bpd+1, live) .. min(b, head) ----
        rt_cnt = 0
        rt_dist = 0
        x_hi = min(b, head)
        x_lo = max(b - bpd + 1, head - br + 1)
        if x_hi >= x_lo:
            k = x_lo % br
            for _ in range(x_hi - x_lo + 1):
                rt_cnt += t_rt_cnt[tsl, k]
                rt_dist += t_rt_dist[tsl, k]
                k += 1
                if k == br:
                    k = 0
        # ---- terminal: delayed labelled windows, buckets [q - n*lpd, q - 1] ----
        q = math.floor((t - delay) / lw)
        hi = min(q - 1, lhead)
        live = lhead - bl + 1
        tc1 = tf1 = tc7 = tf7 = tc30 = tf30 = 0
        newest_fraud = -(1 << 62)
        lo1 = q - lpd
        lo7 = q - 7 * lpd
        lo30 = max(q - 30 * lpd, live)
        xb = hi
        k = hi % bl
        while xb >= lo30:
            c = t_lab_cnt[tsl, k]
            f = t_lab_fraud[tsl, k]
            tc30 += c
            tf30 += f
            if f > 0 and newest_fraud < xb:
                newest_fraud = xb
            if xb >= lo7:
                tc7 += c
                tf7 += f
                if xb >= lo1:
                    tc1 += c
                    tf1 += f
            xb -= 1
            k -= 1
            if k < 0:
                k = bl - 1
        since_fraud = _SINCE_CAP
        if tf30 > 0 and newest_fraud >= lo30:
            since_fraud = min(_SINCE_CAP, t - (newest_fraud + 1) * lw)

        # ---- write the row (schema v1 order) ----
        local = t + tz
        day_index = math.floor(local / _DAY)
        dow = (day_index + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        hour = math.floor((local - day_index * _DAY) / _HOUR)
        row[0] = a
        row[1] = 1.0 if dow >= 5 else 0.0
        row[2] = 1.0 if hour <= 6 else 0.0
        row[3] = cnt_1
        row[4] = sum_1 / cnt_1
        row[5] = cnt_7
        row[6] = sum_7 / cnt_7
        row[7] = cnt_30
        row[8] = sum_30 / cnt_30
        row[9] = tc1
        row[10] = tf1 / tc1 if tc1 > 0 else 0.0
        row[11] = tc7
        row[12] = tf7 / tc7 if tc7 > 0 else 0.0
        row[13] = tc30
        row[14] = tf30 / tc30 if tc30 > 0 else 0.0
        row[15] = cnt_h
        if p_cnt > 0:
            mean = p_sum / p_cnt
            std = math.sqrt(max(p_sq / p_cnt - mean * mean, 0.0))
            row[16] = a / mean if mean > 0.0 else 1.0
            row[17] = (a - mean) / max(std, 1.0)
            row[18] = a / p_max if p_max > 0.0 else 1.0
        else:
            row[16] = 1.0
            row[17] = 0.0
            row[18] = 1.0
        n_high = 0
        if p_cnt > 0:
            lim = 2.0 * p_sum / p_cnt
            for kk in range(n_recent):
                if recent_amt[kk] > lim:
                    n_high += 1
        row[19] = min(t - prev_ts, _SINCE_CAP) if prev_ts > -math.inf else _SINCE_CAP
        row[20] = n_terms
        row[21] = rt_dist
        row[22] = rt_cnt
        row[23] = since_fraud / _DAY
        row[24] = n_high
        # reserved network columns: neutral defaults until issue 4 fills them
        row[25] = 0.0
        row[26] = 0.0
        row[27] = _SINCE_CAP
        row[28] = 0.0
        row[29] = 0.0
        row[30] = _SINCE_CAP
        # schema v2: the card's amounts against its history 14-30 days back, which a
        # compromise of the last two weeks has not yet inflated
        if old_cnt > 0 and old_sum > 0.0:
            old_lim = old_sum / old_cnt
            row[31] = a / old_lim
            n_old_high = 0
            for kk in range(n_recent):
                if recent_amt[kk] > 2.0 * old_lim:
                    n_old_high += 1
            row[32] = n_old_high
        else:
            row[31] = 1.0
            row[32] = 0.0
    return int(order.shape[0])


@numba.njit(cache=True, nogil=True)
def apply_labels_many(
    t_tab_keys: npt.NDArray[np.uint64],
    t_tab_slot: npt.NDArray[np.int32],
    t_lhead: npt.NDArray[np.int64],
    t_lab_fraud: npt.NDArray[np.int32],
    params: npt.NDArray[np.float64],
    counters: npt.NDArray[np.int64],
    term_key: npt.NDArray[np.uint64],
    tx_ts: npt.NDArray[np.float64],
    delta: npt.NDArray[np.int8],
) -> int:  # pragma: no cover - numba
    """Add ``delta`` (+1 fraud confirmed, -1 retracted) to the fraud count of each
    labelled transaction's terminal bucket. Returns the number applied.

    The label becomes visible to features only once the *transaction* is
    ``delay`` old (the delayed windows never read a younger bucket), so a
    label arriving early waits and a label arriving late is used from its
    arrival on. Labels for unknown terminals, for buckets older than the
    ring, or for transactions not yet folded are counted and skipped.
    """
    lw = params[P_LABEL_BUCKET_S]
    bl = t_lab_fraud.shape[1]
    applied = 0
    for i in range(term_key.shape[0]):
        tsl = find(t_tab_keys, t_tab_slot, term_key[i])
        if tsl < 0:
            counters[C_LABEL_UNKNOWN_TERMINAL] += 1
            continue
        b = math.floor(math.floor(tx_ts[i]) / lw)
        head = t_lhead[tsl]
        if b > head or b <= head - bl:
            counters[C_LABEL_TOO_OLD] += 1
            continue
        v = t_lab_fraud[tsl, b % bl]
        t_lab_fraud[tsl, b % bl] = max(v + delta[i], 0)
        applied += 1
    return applied
