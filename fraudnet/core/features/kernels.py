"""Numba kernels: fold a batch into the window state and write its features.

One kernel call per batch (:func:`fold_many`), one per label batch
(:func:`apply_labels_many`). Both are plain ``@njit`` functions: their
pure-Python twin is ``kernel.py_func`` (parity-tested), and the suite also
runs with ``NUMBA_DISABLE_JIT=1``. A compile failure raises; there is no
silent fallback to Python.

Card windows (exact): every card keeps a ring of its last ``K`` events
(time, amount, terminal key); a window ``(t - n, t]`` is computed by a scan
of the ring, so it is exact while the card makes at most ``K`` transactions
in 30 days.

Terminal windows (approximate): every terminal keeps rings of time buckets
of width ``w`` indexed by absolute bucket number ``floor(ts / w) mod L``
and a ``head`` (the newest bucket seen); moving the head forward clears
the buckets it passes. Two rings:

* labelled ring (30 days + delay): transactions and known frauds per
  bucket. The delayed window ``(t - (n + d), t - d]`` is replaced by the
  ``n`` days of whole buckets ending at ``q = floor((t - d) / w)``
  (exclusive), so no label younger than ``d`` is ever read, and the count
  is off by at most the events of bucket ``q`` and of bucket ``q - n/w``.
* real-time ring (24 h): transactions, and "latest visits": bucket ``x``
  counts the cards whose newest transaction at this terminal falls in
  ``x`` (the card's ring tells the kernel where its previous visit was, so
  it moves that card from the old bucket to the new one). The 24 h window
  is the buckets ``b - 24h/w + 1 .. b``; it misses at most the events (or
  cards) of bucket ``b - 24h/w``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from .hashmap import find, find_or_insert

__all__ = [
    "C_LABEL_TOO_OLD",
    "C_LABEL_UNKNOWN_TERMINAL",
    "C_RING_SATURATED",
    "C_TERMINAL_LATE_DROPPED",
    "NO_HEAD",
    "P_BUCKET_S",
    "P_DELAY_S",
    "P_TZ_S",
    "apply_labels_many",
    "fold_many",
]

P_DELAY_S = 0
P_BUCKET_S = 1
P_TZ_S = 2
N_PARAMS = 3

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
def _advance(
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
def _hsum(
    ring_a: npt.NDArray[np.int32], ring_b: npt.NDArray[np.int32], row: int, lo: int, hi: int
) -> tuple[int, int]:  # pragma: no cover - numba
    """Sums of two rings over absolute slots ``lo..hi`` (inclusive, caller checks liveness)."""
    sa = 0
    sb = 0
    if hi < lo:
        return sa, sb
    length = ring_a.shape[1]
    idx = lo % length
    for _ in range(hi - lo + 1):
        sa += ring_a[row, idx]
        sb += ring_b[row, idx]
        idx += 1
        if idx == length:
            idx = 0
    return sa, sb


@numba.njit(cache=True, nogil=True)
def _lab_window(
    h_cnt: npt.NDArray[np.int32],
    h_fraud: npt.NDArray[np.int32],
    d_cnt: npt.NDArray[np.int32],
    d_fraud: npt.NDArray[np.int32],
    row: int,
    lo: int,
    hi: int,
    bpd: int,
) -> tuple[int, int]:  # pragma: no cover - numba
    """Transactions and frauds over buckets ``lo..hi``: hourly edges plus whole days."""
    if hi < lo:
        return 0, 0
    dlo = lo // bpd
    dhi = hi // bpd
    if dlo == dhi:
        return _hsum(h_cnt, h_fraud, row, lo, hi)
    c1, f1 = _hsum(h_cnt, h_fraud, row, lo, (dlo + 1) * bpd - 1)
    c2, f2 = _hsum(d_cnt, d_fraud, row, dlo + 1, dhi - 1)
    c3, f3 = _hsum(h_cnt, h_fraud, row, dhi * bpd, hi)
    return c1 + c2 + c3, f1 + f2 + f3


@numba.njit(cache=True, nogil=True)
def _newest_fraud(
    h_fraud: npt.NDArray[np.int32],
    d_fraud: npt.NDArray[np.int32],
    row: int,
    lo: int,
    hi: int,
    bpd: int,
) -> int:  # pragma: no cover - numba
    """Newest bucket in ``lo..hi`` holding a known fraud, or ``lo - 1``."""
    hl = h_fraud.shape[1]
    dl = d_fraud.shape[1]
    x = hi
    while x >= lo:
        if x % bpd == bpd - 1 and x - bpd + 1 >= lo and d_fraud[row, (x // bpd) % dl] == 0:
            x -= bpd  # a whole day without fraud
            continue
        if h_fraud[row, x % hl] > 0:
            return x
        x -= 1
    return lo - 1


@numba.njit(cache=True, nogil=True)
def fold_many(
    c_tab_keys: npt.NDArray[np.uint64],
    c_tab_slot: npt.NDArray[np.int32],
    c_keys: npt.NDArray[np.uint64],
    c_meta: npt.NDArray[np.int64],
    c_ring_ts: npt.NDArray[np.float64],
    c_ring_amt: npt.NDArray[np.float64],
    c_ring_term: npt.NDArray[np.uint64],
    c_pos: npt.NDArray[np.int32],
    c_n: npt.NDArray[np.int32],
    c_last: npt.NDArray[np.float64],
    c_unordered: npt.NDArray[np.uint8],
    t_tab_keys: npt.NDArray[np.uint64],
    t_tab_slot: npt.NDArray[np.int32],
    t_keys: npt.NDArray[np.uint64],
    t_meta: npt.NDArray[np.int64],
    t_head: npt.NDArray[np.int64],
    t_lab_cnt: npt.NDArray[np.int32],
    t_lab_fraud: npt.NDArray[np.int32],
    t_day_cnt: npt.NDArray[np.int32],
    t_day_fraud: npt.NDArray[np.int32],
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
    ring_k = c_ring_ts.shape[1]
    bl = t_lab_cnt.shape[1]
    dl = t_day_cnt.shape[1]
    br = t_rt_cnt.shape[1]
    bpd = round(_DAY / w)
    seen_terms = np.empty(ring_k + 1, dtype=np.uint64)
    recent_amt = np.empty(ring_k + 1, dtype=np.float64)
    for j in range(start, order.shape[0]):
        i = order[j]
        cs = find_or_insert(c_tab_keys, c_tab_slot, c_keys, c_meta, card_key[i])
        if cs < 0:
            return j
        tsl = find_or_insert(t_tab_keys, t_tab_slot, t_keys, t_meta, term_key[i])
        if tsl < 0:
            return j
        t = ts[i]
        a = amount[i]
        tk = term_key[i]
        row = out[i]

        # ---- card: one scan of previous events, newest first ----
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
        seen_terms[0] = tk
        n_terms = 1
        recent_amt[0] = a
        n_recent = 1
        idx = pos
        # when full, the slot at ``pos`` is about to be overwritten: skip it
        m = n - 1 if n == ring_k else n
        for _ in range(m):
            idx -= 1
            if idx < 0:
                idx = ring_k - 1
            s = c_ring_ts[cs, idx]
            term = c_ring_term[cs, idx]
            if s > t:
                if term == tk:
                    later_at_term = True
                continue
            age = t - s
            if age >= 30 * _DAY:
                prev_ts = max(prev_ts, s)
                if term == tk:
                    prev_at_term = max(prev_at_term, s)
                if ordered:
                    break  # everything older is older still
                continue
            prev_ts = max(prev_ts, s)
            if term == tk:
                prev_at_term = max(prev_at_term, s)
            x = c_ring_amt[cs, idx]
            p_cnt += 1
            p_sum += x
            p_sq += x * x
            p_max = max(p_max, x)
            if age < 14 * _DAY:
                recent_amt[n_recent] = x
                n_recent += 1
            if age < 7 * _DAY:
                cnt_7 += 1
                sum_7 += x
                if age < _DAY:
                    cnt_1 += 1
                    sum_1 += x
                    if age < _HOUR:
                        cnt_h += 1
                    dup = False
                    for mm in range(n_terms):
                        if seen_terms[mm] == term:
                            dup = True
                            break
                    if not dup:
                        seen_terms[n_terms] = term
                        n_terms += 1
        cnt_30 = p_cnt + 1
        sum_30 = p_sum + a
        # ---- card: insert ----
        if n == ring_k and t - c_ring_ts[cs, pos] < 30 * _DAY:
            counters[C_RING_SATURATED] += 1
        if t < c_last[cs]:
            c_unordered[cs] = 1
        c_ring_ts[cs, pos] = t
        c_ring_amt[cs, pos] = a
        c_ring_term[cs, pos] = tk
        c_pos[cs] = (pos + 1) % ring_k
        if n < ring_k:
            c_n[cs] = n + 1
        c_last[cs] = max(c_last[cs], t)

        # ---- terminal: move head, add the event ----
        b = math.floor(t / w)
        head = t_head[tsl]
        if b > head:
            _advance(head, b, t_lab_cnt, t_lab_fraud, tsl)
            _advance(head, b, t_rt_cnt, t_rt_dist, tsl)
            day_head = head // bpd if head > NO_HEAD else NO_HEAD
            if b // bpd > day_head:
                _advance(day_head, b // bpd, t_day_cnt, t_day_fraud, tsl)
            head = b
            t_head[tsl] = b
        if b > head - bl:
            t_lab_cnt[tsl, b % bl] += 1
            t_day_cnt[tsl, (b // bpd) % dl] += 1
            if label[i] == 1:
                t_lab_fraud[tsl, b % bl] += 1
                t_day_fraud[tsl, (b // bpd) % dl] += 1
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
        # ---- terminal: real-time 24 h window ----
        rt_cnt, rt_dist = _hsum(
            t_rt_cnt, t_rt_dist, tsl, max(b - bpd + 1, head - br + 1), min(b, head)
        )
        # ---- terminal: delayed labelled windows, buckets [q - n*bpd, q - 1] ----
        q = math.floor((t - delay) / w)
        hi = min(q - 1, head)
        live = head - bl + 1
        tc1, tf1 = _lab_window(
            t_lab_cnt, t_lab_fraud, t_day_cnt, t_day_fraud, tsl, max(q - bpd, live), hi, bpd
        )
        tc7, tf7 = _lab_window(
            t_lab_cnt, t_lab_fraud, t_day_cnt, t_day_fraud, tsl, max(q - 7 * bpd, live), hi, bpd
        )
        lo30 = max(q - 30 * bpd, live)
        tc30, tf30 = _lab_window(t_lab_cnt, t_lab_fraud, t_day_cnt, t_day_fraud, tsl, lo30, hi, bpd)
        since_fraud = _SINCE_CAP
        if tf30 > 0:
            xf = _newest_fraud(t_lab_fraud, t_day_fraud, tsl, lo30, hi, bpd)
            if xf >= lo30:
                since_fraud = min(_SINCE_CAP, t - (xf + 1) * w)

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
            for k in range(n_recent):
                if recent_amt[k] > lim:
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
    return int(order.shape[0])


@numba.njit(cache=True, nogil=True)
def apply_labels_many(
    t_tab_keys: npt.NDArray[np.uint64],
    t_tab_slot: npt.NDArray[np.int32],
    t_head: npt.NDArray[np.int64],
    t_lab_fraud: npt.NDArray[np.int32],
    t_day_fraud: npt.NDArray[np.int32],
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
    w = params[P_BUCKET_S]
    bl = t_lab_fraud.shape[1]
    dl = t_day_fraud.shape[1]
    bpd = round(_DAY / w)
    applied = 0
    for i in range(term_key.shape[0]):
        tsl = find(t_tab_keys, t_tab_slot, term_key[i])
        if tsl < 0:
            counters[C_LABEL_UNKNOWN_TERMINAL] += 1
            continue
        b = math.floor(tx_ts[i] / w)
        head = t_head[tsl]
        if b > head or b <= head - bl:
            counters[C_LABEL_TOO_OLD] += 1
            continue
        v = t_lab_fraud[tsl, b % bl]
        nv = max(v + delta[i], 0)
        t_lab_fraud[tsl, b % bl] = nv
        t_day_fraud[tsl, (b // bpd) % dl] += nv - v
        applied += 1
    return applied
