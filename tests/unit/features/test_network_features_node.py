"""A network-aware model in the node: NodeCore + ModelScorer + NetworkEvidence.

The score of a card's transaction rises once another member's signal for that
card has arrived; the member's own signals never count; signals come from the
local score (network columns neutral); a model without network features is
scored exactly as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from fraudnet.core.features import FEATURE_NAMES, FeatureConfig, feature_index
from fraudnet.core.features.network import (
    NET_COLS,
    NETWORK_NAMES,
    NEUTRAL,
    EvidenceFeatures,
    network_row,
    uses_network,
)
from fraudnet.core.features.schema import SINCE_CAP_S
from fraudnet.core.pipeline import NodeCore
from fraudnet.core.records import TxRecord
from fraudnet.core.scoring.model_scorer import ModelScorer
from fraudnet.core.signals import EpochKey, NetworkKeyring, Signal
from fraudnet.core.signals.evidence import NetworkEvidence
from fraudnet.core.transaction import Transaction
from fraudnet.training.convert import compile_sklearn

SECRET = b"s" * 32
T0 = 1_700_000_000_000_000
LOCAL = ("TX_AMOUNT", "CARD_NB_TX_1DAY", "CARD_AVG_AMOUNT_1DAY")
KEYRING = NetworkKeyring([EpochKey(0, 0, b"k" * 32)], 0)


def _refs(tx: Transaction, now: int) -> tuple[tuple[int, bytes, bytes], ...]:
    (e, c), (_, t) = (
        KEYRING.pseudonyms("card", tx.card, now)[0],
        KEYRING.pseudonyms("terminal", tx.terminal_id, now)[0],
    )
    return ((e, c, t),)


def _model(with_network: bool) -> Any:
    """A forest where a flagged card (network max score high) means fraud."""
    rng = np.random.default_rng(0)
    n = 2000
    x = np.zeros((n, len(FEATURE_NAMES)))
    x[:, NET_COLS] = NEUTRAL
    x[:, feature_index(list(LOCAL))] = rng.uniform(1, 100, size=(n, 3))
    y = (rng.uniform(size=n) < 0.5).astype(np.int8)
    flagged = y == 1
    x[flagged, NET_COLS[0]] = 1 + (rng.uniform(size=flagged.sum()) < 0.5)
    x[flagged, NET_COLS[1]] = rng.uniform(0.6, 1.0, size=flagged.sum())
    x[flagged, NET_COLS[2]] = rng.uniform(0, 3600, size=flagged.sum())
    names = LOCAL + (NETWORK_NAMES if with_network else ())
    est = RandomForestClassifier(n_estimators=15, random_state=0, max_depth=4)
    est.fit(x[:, feature_index(list(names))], y)
    return compile_sklearn(est, names, FeatureConfig(), {})


def _tx(i: int, now: int) -> dict[str, Any]:
    return {"tx_id": f"t{i}", "timestamp": now / 1e6, "card": "4111111111111111",
            "terminal_id": "T-1", "amount": "25.00", "currency": "EUR"}  # fmt: skip


def _decide(core: NodeCore, i: int, now: int) -> float:
    rec = core.admit_one(_tx(i, now), source="test", location=str(i), now_us=now)
    assert isinstance(rec, TxRecord)
    return core.decide_many([rec], [now], now)[0].score


def _card_signal(score_milli: int, at: int) -> Signal:
    _, ps = KEYRING.pseudonym("card", "4111111111111111", at)
    return Signal("card", ps, score_milli, ("velocity",), at, at + 3_600_000_000, (1, 1))


@pytest.fixture(scope="module")
def net_model() -> Any:
    return _model(True)


def test_schema_network_group_is_the_reserved_columns() -> None:
    assert tuple(FEATURE_NAMES[25:31]) == NETWORK_NAMES
    assert uses_network(NETWORK_NAMES[:1]) and not uses_network(LOCAL)
    ev = NetworkEvidence("me")
    assert network_row(ev, b"x" * 32, b"y" * 32, T0) == tuple(NEUTRAL.tolist())


def test_another_members_signal_raises_the_cards_score(net_model: Any) -> None:
    ev = NetworkEvidence("bank-a")
    src = EvidenceFeatures(lambda: ev)
    scorer = ModelScorer(net_model)
    assert scorer.uses_network_features
    core = NodeCore(scorer, SECRET, network_refs=_refs)
    core.network_features = src
    before = _decide(core, 1, T0)
    local_before = src.pop_local_score("t1")
    assert local_before == pytest.approx(before)  # no evidence: network score == local score
    # the member's own signal never counts
    ev.add("bank-a", _card_signal(950, T0), _card_signal(950, T0).pseudonym)
    assert _decide(core, 2, T0 + 1_000_000) == pytest.approx(before, abs=0.05)
    # another member's signal arrives: the next transaction of the card scores higher
    sig = _card_signal(950, T0 + 1_000_000)
    ev.add("bank-b", sig, sig.pseudonym)
    after = _decide(core, 3, T0 + 2_000_000)
    assert after > before + 0.3
    # ... while the score the node may signal from ignores the network evidence
    local_after = src.pop_local_score("t3")
    assert local_after is not None and local_after < after - 0.3
    # the signal expires after its time to live: back to the local view
    late = T0 + 2 * 3_600_000_000
    assert _decide(core, 4, late) < after - 0.3


def test_model_without_network_features_is_scored_as_before() -> None:
    model = _model(False)
    ev = NetworkEvidence("bank-a")
    sig = _card_signal(950, T0)
    ev.add("bank-b", sig, sig.pseudonym)
    plain = NodeCore(ModelScorer(model), SECRET, network_refs=_refs)
    wired = NodeCore(ModelScorer(model), SECRET, network_refs=_refs)
    src = EvidenceFeatures(lambda: ev)
    wired.network_features = src
    for i in range(3):
        assert _decide(plain, i, T0 + i) == _decide(wired, i, T0 + i)
    assert src.pop_local_score("t0") is None  # nothing noted: the decision score is local


def test_evidence_features_bounds_pending_local_scores(net_model: Any) -> None:
    src = EvidenceFeatures(lambda: None, max_pending=2)
    core = NodeCore(ModelScorer(net_model), SECRET, network_refs=_refs)
    core.network_features = src
    for i in range(4):
        _decide(core, i, T0 + i)
    assert src.local_dropped == 2
    assert src.pop_local_score("t0") is None and src.pop_local_score("t3") is not None


def test_secs_since_first_flag_and_members(net_model: Any) -> None:
    ev = NetworkEvidence("me")
    ps = b"c" * 32
    for m, at in (("m1", T0), ("m2", T0 + 60_000_000)):
        ev.add(m, Signal("card", ps, 700 if m == "m1" else 400, (), at, at + 10**10, (0, 0)), ps)
    row = network_row(ev, ps, None, T0 + 120_000_000)
    assert row[:3] == (2.0, 0.7, 120.0)
    assert row[3:] == (0.0, 0.0, SINCE_CAP_S)
