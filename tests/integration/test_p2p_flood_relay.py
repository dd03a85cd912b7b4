"""Scoring never penalises an honest relay for forwarding what this node merely IGNOREs.

bank-b's clock runs 10 s behind, so bank-a's fresh envelopes are "from the future"
there (clock_skew, IGNORE). bank-a authored them: penalised at bank-b (author
responsibility). bank-c accepted them and relays copies to bank-b: those copies
must be IGNOREd and cost bank-c nothing -- also when a copy arrives within a
second of the first (py-libp2p's validation cache would have re-raised the first
failure as a REJECT against the relay; it is disabled).
"""

from __future__ import annotations

import time

import pytest
from p2p_cluster import make_cluster, start_all, stop_all, wait_for

from fraudnet.core.signals import Signal

pytestmark = pytest.mark.integration


def test_relay_of_an_ignored_envelope_is_not_penalised() -> None:
    nodes, _ = make_cluster(["bank-a", "bank-b", "bank-c"], key_seed=70)
    b = nodes["bank-b"]
    b.svc.runtime.clock = lambda: time.time() - 10.0  # bank-b's clock is 10 s behind
    start_all(nodes, 2)
    try:
        a, c = nodes["bank-a"], nodes["bank-c"]

        def sig(i: int) -> Signal:
            now = int(time.time() * 1e6)
            return Signal("card", bytes([i]) * 32, 900, ("x",), now, now + 600_000_000)

        i = iter(range(1, 200))
        wait_for(lambda: a.svc.publish_nowait([sig(next(i))]) and bool(c.received())
                 and b.svc.metrics()["signals_ignore_clock_skew"] >= 4, what="skewed copies at b")  # fmt: skip
        m = b.svc.metrics()
        assert m["p2p_author_penalised"] >= 1  # bank-a's own envelopes, sent directly
        # and copies relayed by bank-c were validated (not re-failed from a cache) and ignored
        assert m["signals_ignore_clock_skew"] > m["p2p_author_penalised"], m
        assert m["signals_envelopes_accepted"] == 0 or not any(
            p.signer == "bank-a" for p in b.received()
        )
        # the score snapshot is refreshed by the host thread: wait (bounded) until it shows
        # the author's penalty -- one run read a snapshot taken just before it (session 6)
        wait_for(lambda: "bank-c" in b.svc.peer_scores()
                 and b.svc.peer_scores().get("bank-a", 0.0) < 0.0,
                 what="a score snapshot with bank-a penalised")  # fmt: skip
        assert b.svc.peer_scores()["bank-c"] >= 0.0  # the relay is never penalised
        assert b.svc.peer_scores()["bank-a"] < 0.0
    finally:
        stop_all(nodes)
