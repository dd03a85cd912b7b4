"""Evaluation order, each action, reason codes, segments, lists with expiry."""

from __future__ import annotations

import numpy as np
import pytest
from policy_helpers import HEADER, batch, card_list, ref_of, rule, segment, velocity

from fraudnet.core.policy import Policy, PolicyEngine, PolicyHolder, load_bundle, outcome_of
from fraudnet.core.policy.inputs import encode_letters
from fraudnet.errors import PolicyError


def evaluate(text: str, inp, now: float = 1.7e9):  # type: ignore[no-untyped-def]
    holder = PolicyHolder(load_bundle(text.encode(), "t.toml"), now_us=0)
    return PolicyEngine(holder).evaluate_many([str(i) for i in range(len(inp))], inp, now).live


def actions(res) -> list[str]:  # type: ignore[no-untyped-def]
    return [res.action(i) for i in range(len(res))]


def test_each_action_and_default() -> None:
    text = (
        HEADER
        + rule("a", "allow", "amount == 1")
        + rule("r", "review", "amount == 2")
        + rule("s", "step_up", "amount == 3")
        + rule("b", "block", "amount == 4")
    )
    res = evaluate(text, batch(5, amount=np.array([1.0, 2, 3, 4, 5])))
    assert actions(res) == ["allow", "review", "step_up", "block", "allow"]
    assert [outcome_of(int(c)) for c in res.codes] == [
        "allow",
        "review",
        "review",
        "block",
        "allow",
    ]
    reasons = res.reasons_many([("M",)] * 5)
    assert reasons[0] == ("rule:a@v1: a fired", "M")
    assert reasons[2] == ("action:step_up", "rule:s@v1: s fired", "M")
    assert reasons[4] == ("M",)


def test_fixed_order_allow_then_block_then_step_up_then_review() -> None:
    # every rule matches every transaction: the stage order decides, not the bundle order
    text = (
        HEADER
        + rule("r", "review", "amount > 0")
        + rule("s", "step_up", "amount > 0")
        + rule("b", "block", "amount > 0")
        + rule("a", "allow", "amount > 5")
    )
    res = evaluate(text, batch(2, amount=np.array([1.0, 10.0])))
    assert actions(res) == ["block", "allow"]
    text2 = HEADER + rule("r", "review", "amount > 0") + rule("s", "step_up", "amount > 0")
    assert actions(evaluate(text2, batch(1))) == ["step_up"]


def test_allow_list_beats_block_rule_and_deny_list_blocks() -> None:
    text = (
        HEADER
        + rule("b", "block", "amount > 100")
        + card_list("vip", "allow", [(ref_of(1), "")])
        + card_list("stolen", "deny", [(ref_of(2), "")])
    )
    inp = batch(3, amount=np.array([500.0, 5.0, 5.0]), card_key=np.array([1, 2, 3], np.uint64))
    res = evaluate(text, inp)
    assert actions(res) == ["allow", "block", "allow"]
    rs = res.reasons_many([()] * 3)
    assert rs[0] == ("list:vip",)
    assert rs[1] == ("list:stolen",)
    assert rs[2] == ()


def test_list_expiry_uses_now() -> None:
    text = HEADER + card_list("stolen", "deny", [(ref_of(1), "2024-01-01T00:00:00Z")])
    inp = batch(1, card_key=np.array([1], np.uint64))
    assert actions(evaluate(text, inp, now=1.70e9)) == ["block"]  # 2023-11
    assert actions(evaluate(text, inp, now=1.71e9)) == ["allow"]  # 2024-03


def test_country_and_bin_lists_and_in_list_condition() -> None:
    text = (
        HEADER
        + card_list("sanctioned", "deny", [("KP", "")], kind="country")
        + card_list("watch_bins", "none", [("499900", "")], kind="bin")
        + rule("w", "review", 'in_list("watch_bins") and amount > 50')
    )
    from fraudnet.core.policy.inputs import encode_bin

    inp = batch(
        3,
        amount=np.array([100.0, 100.0, 10.0]),
        country=np.array([encode_letters("KP"), encode_letters("FR"), encode_letters("FR")]),
        bin=np.array([0, encode_bin("499900"), encode_bin("499900")]),
    )
    assert actions(evaluate(text, inp)) == ["block", "review", "allow"]


def test_score_thresholds_and_segments_first_match() -> None:
    text = (
        HEADER
        + "\n[thresholds]\nreview_at = 0.5\nblock_at = 0.9\n"
        + segment("ecom", 'channel == "ecom"', 0.2, 0.6)
        + segment("ecom_or_fr", 'channel == "ecom" or country == "FR"', 0.1, 0.15)
        + rule("r", "review", "amount > 1000")
    )
    fr, de = encode_letters("FR"), encode_letters("DE")
    inp = batch(
        5,
        score=np.array([0.3, 0.7, 0.3, 0.12, 0.95]),
        channel=np.array([1, 1, 0, 0, 0]),  # ecom, ecom, pos, pos, pos
        country=np.array([de, de, de, fr, de]),
        amount=np.array([10.0, 10, 10, 10, 5000]),
    )
    res = evaluate(text, inp)
    assert actions(res) == ["review", "block", "allow", "review", "block"]
    assert res.segment.tolist() == [0, 0, -1, 1, -1]
    rs = res.reasons_many([()] * 5)
    assert rs[0] == ("threshold:ecom",)
    assert rs[3] == ("threshold:ecom_or_fr",)
    # score block outranks a review rule
    assert rs[4] == ("threshold:default",)


