from __future__ import annotations

from fraudnet.core.pipeline import DeadLetter, NodeCore, scrub
from fraudnet.core.records import (
    Decision,
    TxRecord,
    decode_decisions,
    decode_tx_batch,
    encode_decisions,
    encode_tx_batch,
)
from fraudnet.core.scoring import BaselineScorer, Thresholds
from fraudnet.replay.generator import GeneratorConfig, generate

SECRET = b"s" * 32


def _core() -> NodeCore:
    from fraudnet.core.transaction import Normaliser

    return NodeCore(
        BaselineScorer(), SECRET, thresholds=Thresholds(0.5, 0.9),
        normaliser=Normaliser(rates={"USD": 0.9}),
    )  # fmt: skip


def test_records_carry_no_card_number_and_round_trip() -> None:
    core = _core()
    recs = [r for r in generate(GeneratorConfig(customers=50, terminals=80, days=3), limit=200)]
    admitted = [
        core.admit_one(r, source="gen", location=str(i), now_us=1) for i, r in enumerate(recs)
    ]
    txs = [a for a in admitted if isinstance(a, TxRecord)]
    assert len(txs) == 200
    blob = encode_tx_batch(txs, [1] * len(txs), "b1")
    for r in recs:
        assert r["card"].encode() not in blob
    back, arrivals, bid = decode_tx_batch(blob)
    assert back == txs and arrivals == [1] * 200 and bid == "b1"


def test_counts_reconcile_and_decisions_are_complete() -> None:
    core = _core()
    recs = list(generate(GeneratorConfig(customers=50, terminals=80, days=3), limit=300))
    recs[5] = {**recs[5], "amount": "oops"}
    recs[9] = {"tx_id": "x"}
    good: list[TxRecord] = []
    dead: list[DeadLetter] = []
    for i, r in enumerate(recs):
        a = core.admit_one(r, source="gen", location=f"record {i}", now_us=10, payload=str(r))
        (dead if isinstance(a, DeadLetter) else good).append(a)  # type: ignore[arg-type]
    decisions = core.decide_many(good, [10] * len(good), now_us=15)
    core.note_duplicates(0)
    assert len(decisions) == 298 and len(dead) == 2
    assert core.counters.reconciles()
    assert {d.tx_id for d in decisions} == {g.tx_id for g in good}
    assert dead[0].field == "amount" and dead[0].location == "record 5"
    assert all(d.latency_us == 5 for d in decisions)
    assert all(d.outcome in ("allow", "review", "block") and d.reasons for d in decisions)
    blocked = [d for d in decisions if d.outcome == "block"]
    assert all("AMOUNT_ABOVE_LIMIT" in d.reasons for d in blocked)


def test_dead_letter_payload_is_scrubbed() -> None:
    core = _core()
    raw = {"tx_id": "a", "card": "4111111111111111", "amount": "x"}
    dl = core.admit_one(raw, source="s", location="l", now_us=0, payload=str(raw))
    assert isinstance(dl, DeadLetter)
    assert "4111111111111111" not in dl.payload
    assert scrub("pan 4111-1111-1111-1111 end") == "pan ################### end"


def test_decisions_codec_round_trip() -> None:
    d = Decision("t", b"\x01" * 16, "review", 0.6, ("A", "B"), "m", 1, 2, 3, None)
    assert decode_decisions(encode_decisions([d, d])) == [d, d]


def test_thresholds() -> None:
    th = Thresholds(0.3, 0.8)
    assert [th.outcome(x) for x in (0.0, 0.3, 0.79, 0.8, 1.0)] == [
        "allow", "review", "review", "block", "block",
    ]  # fmt: skip
