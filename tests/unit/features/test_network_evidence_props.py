"""Invariants of the network columns over arbitrary signal streams (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.core.features.network import network_row
from fraudnet.core.features.schema import SINCE_CAP_S
from fraudnet.core.signals.codec import Signal
from fraudnet.core.signals.evidence import NetworkEvidence

T0 = 1_700_000_000_000_000
ME = "m0"
signals = st.lists(
    st.tuples(
        st.sampled_from(["m0", "m1", "m2", "m3"]),  # signer
        st.integers(0, 3),  # entity
        st.sampled_from(["card", "terminal"]),
        st.integers(0, 1000),  # score
        st.integers(0, 10**10),  # observed offset (µs)
        st.integers(1, 10**10),  # ttl (µs)
    ),
    max_size=40,
)


def _ps(e: int) -> bytes:
    return bytes([e]) * 32


@settings(max_examples=150, deadline=None)
@given(signals, st.integers(0, 3 * 10**10), st.integers(1, 8))
def test_columns_are_bounded_and_ignore_own_and_expired(
    stream: list[tuple[str, int, str, int, int, int]], at: int, capacity: int
) -> None:
    ev = NetworkEvidence(ME, capacity=capacity)
    for signer, e, kind, score, obs, ttl in stream:
        s = Signal(kind, _ps(e), score, (), T0 + obs, T0 + obs + ttl, (0, 0))
        ev.add(signer, s, s.pseudonym)
    assert len(ev) <= capacity
    now = T0 + at
    for e in range(4):
        row = network_row(ev, _ps(e), _ps(e), now)
        for base, kind in ((0, "card"), (3, "terminal")):
            members, top, since = row[base : base + 3]
            live = {
                (sg, sc)
                for sg, ee, k, sc, obs, ttl in stream
                if sg != ME and ee == e and k == kind and T0 + obs + ttl > now
            }
            # evidence may forget (capacity) but never invents: bounded by live signals
            assert 0 <= members <= len({sg for sg, _ in live})
            assert 0.0 <= top <= 1.0 and 0.0 <= since <= SINCE_CAP_S
            if members == 0:
                assert (top, since) == (0.0, SINCE_CAP_S)
            if capacity >= 8 and live:  # nothing evicted: every live signer counts
                assert members == len({sg for sg, _ in live})
