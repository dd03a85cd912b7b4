"""Through the node's own network bridge: a sealed envelope from another member is
validated, recorded by ``NetworkBridge._on_signals`` and raises the next score of that
card; the bridge then offers signals from the *local* score only."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_network_features_node import _model

from fraudnet.adapters.network import NetworkBridge
from fraudnet.core import crypto
from fraudnet.core.pipeline import NodeCore
from fraudnet.core.records import TxRecord
from fraudnet.core.scoring.model_scorer import ModelScorer
from fraudnet.core.signals import (
    EpochKey,
    NetworkKeyring,
    Signal,
    SignalPayload,
    SignalPolicy,
    Validator,
    seal,
)
from fraudnet.core.signals.evidence import NetworkEvidence

NET = "testnet"
T0 = 1_700_000_000_000_000
CARD = "4111111111111111"
KEYRING = NetworkKeyring([EpochKey(0, 0, b"k" * 32)], 0)


class _Runtime:
    def __init__(self) -> None:
        self.decided_hooks: list[Any] = []
        self.metrics = SimpleNamespace(registry=SimpleNamespace(register=lambda c: None))


class _P2P:
    member_id = "bank-a"

    def __init__(self) -> None:
        self.published: list[Signal] = []

    def publish_nowait(self, sigs: list[Signal]) -> bool:
        self.published.extend(sigs)
        return True


def _tx(i: int, now: int) -> dict[str, Any]:
    return {"tx_id": f"t{i}", "timestamp": now / 1e6, "card": CARD, "terminal_id": "T-1",
            "amount": "25.00", "currency": "EUR"}  # fmt: skip


def test_received_envelope_changes_the_cards_score_and_signals_stay_local() -> None:
    bridge = NetworkBridge(
        None, Ed25519PrivateKey.from_private_bytes(b"\x01" * 32), KEYRING, _Runtime(),  # type: ignore[arg-type]
        SimpleNamespace(_closing=True), "node-a",  # type: ignore[arg-type]
        policy=SignalPolicy(threshold=0.0, burst=100, cooldown_us=0),
    )  # fmt: skip
    bridge.evidence = NetworkEvidence("bank-a")
    p2p = _P2P()
    bridge.p2p = p2p  # type: ignore[assignment]
    core = NodeCore(ModelScorer(_model(True)), b"s" * 32, network_refs=bridge.network_refs)
    core.network_features = bridge.features

    def decide(i: int, now: int) -> tuple[float, TxRecord]:
        rec = core.admit_one(_tx(i, now), source="t", location=str(i), now_us=now)
        assert isinstance(rec, TxRecord)
        d = core.decide_many([rec], [now], now)
        bridge.on_decided(d, [rec])
        return d[0].score, rec

    before, _ = decide(1, T0)
    # bank-b's envelope: sealed, validated (signature before decoding), then recorded
    kb = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
    _, ps = KEYRING.pseudonym("card", CARD, T0)
    sig = Signal("card", ps, 950, ("velocity",), T0, T0 + 3_600_000_000, (1, 1))
    wire = seal(kb, SignalPayload(NET, "bank-b", 0, 0, T0, (sig,)))
    verdict = Validator(NET, {"bank-b": crypto.public_bytes(kb)}).validate(wire, T0 + 1000)
    assert verdict.payload is not None
    bridge._on_signals(verdict.payload)
    after, _ = decide(2, T0 + 1_000_000)
    assert after > before + 0.3
    # what the bridge offered for both transactions is the local score, not `after`
    assert [s.kind for s in p2p.published] == ["card", "card"]
    assert p2p.published[1].score_milli == pytest.approx(1000 * before, abs=50)
    assert p2p.published[1].score_milli < 1000 * after - 300
