"""Review queue store: idempotent enqueue, resolve -> label outbox -> sink, bounds, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from policy_helpers import HEADER, batch, rule, velocity

from fraudnet.adapters.storage.review import (
    ReviewItem,
    jsonl_label_sink,
    open_review_queue,
    review_items,
)
from fraudnet.core.policy import PolicyEngine, PolicyHolder, load_bundle
from fraudnet.core.records import TxRecord
from fraudnet.errors import InputError


def item(tx: str, card: bytes = b"c" * 16, ts: int = 1) -> ReviewItem:
    return ReviewItem(
        tx_id=tx, ts_us=ts, card_ref=card, terminal_ref=b"t" * 16, amount=12.5, score=0.4,
        action="review", reasons=("rule:r@v1: r fired", "AMOUNT_HIGH"), policy_id="p@1#ab",
        history={"velocity.c": 3.0},
    )  # fmt: skip


def test_enqueue_is_idempotent_and_resolve_emits_one_label(tmp_path: Path) -> None:
    with open_review_queue(tmp_path) as q:
        assert q.enqueue_many([item("a"), item("b", ts=2)], now_us=10) == 2
        assert q.enqueue_many([item("a")], now_us=11) == 0  # replayed batch
        assert [i.tx_id for i in q.items()] == ["a", "b"]
        got = q.get("a")
        assert got.reasons == ("rule:r@v1: r fired", "AMOUNT_HIGH")
        assert got.history == {"velocity.c": 3.0}
        assert [o.tx_id for o in q.card_history(b"c" * 16, exclude="a")] == ["b"]
        q.resolve("a", "fraud", analyst="ann", note="confirmed by phone", now_us=20)
        with pytest.raises(InputError, match="already resolved"):
            q.resolve("a", "genuine", analyst="bob", note="", now_us=21)
        with pytest.raises(InputError, match="no review item"):
            q.resolve("zzz", "fraud", analyst="bob", note="", now_us=21)
        with pytest.raises(InputError, match="fraud or genuine"):
            q.resolve("b", "maybe", analyst="bob", note="", now_us=21)
        assert q.counts()["labels_pending"] == 1
        out = tmp_path / "labels" / "l.jsonl"
        assert q.flush_labels(jsonl_label_sink(out)) == 1
        assert q.flush_labels(jsonl_label_sink(out)) == 0  # delivered once
        c = q.counts()
        assert (c["open"], c["fraud"], c["labels_pending"]) == (1, 1, 0)
    labels = [json.loads(line) for line in out.read_text().splitlines()]
    assert labels == [{"tx_id": "a", "kind": "fraud", "event_time_us": 20}]


def test_label_survives_a_failed_sink(tmp_path: Path) -> None:
    with open_review_queue(tmp_path) as q:
        q.enqueue_many([item("a")], now_us=1)
        q.resolve("a", "genuine", analyst="x", note="", now_us=2)

        def broken(_labels: object) -> None:
            raise OSError("disk full")

        with pytest.raises(OSError):
            q.flush_labels(broken)
        assert q.counts()["labels_pending"] == 1
        got: list[dict[str, object]] = []
        assert q.flush_labels(got.extend) == 1
        assert got[0]["kind"] == "genuine"


def test_queue_bound_refuses_and_counts(tmp_path: Path) -> None:
    with open_review_queue(tmp_path, max_open=2) as q:
        assert q.enqueue_many([item("a"), item("b"), item("c")], now_us=1) == 2
        assert q.counts()["refused_full"] == 1


def test_corrupt_or_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with (
        pytest.raises(InputError, match="no review queue"),
        open_review_queue(tmp_path, create=False),
    ):
        pass
    (tmp_path / "review.sqlite").write_bytes(b"this is not sqlite" * 100)
    with (
        pytest.raises(InputError, match="not a review queue database"),
        open_review_queue(tmp_path),
    ):
        pass


def test_review_items_from_an_engine_result(tmp_path: Path) -> None:
    text = (
        HEADER
        + velocity("c", "card", "count", "1h", "1m")
        + rule("burst", "review", "velocity.c >= 2")
        + rule("big", "step_up", "amount > 100")
    )
    eng = PolicyEngine(PolicyHolder(load_bundle(text.encode(), "t"), now_us=0))
    recs = [
        TxRecord(f"t{i}", 1_700_000_000_000_000 + i, bytes([k]) * 16, b"T" * 16, a, int(a * 100), "EUR")
        for i, (k, a) in enumerate([(1, 5.0), (1, 5.0), (2, 500.0), (3, 5.0)])
    ]  # fmt: skip
    inp = batch(
        4,
        ts_s=np.array([r.ts_us / 1e6 for r in recs]),
        amount=np.array([r.amount for r in recs]),
        card_key=np.array([1, 1, 2, 3], np.uint64),
    )
    res = eng.evaluate_many([r.tx_id for r in recs], inp, 1.7e9)
    reasons = res.live.reasons_many([("M",)] * 4)
    items = review_items(recs, reasons, res, inp)
    assert [(i.tx_id, i.action) for i in items] == [("t1", "review"), ("t2", "step_up")]
    assert items[0].history == {"velocity.c": 2.0}
    assert items[0].reasons == ("rule:burst@v1: burst fired", "M")
    with open_review_queue(tmp_path) as q:
        assert q.enqueue_many(items, now_us=5) == 2
