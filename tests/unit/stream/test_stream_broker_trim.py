"""Deleting consumed records from the embedded broker (ADR 0506).

The plan is pure; the trimmer and the mock C API run against a real embedded
broker on 127.0.0.1 (no node): records below a group's committed offset go,
the rest stay readable from where the group resumes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from fraudnet.adapters.stream.broker import EmbeddedBroker
from fraudnet.adapters.stream.broker_trim import ConsumedTrimmer, TrimPlan
from fraudnet.adapters.stream.mock_cluster import MockCluster, MockClusterUnavailable

# -- the plan ---------------------------------------------------------------------------


def test_plan_deletes_only_where_the_committed_offset_moved_on() -> None:
    plan = TrimPlan()
    assert plan.due({("t", 0): 5, ("t", 1): -1001, ("u", 0): 0}) == [("t", 0, 5)]
    plan.done("t", 0, 5)
    assert plan.due({("t", 0): 5}) == []
    assert plan.due({("t", 0): 4}) == []  # a group moved back (reset): nothing to undo
    assert plan.due({("t", 0): 9}) == [("t", 0, 9)]
    assert plan.snapshot() == {"t": {"0": 5}}


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3),
                          st.integers(-1001, 10_000)), max_size=60))  # fmt: skip
def test_plan_never_moves_back_and_follows_the_highest_commit(
    commits: list[tuple[str, int, int]],
) -> None:
    plan = TrimPlan()
    best: dict[tuple[str, int], int] = {}
    for topic, part, offset in commits:
        before = dict(plan.trimmed_to)
        for t, p, below in plan.due({(topic, part): offset}):
            assert below > before.get((t, p), 0)
            plan.done(t, p, below)
        if offset > 0:
            best[(topic, part)] = max(best.get((topic, part), 0), offset)
        for key, value in plan.trimmed_to.items():
            assert value >= before.get(key, 0)
    assert plan.trimmed_to == best


# -- against the embedded broker --------------------------------------------------------


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker()
    b.start()
    if not b.can_delete:  # pragma: no cover - a librdkafka without the mock C API
        b.stop()
        pytest.skip("librdkafka's mock C API is not available here")
    yield b
    b.stop()


def _produce(bootstrap: str, topic: str, n: int, partition: int = 0) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 3})
    for i in range(n):
        p.produce(topic, f"m{i}".encode(), partition=partition)
        p.poll(0)
    assert p.flush(10) == 0


def _low_high(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "log_level": 3})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return int(lo), int(hi)
    finally:
        c.close()


def test_delete_records_moves_the_log_start(broker: EmbeddedBroker) -> None:
    broker.create_topics(["t"])
    _produce(broker.bootstrap, "t", 100)
    assert _low_high(broker.bootstrap, "t") == (0, 100)
    assert broker.delete_records("t", 0, 40) is True
    assert _low_high(broker.bootstrap, "t") == (40, 100)
    # nothing to delete: past the end, unknown topic or partition
    assert broker.delete_records("t", 0, 101) is False
    assert broker.delete_records("missing", 0, 1) is False
    assert broker.delete_records("t", 99, 1) is False


def test_trimmer_deletes_below_each_groups_commit_and_the_group_resumes(
    broker: EmbeddedBroker,
) -> None:
    bs = broker.bootstrap
    broker.create_topics(["in", "out"])
    _produce(bs, "in", 50)
    _produce(bs, "out", 30)
    reader = Consumer({"bootstrap.servers": bs, "group.id": "g", "enable.auto.commit": False,
                       "log_level": 3})  # fmt: skip
    try:
        reader.assign([TopicPartition("in", 0, 0)])
        got: list[bytes] = []
        for _ in range(200):  # bounded
            got += [m.value() for m in reader.consume(50, timeout=0.1) if m.error() is None]
            if len(got) >= 20:
                break
        reader.commit(offsets=[TopicPartition("in", 0, 20)], asynchronous=False)
    finally:
        reader.close()
    trimmer = ConsumedTrimmer(bs, {"g": ["in"], "never-committed": ["out"]},
                              broker.delete_records)  # fmt: skip
    try:
        assert trimmer.trim_once() == 1
        assert trimmer.trim_once() == 0  # nothing new committed: nothing due
    finally:
        trimmer.close()
    assert _low_high(bs, "in") == (20, 50)
    assert _low_high(bs, "out") == (0, 30)  # no committed offset: left alone
    assert trimmer.stats()["trimmed_below"] == {"in": {"0": 20}}
    assert trimmer.errors == 0
    # the group resumes at its commit and reads every record that is left
    again = Consumer({"bootstrap.servers": bs, "group.id": "g", "enable.auto.commit": False,
                      "auto.offset.reset": "error", "log_level": 3})  # fmt: skip
    try:
        again.assign([TopicPartition("in", 0, 20)])
        rest: list[bytes] = []
        for _ in range(200):
            rest += [m.value() for m in again.consume(50, timeout=0.1) if m.error() is None]
            if len(rest) >= 30:
                break
    finally:
        again.close()
    assert rest == [f"m{i}".encode() for i in range(20, 50)]


def test_trimmer_counts_a_stopped_broker_and_keeps_going() -> None:
    b = EmbeddedBroker()
    b.start()
    bs = b.bootstrap
    b.stop()
    trimmer = ConsumedTrimmer(bs, {"g": ["in"]}, b.delete_records)
    try:
        assert trimmer.trim_once(timeout=0.5) == 0
    finally:
        trimmer.close()
    assert trimmer.errors >= 1


def test_a_library_without_the_mock_api_is_reported() -> None:
    import ctypes.util

    libc = ctypes.util.find_library("c")
    if libc is None:  # pragma: no cover
        pytest.skip("no libc to stand in for a library without the symbols")
    from pathlib import Path

    with pytest.raises(MockClusterUnavailable, match="rd_kafka"):
        MockCluster(Path(libc))


def test_the_broker_falls_back_without_the_c_api() -> None:
    b = EmbeddedBroker(use_c_api=False)
    b.start()
    try:
        assert not b.can_delete
        assert b.delete_records("t", 0, 1) is False
        b.create_topics(["t"])
        _produce(b.bootstrap, "t", 3)
        assert _low_high(b.bootstrap, "t") == (0, 3)
    finally:
        b.stop()
