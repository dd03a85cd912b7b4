"""NodeCore's decision order: model score -> risk policy -> network verdict (never lowering)."""

from __future__ import annotations

from fraudnet.core.ids import pseudonym
from fraudnet.core.pipeline import NodeCore
from fraudnet.core.policy.bundle import load_bundle
from fraudnet.core.policy.holder import PolicyEngine, PolicyHolder
from fraudnet.core.records import REF_LEN, TxRecord
from fraudnet.core.scoring import BaselineScorer

SECRET = b"k" * 32
ALLOWED_CARD = "card-vip"
ALLOWED_REF = pseudonym(SECRET, "card", ALLOWED_CARD)[:REF_LEN].hex()

BUNDLE = f"""
[policy]
name = "t"
version = 3
description = "test"

[thresholds]
review_at = 0.5
block_at = 0.9

[[lists]]
id = "vip"
kind = "card"
action = "allow"
description = "trusted cards"

[[lists.entries]]
ref = "{ALLOWED_REF}"

[[rules]]
id = "big"
version = 2
description = "Amount above 500"
action = "block"
when = "amount > 500"
""".encode()


def _core(verdict_cards: dict[str, str]) -> NodeCore:
    engine = PolicyEngine(PolicyHolder(load_bundle(BUNDLE, "t.toml"), now_us=0))

    def verdicts(rec: TxRecord, now_us: int) -> tuple[str, int | None, int | None] | None:
        level = verdict_cards.get(rec.card_ref.hex())
        return None if level is None else (level, 7, now_us + 10_000_000)

    return NodeCore(BaselineScorer(), SECRET, policy=engine, verdicts=verdicts)


def _tx(core: NodeCore, tx_id: str, card: str, amount: str) -> TxRecord:
    rec = core.admit_one(
        {"tx_id": tx_id, "timestamp": 1714564800, "card": card, "terminal_id": "T1",
         "amount": amount},
        source="t", location=tx_id, now_us=1,
    )  # fmt: skip
    assert isinstance(rec, TxRecord)
    return rec


def test_policy_then_verdicts() -> None:
    ref = lambda card: pseudonym(SECRET, "card", card)[:REF_LEN].hex()  # noqa: E731
    core = _core(
        {ref("c-blocked"): "block", ref("c-stepup"): "step-up", ref(ALLOWED_CARD): "block"}
    )
    recs = [
        _tx(core, "a", "c-plain", "10.00"),
        _tx(core, "b", "c-plain", "600.00"),
        _tx(core, "c", "c-blocked", "10.00"),
        _tx(core, "d", "c-stepup", "10.00"),
        _tx(core, "e", ALLOWED_CARD, "600.00"),
    ]
    ds = {d.tx_id: d for d in core.decide_many(recs, [1] * 5, now_us=2)}
    assert ds["a"].outcome == "allow"
    assert ds["b"].outcome == "block" and ds["b"].reasons[0].startswith("rule:big@v2")
    assert ds["c"].outcome == "block" and "network_verdict_block" in ds["c"].reasons
    assert ds["d"].outcome == "review" and "network_verdict_step_up" in ds["d"].reasons
    # the allow list wins over both the block rule and a block verdict
    assert ds["e"].outcome == "allow" and ds["e"].reasons[0] == "list:vip"
    assert core.counters.outcomes["block"] == 2
