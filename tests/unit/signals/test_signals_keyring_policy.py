from __future__ import annotations

import pytest
from signals_helpers import NET, T0, signal

from fraudnet.core.ids import pseudonym
from fraudnet.core.signals import (
    EpochKey,
    NetworkKeyring,
    PseudonymLinks,
    SignalBatcher,
    SignalPolicy,
)
from fraudnet.errors import ConfigError

K0, K1 = b"\x01" * 32, b"\x02" * 32
HOUR = 3_600_000_000


def ring() -> NetworkKeyring:
    return NetworkKeyring([EpochKey(0, T0, K0), EpochKey(1, T0 + 10 * HOUR, K1)], grace_us=HOUR)


def test_current_epoch_and_grace_period() -> None:
    r = ring()
    assert r.accepted_epochs(T0 - 1) == frozenset()
    assert r.accepted_epochs(T0) == {0}
    assert r.accepted_epochs(T0 + 10 * HOUR) == {0, 1}
    assert r.accepted_epochs(T0 + 11 * HOUR - 1) == {0, 1}
    assert r.accepted_epochs(T0 + 11 * HOUR) == {1}
    assert r.pseudonym("card", "4111 1111 1111 1111", T0) == (
        0,
        pseudonym(K0, "card", "4111111111111111"),
    )
    with pytest.raises(ConfigError):
        r.current(T0 - 1)


def test_keyring_rejects_bad_config() -> None:
    with pytest.raises(ConfigError, match="twice"):
        NetworkKeyring([EpochKey(0, 1, K0), EpochKey(0, 2, K1)], 0)
    with pytest.raises(ConfigError, match="32 bytes"):
        NetworkKeyring([EpochKey(0, 1, b"short")], 0)
    with pytest.raises(ConfigError, match="start after"):
        NetworkKeyring([EpochKey(0, 5, K0), EpochKey(1, 5, K1)], 0)
    assert "01" * 4 not in repr(EpochKey(0, 1, K0))


def test_links_keep_one_canonical_key_across_a_rotation() -> None:
    r, links = ring(), PseudonymLinks()
    before = links.link(r.pseudonyms("card", "4111111111111111", T0))
    during = r.pseudonyms("card", "4111111111111111", T0 + 10 * HOUR)
    assert len(during) == 2
    assert links.link(during) == before
    new_epoch, new_ps = during[0]
    assert new_epoch == 1 and links.resolve(1, new_ps) == before
    assert links.resolve(1, b"\x09" * 32) == b"\x09" * 32
    again = PseudonymLinks.restore(links.snapshot())
    assert again.resolve(1, new_ps) == before


def test_links_are_bounded() -> None:
    links = PseudonymLinks(capacity=2)
    for i in range(5):
        links.link([(0, bytes([i]) * 32)])
    assert len(links) == 2


def test_policy_threshold_budget_and_cooldown() -> None:
    pol = SignalPolicy(threshold=0.8, budget=0.05, burst=0, cooldown_us=HOUR, rescore_delta=0.05)
    pol.note_transactions(40)  # earns 2 signals
    assert pol.offer("card", b"\x01" * 32, 0.5, T0) is None
    s = pol.offer("card", b"\x01" * 32, 0.9, T0 + 123_456_789, n_tx=7, reasons=("velocity",))
    assert s is not None and s.score_milli == 900 and s.evidence == (4, 0)
    assert s.observed_at_us % pol.time_granularity_us == 0  # no precise transaction time
    assert pol.offer("card", b"\x01" * 32, 0.92, T0 + 10) is None  # cooldown
    assert pol.offer("card", b"\x01" * 32, 0.99, T0 + 10) is not None  # rose by >= 0.1
    assert pol.offer("card", b"\x02" * 32, 0.99, T0) is None  # budget used up
    assert pol.counters["policy_over_budget"] == 1
    assert pol.signals_sent <= 0.05 * pol.transactions_seen


def test_policy_rejects_bad_config() -> None:
    with pytest.raises(ConfigError):
        SignalPolicy(threshold=1.5)


def test_batcher_one_envelope_per_interval_and_growing_seq() -> None:
    b = SignalBatcher(NET, "bank-a", next_seq=10, flush_interval_us=100_000, max_pending=3)
    assert b.poll(T0, 0) is None
    for i in range(4):
        b.offer(signal(i))
    assert b.counters["signals_batch_dropped"] == 1
    first = b.poll(T0, 0)
    assert first is not None and first.seq == 10 and len(first.signals) == 3
    b.offer(signal(9))
    assert b.poll(T0 + 50_000, 0) is None
    second = b.poll(T0 + 100_000, 0)
    assert second is not None and second.seq == 11


def test_batcher_replaces_pending_signal_for_same_entity() -> None:
    b = SignalBatcher(NET, "bank-a")
    b.offer(signal(1))
    b.offer(signal(1))
    assert len(b) == 1 and b.counters["signals_batch_replaced"] == 1
