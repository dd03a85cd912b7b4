"""Fast paths of ingest (issue 7) give exactly the results of the reference code."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.core.ids import is_luhn_valid, pseudonym
from fraudnet.core.pipeline import DeadLetter, NodeCore
from fraudnet.core.records import REF_LEN, Pseudonymiser, to_record
from fraudnet.core.scoring import BaselineScorer
from fraudnet.core.transaction import CURRENCY_EXPONENT, Transaction, luhn_ok, parse_record
from fraudnet.errors import TransactionError

SECRET = b"k" * 32
digits = st.text(alphabet="0123456789", min_size=1, max_size=25)


@given(digits)
def test_luhn_fast_equals_reference(d: str) -> None:
    assert luhn_ok(d) == is_luhn_valid(d)


@given(
    st.sampled_from(["card", "terminal", "merchant", "device"]),
    st.one_of(digits, st.text(min_size=1, max_size=40), st.just("4111 1111-1111 1111")),
)
def test_pseudonymiser_equals_reference(kind: str, value: str) -> None:
    assert Pseudonymiser(SECRET).ref(kind, value) == pseudonym(SECRET, kind, value)[:REF_LEN]


def _tx(card: str, **kw: object) -> Transaction:
    base: dict[str, object] = dict(tx_id="t1", ts_us=1_714_564_800_000_000, card=card,
                                   terminal_id="T1", amount_minor=100, currency="EUR", amount=1.0)  # fmt: skip
    base.update(kw)
    return Transaction(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "card", ["4111111111111111", "4111111111111112", "12345", "card-7", "4111 1111 1111 1111"]
)
def test_to_record_fast_path_equals_the_per_call_secret_path(card: str) -> None:
    tx = _tx(card, merchant_id="M1", device_id="D1")
    fast, slow = to_record(tx, Pseudonymiser(SECRET)), to_record(tx, SECRET)
    assert fast == slow
    assert fast.card_ref == pseudonym(SECRET, "card", card)[:REF_LEN]
    assert fast.bin == tx.bin


def _reference_minor(raw: str, exp: int) -> int | None:
    d = Decimal(raw)
    scaled = d.scaleb(exp)
    if scaled != scaled.to_integral_value() or int(scaled) > 10**13:
        return None
    return int(scaled)


@settings(max_examples=300)
@given(
    st.from_regex(r"\A[0-9]{1,15}(\.[0-9]{0,4})?\Z"),
    st.sampled_from(sorted(CURRENCY_EXPONENT)),
)
def test_amount_fast_path_matches_decimal(raw: str, currency: str) -> None:
    rec = {"tx_id": "a1", "timestamp": 1_714_564_800, "card": "c1", "terminal_id": "T1",
           "amount": raw, "currency": currency}  # fmt: skip
    from fraudnet.core.transaction import Normaliser

    norm = Normaliser(rates={c: 1.0 for c in CURRENCY_EXPONENT})
    want = _reference_minor(raw, CURRENCY_EXPONENT[currency])
    if want is None:
        with pytest.raises(TransactionError) as e:
            parse_record(rec, norm=norm)
        assert e.value.field == "amount"
    else:
        assert parse_record(rec, norm=norm).amount_minor == want


@pytest.mark.parametrize(
    "tx_id",
    [
        "4111111111111111",
        "pay-4111111111111111-x",
        "id:4111 1111 1111 1111",
        "x4111-1111-1111-1111",
    ],
)
def test_tx_id_containing_a_card_number_is_dead_lettered_not_fatal(tx_id: str) -> None:
    core = NodeCore(BaselineScorer(), SECRET)
    rec = {"tx_id": tx_id, "timestamp": 1_714_564_800, "card": "c1", "terminal_id": "T1",
           "amount": "1.00"}  # fmt: skip
    out = core.admit_one(rec, source="test", location="m1", now_us=1)
    assert isinstance(out, DeadLetter) and out.field == "tx_id"
    assert "4111" not in out.payload  # scrubbed
    assert core.counters.dead_lettered == 1


@pytest.mark.parametrize("tx_id", ["t123x1795766804s123456", "4111111111111112x", "g000000001"])
def test_ids_with_short_or_non_luhn_digit_runs_are_accepted(tx_id: str) -> None:
    rec = {"tx_id": tx_id, "timestamp": 1_714_564_800, "card": "c1", "terminal_id": "T1",
           "amount": "1.00"}  # fmt: skip
    assert parse_record(rec).tx_id == tx_id


@pytest.mark.parametrize("v", [" c1", "c1 ", "\tc1"])
def test_identifier_whitespace_is_still_stripped(v: str) -> None:
    rec = {"tx_id": "a", "timestamp": 1_714_564_800, "card": v, "terminal_id": v, "amount": "1"}
    tx = parse_record(rec)
    assert tx.card == "c1" and tx.terminal_id == "c1"
