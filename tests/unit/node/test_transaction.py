from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudnet.core.ids import canonical_id, is_luhn_valid, mask_pan, pseudonym
from fraudnet.core.transaction import FDH_FIELDS, FieldMap, Normaliser, parse_record
from fraudnet.errors import ConfigError, TransactionError

GOOD = {
    "tx_id": "t-1",
    "timestamp": "2024-05-01T12:00:00Z",
    "card": "4111 1111 1111 1111",
    "terminal_id": "T1",
    "amount": "12.50",
    "currency": "EUR",
    "mcc": 5411,
    "channel": "ECOM",
    "country": "fr",
}


def test_valid_record_is_normalised() -> None:
    tx = parse_record(GOOD)
    assert tx.tx_id == "t-1"
    assert tx.card == "4111111111111111"
    assert tx.bin == "411111"
    assert tx.amount_minor == 1250 and tx.amount == 12.5
    assert tx.channel == "ecom" and tx.country == "FR" and tx.mcc == 5411
    assert tx.ts_us == 1714564800 * 1_000_000
    assert "4111111111111111" not in repr(tx)
    assert "411111******1111" in repr(tx)


def test_currency_normalisation_uses_rate_and_exponent() -> None:
    norm = Normaliser(reporting_currency="EUR", rates={"USD": 0.5, "JPY": 0.01})
    assert parse_record({**GOOD, "currency": "USD", "amount": "10.00"}, norm=norm).amount == 5.0
    jpy = parse_record({**GOOD, "currency": "JPY", "amount": "1000"}, norm=norm)
    assert jpy.amount_minor == 1000 and jpy.amount == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"tx_id": None}, "tx_id", "missing"),
        ({"tx_id": "has space"}, "tx_id", "printable"),
        ({"timestamp": "yesterday"}, "timestamp", "ISO 8601"),
        ({"timestamp": "1850-01-01T00:00:00"}, "timestamp", "outside"),
        ({"card": "4111111111111112"}, "card", "Luhn"),
        ({"card": ""}, "card", "missing"),
        ({"amount": "-1"}, "amount", "non-negative"),
        ({"amount": "1.234"}, "amount", "decimal places"),
        ({"amount": "abc"}, "amount", "decimal amount"),
        ({"currency": "euro"}, "currency", "ISO 4217"),
        ({"currency": "GBP"}, "currency", "no exchange rate"),
        ({"mcc": 123456}, "mcc", "0..9999"),
        ({"channel": "pigeon"}, "channel", "one of"),
        ({"country": "FRA"}, "country", "alpha-2"),
        ({"label": 3}, "label", "0..1"),
    ],
)
def test_each_bad_field_is_named(change: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(TransactionError) as ei:
        parse_record({**GOOD, **change})
    assert ei.value.field == field
    assert fragment in ei.value.reason
    located = ei.value.located("file.csv", "line 7")
    assert str(located).startswith("file.csv:line 7: field")


def test_not_an_object() -> None:
    with pytest.raises(TransactionError, match="expected an object"):
        parse_record(["a"])  # type: ignore[arg-type]


def test_fdh_layout() -> None:
    row = {
        "TRANSACTION_ID": "0",
        "TX_DATETIME": "2018-04-01 00:00:31",
        "CUSTOMER_ID": "596",
        "TERMINAL_ID": "3156",
        "TX_AMOUNT": "57.16",
        "TX_TIME_SECONDS": "31",
        "TX_TIME_DAYS": "0",
        "TX_FRAUD": "0",
        "TX_FRAUD_SCENARIO": "0",
    }
    tx = parse_record(row, FDH_FIELDS)
    assert (tx.tx_id, tx.card, tx.terminal_id, tx.amount_minor, tx.label) == (
        "0", "596", "3156", 5716, 0,
    )  # fmt: skip
    assert tx.bin is None


def test_field_map_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        FieldMap.from_mapping({"txid": "X"})


def test_luhn_and_masking() -> None:
    assert is_luhn_valid("4111111111111111")
    assert not is_luhn_valid("4111111111111121")
    assert mask_pan("4111-1111-1111-1111") == "411111******1111"
    assert canonical_id("card", " 4111 1111 1111 1111 ") == b"4111111111111111"


@given(st.text(min_size=1, max_size=30))
def test_pseudonym_is_keyed_and_canonical(value: str) -> None:
    a = pseudonym(b"k1", "terminal", value)
    assert a == pseudonym(b"k1", "terminal", f"  {value}  ".strip())
    assert a != pseudonym(b"k2", "terminal", value)
    assert a != pseudonym(b"k1", "merchant", value)
    assert len(a) == 32


@given(
    st.dictionaries(
        st.sampled_from([*GOOD, "x"]),
        st.one_of(
            st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40), st.booleans()
        ),
    )
)
def test_parser_never_crashes(rec: dict[str, object]) -> None:
    try:
        parse_record({**GOOD, **rec})
    except TransactionError as e:
        assert e.reason