def test_reasons_list_all_matching_rules_of_the_stage_decisive_first() -> None:
    text = (
        HEADER
        + rule("b1", "block", "amount > 100", version=2, desc="over 100")
        + rule("r1", "review", "amount > 0")
        + rule("b2", "block", "amount > 50", version=7, desc="over 50")
    )
    res = evaluate(text, batch(2, amount=np.array([500.0, 60.0])))
    rs = res.reasons_many([("MODEL",)] * 2)
    assert rs[0] == ("rule:b1@v2: over 100", "rule:b2@v7: over 50", "MODEL")
    assert rs[1] == ("rule:b2@v7: over 50", "MODEL")
    assert res.rule_hits.sum(axis=1).tolist() == [1, 2, 2]


def test_disabled_rule_never_fires() -> None:
    text = HEADER + rule("b", "block", "amount > 0").replace("when =", "enabled = false\nwhen =")
    assert actions(evaluate(text, batch(2))) == ["allow", "allow"]


def test_missing_values_never_fire() -> None:
    text = (
        HEADER
        + velocity("m", "merchant", "count", "1h")
        + rule("r", "review", "velocity.m >= 1 or velocity.m != 5")
        + rule("mcc", "block", "mcc != 5411")
    )
    res = evaluate(text, batch(2))  # no merchant, no mcc
    assert actions(res) == ["allow", "allow"]


def test_hour_weekday_arithmetic() -> None:
    # 2023-11-14 22:13:20 UTC is a Tuesday (weekday 1)
    text = HEADER + rule("n", "review", "hour == 22 and weekday == 1 and amount / 2 - 1 >= 4")
    assert actions(evaluate(text, batch(2, t0=1.7e9, amount=np.array([10.0, 9.0])))) == [
        "review",
        "allow",
    ]


def test_features_are_required_when_read() -> None:
    text = HEADER + rule("f", "review", "feature.CARD_NB_TX_1DAY > 3")
    with pytest.raises(PolicyError, match="no features"):
        evaluate(text, batch(2))
    from fraudnet.core.features import FEATURE_NAMES

    x = np.zeros((2, len(FEATURE_NAMES)))
    x[1, FEATURE_NAMES.index("CARD_NB_TX_1DAY")] = 4
    assert actions(evaluate(text, batch(2, features=x))) == ["allow", "review"]


def test_velocity_rule_counts_the_card_window() -> None:
    text = (
        HEADER + velocity("c", "card", "count", "1h", "1m") + rule("v", "block", "velocity.c >= 3")
    )
    inp = batch(4, card_key=np.array([9, 9, 9, 8], np.uint64))
    assert actions(evaluate(text, inp)) == ["allow", "allow", "block", "allow"]


def test_policy_is_reusable_and_pure() -> None:
    text = HEADER + rule("b", "block", "amount > 5")
    p = Policy(load_bundle(text.encode(), "t.toml"))
    inp = batch(3, amount=np.array([1.0, 10.0, 3.0]))
    a = p.evaluate_many(inp, {}, 0.0)
    b = p.evaluate_many(inp, {}, 0.0)
    assert a.codes.tolist() == b.codes.tolist() == [0, 3, 0]


def test_input_from_node_records() -> None:
    from fraudnet.core.policy import PolicyInput
    from fraudnet.core.records import to_record
    from fraudnet.core.transaction import parse_record

    secret = b"k" * 32
    raws = [
        {"tx_id": "a", "timestamp": "2024-04-01T12:00:00Z", "card": "4999000000000005",
         "terminal_id": "T1", "merchant_id": "M1", "amount": "250.00", "currency": "EUR",
         "mcc": 5411, "channel": "ecom", "country": "FR"},
        {"tx_id": "b", "timestamp": "2024-04-01T12:00:05Z", "card": "4999000000000005",
         "terminal_id": "T2", "amount": "5.00", "currency": "EUR"},
    ]  # fmt: skip
    recs = [to_record(parse_record(r), secret) for r in raws]
    inp = PolicyInput.from_records(recs, np.array([0.1, 0.2]))
    assert inp.channel.tolist() == [1, -1] and inp.mcc.tolist() == [5411, -1]
    assert inp.has_merchant.tolist() == [True, False]
    assert inp.card_key[0] == inp.card_key[1]
    text = (
        HEADER
        + velocity("c", "card", "count", "1h", "1m")
        + rule("fr_ecom_big", "block", 'country == "FR" and channel == "ecom" and amount > 200')
        + rule("second", "review", "velocity.c >= 2 and not has('merchant')")
    )
    assert actions(evaluate(text, inp)) == ["block", "review"]
