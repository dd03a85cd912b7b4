"""Peer-scoring parameters, the graylist arithmetic and author responsibility (no network)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p.peer.id import ID
from libp2p.pubsub.score import PeerScorer

from fraudnet.adapters.p2p.host import HostRuntime, peer_id_of
from fraudnet.adapters.p2p.scoring import (
    GRAYLIST_THRESHOLD,
    P4_HALF_LIFE_S,
    ScoreWatch,
    score_params,
)
from fraudnet.adapters.p2p.settings import P2PSettings
from fraudnet.core import crypto
from fraudnet.core.signals import Signal, SignalPayload, ValidationConfig, Validator, seal
from fraudnet.errors import ConfigError

TOPIC = "fraudnet/unit/signals/1"
KEYS = {n: Ed25519PrivateKey.from_private_bytes(bytes([0x50 + i]) * 32)
        for i, n in enumerate(["me", "author", "relay"])}  # fmt: skip
PUB = {n: crypto.public_bytes(k) for n, k in KEYS.items()}
PID = {n: peer_id_of(pk) for n, pk in PUB.items()}
T = 1_700_000_000_000_000


def test_ninth_reject_graylists_and_decay_lifts_it_after_its_half_life_share() -> None:
    hb = 0.7
    scorer = PeerScorer(score_params(hb))
    p = PID["author"]
    for _ in range(8):
        scorer.on_invalid_message(p, TOPIC)
    assert not scorer.is_graylisted(p, [TOPIC]) and scorer.allow_publish(p, [TOPIC])
    scorer.on_invalid_message(p, TOPIC)
    assert scorer.is_graylisted(p, [TOPIC]) and not scorer.allow_publish(p, [TOPIC])
    # 9 -> 8 invalid messages takes log2(9/8) half-lives of decay
    beats = math.ceil(math.log2(9 / 8) * P4_HALF_LIFE_S / hb)
    for _ in range(beats - 2):
        scorer.on_heartbeat()
    assert scorer.is_graylisted(p, [TOPIC])
    for _ in range(3):
        scorer.on_heartbeat()
    assert not scorer.is_graylisted(p, [TOPIC])


def test_score_watch_records_when_a_member_is_first_graylisted() -> None:
    scorer = PeerScorer(score_params(0.3))
    clock = iter([10.0, 11.0, 12.0])
    w = ScoreWatch({PID["author"]: "author", PID["relay"]: "relay"}, lambda: next(clock))
    w.update(scorer, TOPIC)
    assert w.graylisted == frozenset() and w.snapshot() == {"author": 0.0, "relay": 0.0}
    for _ in range(9):
        scorer.on_invalid_message(PID["author"], TOPIC)
    w.update(scorer, TOPIC)
    w.update(scorer, TOPIC)
    assert w.graylisted == {"author"} and w.first_graylisted == {"author": 11.0}
    assert w.snapshot()["author"] < GRAYLIST_THRESHOLD


def _runtime() -> tuple[HostRuntime, dict[str, int]]:
    settings = P2PSettings.from_mapping(
        {"listen": "/ip4/127.0.0.1/tcp/0", "network_id": "unit",
         "members": {n: pk.hex() for n, pk in PUB.items()}, "network_key_file": "x"},
        "unit",
    )  # fmt: skip
    counters = dict.fromkeys(["p2p_validations", "p2p_received_envelopes",
                              "p2p_rejects_forwarded", "p2p_validator_errors",
                              "p2p_author_penalised", "p2p_relay_excused"], 0)  # fmt: skip
    validator = Validator("unit", dict(PUB), ValidationConfig())
    rt = HostRuntime(settings, KEYS["me"], validator, counters, lambda p: None,
                     clock=lambda: T / 1e6)  # fmt: skip
    return rt, counters


def _stale() -> bytes:
    created = T - 3600 * 1_000_000
    sig = Signal("card", b"s" * 32, 900, (), created, T + 3600 * 1_000_000)
    return seal(KEYS["author"], SignalPayload("unit", "author", 0, 5, created, (sig,)))


def test_authors_own_stale_envelope_is_rejected_so_it_penalises_the_author() -> None:
    rt, counters = _runtime()
    msg = SimpleNamespace(data=_stale(), from_id=PID["author"].to_bytes())
    assert rt._validate(PID["author"], msg) is False
    assert rt._ignore_pending is False  # REJECT: py-libp2p counts it against the forwarder
    assert counters["p2p_author_penalised"] == 1 and counters["p2p_validations"] == 1
    assert rt.validator.counters["signals_ignore_expired"] == 1


def test_a_relay_forwarding_someone_elses_stale_envelope_is_only_ignored() -> None:
    rt, counters = _runtime()
    msg = SimpleNamespace(data=_stale(), from_id=PID["author"].to_bytes())
    assert rt._validate(PID["relay"], msg) is False
    assert rt._ignore_pending is True  # IGNORE: the relay is not penalised
    assert counters["p2p_author_penalised"] == 0


def test_quota_below_an_honest_authors_flush_rate_is_refused() -> None:
    base = {"listen": "/ip4/127.0.0.1/tcp/0", "network_id": "unit",
            "members": {"me": PUB["me"].hex()}, "network_key_file": "x"}  # fmt: skip
    with pytest.raises(ConfigError, match="member_rate_per_s"):
        P2PSettings.from_mapping({**base, "flush_interval_ms": 10}, "unit")
    s = P2PSettings.from_mapping({**base, "flush_interval_ms": 1000, "member_rate_per_s": 1}, "u")
    assert s.member_rate_per_s == 1.0


def test_the_libp2p_identity_is_the_member_key() -> None:
    rt, _ = _runtime()
    assert rt.my_id == PID["me"] == ID.from_pubkey(rt.keypair.public_key)


def test_gate_drops_a_graylisted_forwarders_message_before_validation() -> None:
    import trio

    from fraudnet.adapters.p2p.scoring import GatedPubsub

    scorer = PeerScorer(score_params(0.3))
    for _ in range(9):
        scorer.on_invalid_message(PID["author"], TOPIC)
    gate = object.__new__(GatedPubsub)  # only the gate: no host, no streams
    gate.router = SimpleNamespace(scorer=scorer)  # type: ignore[misc]
    gate.host = SimpleNamespace(get_id=lambda: PID["me"])  # type: ignore[misc]
    gate._fn_counters = {"p2p_dropped_graylisted": 0}
    msg = SimpleNamespace(topicIDs=[TOPIC], data=b"never validated")
    trio.run(gate.push_msg, PID["author"], msg)
    assert gate._fn_counters["p2p_dropped_graylisted"] == 1


def test_a_message_with_a_bad_libp2p_signature_penalises_its_forwarder() -> None:
    import trio
    from libp2p.pubsub.pb import rpc_pb2

    from fraudnet.adapters.p2p.scoring import GatedPubsub

    penalised: list[tuple[ID, str]] = []
    gate = object.__new__(GatedPubsub)
    gate.router = SimpleNamespace(scorer=PeerScorer(score_params(0.3)))  # type: ignore[misc]
    gate.host = SimpleNamespace(get_id=lambda: PID["me"])  # type: ignore[misc]
    gate.strict_signing = True
    gate.penalise = lambda peer, topic: penalised.append((peer, topic))
    gate._fn_counters = {"p2p_dropped_graylisted": 0, "p2p_bad_message_signature": 0}
    msg = rpc_pb2.Message(data=b"x", topicIDs=[TOPIC], from_id=PID["author"].to_bytes(),
                          seqno=b"\x00" * 8, signature=b"\x01" * 64)  # fmt: skip
    trio.run(gate.push_msg, PID["relay"], msg)
    assert gate._fn_counters["p2p_bad_message_signature"] == 1
    assert penalised == [(PID["relay"], TOPIC)]


def _forged() -> bytes:
    sig = Signal("card", b"f" * 32, 900, (), T, T + 3600 * 1_000_000)
    wrong = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    return seal(wrong, SignalPayload("unit", "author", 0, 9, T, (sig,)))


def test_bad_signature_penalises_its_author_but_not_a_relay_with_another_roster_view() -> None:
    rt, counters = _runtime()
    authored = SimpleNamespace(data=_forged(), from_id=PID["author"].to_bytes())
    assert rt._validate(PID["author"], authored) is False and rt._ignore_pending is False
    relayed = SimpleNamespace(data=_forged(), from_id=PID["author"].to_bytes())
    assert rt._validate(PID["relay"], relayed) is False and rt._ignore_pending is True
    assert counters["p2p_relay_excused"] == 1
    assert rt.validator.counters["signals_reject_bad_signature"] == 2
