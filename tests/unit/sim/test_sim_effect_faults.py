"""The verdict effect on decisions, and the harness's crash and slow-node faults."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fraudnet.core.consensus.effect import REASON_BLOCK, apply_verdict, effect_of
from fraudnet.core.records import Decision
from fraudnet.replay.simnet import Action, Broadcast, SimNet, Timer

RANK = {"allow": 0, "review": 1, "block": 2}


@given(
    st.sampled_from(["allow", "review", "block"]),
    st.floats(0, 1),
    st.sampled_from(["none", "advisory", "step-up", "block", "clear"]),
)
def test_effect_never_lowers_an_outcome_or_score(outcome: Any, score: float, level: str) -> None:
    e = effect_of(outcome, score, ("X",), level)
    assert RANK[e.outcome] >= RANK[outcome]
    assert e.score >= score and e.local_score == score
    if level == "block":
        assert e.outcome == "block" and REASON_BLOCK in e.reasons
    if level in ("none", "advisory", "clear"):
        assert (e.outcome, e.score, e.reasons, e.changed) == (outcome, score, ("X",), False)


def test_expired_verdict_has_no_effect_and_decision_is_rewritten() -> None:
    assert not effect_of("allow", 0.1, (), "block", expires_at_us=10, now_us=10).changed
    d = Decision("t1", b"r" * 16, "allow", 0.1, ("LOW_RISK",), "m", 0, 5, 1)
    d2, eff = apply_verdict(d, "step-up", window=3, expires_at_us=100, now_us=5)
    assert (d2.outcome, d2.score, eff.window) == ("review", 0.7, 3)
    assert d2.reasons == ("LOW_RISK", "network_verdict_step_up") and d2.tx_id == "t1"


class Echo:
    """Counts what reaches it; pings every 10 ms; restarts its timer after a crash."""

    def __init__(self) -> None:
        self.got: list[int] = []
        self.calls: list[int] = []
        self.crashes = 0

    def start(self, now_us: int) -> list[Action]:
        return [Timer(now_us + 10_000, "ping")]

    def on_message(self, src: str, topic: str, data: bytes, now_us: int) -> list[Action]:
        self.got.append(now_us)
        return []

    def on_timer(self, token: Any, now_us: int) -> list[Action]:
        return [Broadcast("t", b"x"), Timer(now_us + 10_000, "ping")]

    def on_crash(self, now_us: int) -> list[Action]:
        self.crashes += 1
        return []

    def on_restart(self, now_us: int) -> list[Action]:
        return self.start(now_us)

    def call(self, now_us: int) -> list[Action]:
        self.calls.append(now_us)
        return []


def test_crash_loses_messages_defers_work_and_restarts() -> None:
    net = SimNet(1)
    a, b = Echo(), Echo()
    net.add("a", a)
    net.add("b", b)
    net.crash("b", 100_000, 300_000)
    net.schedule(150_000, "b", b.call)
    net.start()
    net.run_until(500_000)
    assert b.crashes == 1
    assert not [t for t in b.got if 100_000 <= t < 300_000]
    assert b.calls == [300_000]  # durable work waits for the restart
    assert net.stats.down > 0
    assert net.stats.per_node["b"].sent > 0  # its timers came back after the restart
    assert net.stats.per_node["a"].received > 0


def test_slow_node_delays_its_messages() -> None:
    net = SimNet(2)
    a, b = Echo(), Echo()
    net.add("a", a)
    net.add("b", b)
    net.slow("a", 0, 10**9, 500_000)
    net.start()
    net.run_until(400_000)
    assert not b.got and not a.got  # messages from *and* to the slow node take > 500 ms
    net.run_until(1_000_000)
    assert min(a.got) >= 510_000 and min(b.got) >= 510_000
