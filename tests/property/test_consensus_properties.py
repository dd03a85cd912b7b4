"""Invariants of the verdict function, over random statement sets and arrival orders.

1. Order/duplication/delay independence: two trackers fed the same statements
   in different orders, with duplicates, at different arrival times, derive the
   same verdict as the pure function over the set.
2. Quorum safety: with at most f Byzantine members signing anything (including
   equivocations) and honest members signing one side per entity and window,
   no view of any subset of statements certifies block without an honest risk
   statement, and no two views certify block and clear for one entity and window.
"""

from __future__ import annotations

import contextlib
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.core.consensus import (
    Attestation,
    Limits,
    QuorumTracker,
    SignedAttestation,
    VerdictPolicy,
    derive_verdict,
    sign_attestation,
)
from fraudnet.errors import ConsensusError
from fraudnet.replay.sim import SimMembers, build_network

S = 1_000_000
POLICY = VerdictPolicy(window_us=100 * S, grace_us=10 * S)
NOW = 1_005 * S
ENTITIES = [bytes([i]) * 32 for i in range(3)]
WINDOWS = (9, 10)
STANCES = ("risk", "clear", "retract")
LIMITS = Limits(rate_per_s=1e6, burst=1e6)


@cache
def network(f: int) -> SimMembers:
    return build_network(3 * f + 1, f, seed=100 + f)


@cache
def signed(f: int, mid: str, e: int, w: int, seq: int, stance: str) -> SignedAttestation:
    net = network(f)
    a = Attestation("sim", mid, "card", ENTITIES[e], 0, w, seq, stance, 5)  # type: ignore[arg-type]
    return sign_attestation(a, net.keys[mid])


statement = st.tuples(
    st.integers(0, 2), st.sampled_from(WINDOWS), st.integers(1, 3), st.sampled_from(STANCES)
)


@st.composite
def statement_sets(draw: st.DrawFn) -> tuple[int, list[SignedAttestation]]:
    f = draw(st.sampled_from((1, 2)))
    ids = sorted(network(f).keys)
    out = []
    for mid in ids:
        for e, w, seq, stance in draw(st.lists(statement, max_size=4)):
            out.append(signed(f, mid, e, w, seq, stance))
    return f, out


def _feed(tr: QuorumTracker, atts: list[SignedAttestation], times: list[int]) -> None:
    for sa, t in zip(atts, times, strict=True):
        with contextlib.suppress(ConsensusError):
            tr.receive_attestation(sa.to_wire(), t)


@settings(max_examples=60, deadline=None)
@given(statement_sets(), st.randoms(use_true_random=False), st.data())
def test_verdict_is_order_duplication_and_delay_independent(
    fs: tuple[int, list[SignedAttestation]], rnd: object, data: st.DataObject
) -> None:
    f, atts = fs
    net = network(f)
    views = []
    for _ in range(2):
        order = data.draw(st.permutations(atts))
        dups = data.draw(st.lists(st.sampled_from(atts), max_size=5)) if atts else []
        arrivals = order + dups
        arrivals = data.draw(st.permutations(arrivals))
        times = sorted(
            data.draw(
                st.lists(st.integers(960 * S, NOW), min_size=len(arrivals), max_size=len(arrivals))
            )
        )
        tr = QuorumTracker(net.fresh_chain(), POLICY, LIMITS)
        _feed(tr, arrivals, times)
        tr.tick(NOW)
        views.append(tr)
    for e in ENTITIES:
        pure = derive_verdict("card", e, atts, net.chain, (), NOW, POLICY)
        assert views[0].verdict("card", e, NOW) == pure
        assert views[1].verdict("card", e, NOW) == pure
        assert views[0].current().get(("card", e), pure if pure.level != "none" else None) == (
            pure if pure.level != "none" else None
        )


@st.composite
def honest_and_byzantine(draw: st.DrawFn) -> tuple[int, list[SignedAttestation], set[str]]:
    f = draw(st.sampled_from((1, 2)))
    ids = sorted(network(f).keys)
    byz = set(ids[len(ids) - f :])
    out = []
    for mid in ids:
        if mid in byz:  # anything at all, equivocations included
            for e, w, seq, stance in draw(st.lists(statement, max_size=8)):
                out.append(signed(f, mid, e, w, seq, stance))
            continue
        for e in range(3):
            for w in WINDOWS:
                side = draw(st.sampled_from(("none", "risk", "clear")))
                if side == "none":
                    continue
                out.append(signed(f, mid, e, w, 1, side))
                if draw(st.booleans()):
                    out.append(signed(f, mid, e, w, 2, "retract"))
    return f, out, byz


@settings(max_examples=80, deadline=None)
@given(honest_and_byzantine(), st.data())
def test_quorum_safety_under_f_byzantine(
    case: tuple[int, list[SignedAttestation], set[str]], data: st.DataObject
) -> None:
    f, atts, byz = case
    net = network(f)
    certified: dict[tuple[bytes, int], set[str]] = {}
    for _ in range(4):  # four nodes' (partial) views
        view = data.draw(st.lists(st.sampled_from(atts), unique=True)) if atts else []
        for e in ENTITIES:
            v = derive_verdict("card", e, view, net.chain, (), NOW, POLICY)
            if v.level in ("block", "clear"):
                certified.setdefault((e, v.window), set()).add(v.level)
            if v.level == "block":
                honest_risk = [
                    a for a in v.support if a.body.member_id not in byz and a.body.stance == "risk"
                ]
                assert honest_risk, "block without an honest member's risk statement"
    for key, levels in certified.items():
        assert not {"block", "clear"} <= levels, f"block and clear both certified for {key}"
