"""Fuzz the transaction readers: records, CSV and JSON Lines files, Kafka values, batch codecs.

Oracle: every input ends in a valid :class:`Transaction` (or batch) or a
``fraudnet.errors`` error (:class:`TransactionError` / :class:`InputError`).
A file reader may also yield an :class:`Unreadable` line, which the node
dead-letters. ``decode_value`` documents :class:`ValueError` as its error (its
caller, the ingest service, turns it into a :class:`TransactionError`), so
the Kafka target wraps it exactly as the service does.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import fuzz_modes, mutate_bytes, mutate_value, pack, run_target, scratch_dir
from hypothesis import strategies as st

from fraudnet.adapters.http.api import _split_records
from fraudnet.adapters.sources import Unreadable, read_records
from fraudnet.adapters.stream.ingest import MAX_VALUE_BYTES, decode_value
from fraudnet.core.records import (
    Decision,
    decode_decisions,
    decode_tx_batch,
    encode_decisions,
    encode_tx_batch,
    to_record,
)
from fraudnet.core.transaction import Transaction, parse_record
from fraudnet.errors import InputError, TransactionError
from fraudnet.training.data import load_csv

RECORDS: list[dict[str, Any]] = [
    {"tx_id": "t-1", "timestamp": "2024-03-01T12:00:00Z", "card": "4111111111111111",
     "terminal_id": "T9", "amount": "12.50", "currency": "EUR", "merchant_id": "m1",
     "mcc": "5411", "channel": "ecom", "country": "DE", "device_id": "d1",
     "ip": "10.0.0.1", "label": 0},
    {"tx_id": "t-2", "timestamp": 1_709_294_400, "card": "5500005555555559",
     "terminal_id": "T10", "amount_minor": 1999, "currency": "EUR", "label": "1"},
    {"tx_id": "x", "timestamp": 1_709_294_400.25, "card": "cust-77", "terminal_id": "t",
     "amount": 0.01},
]  # fmt: skip
FDH_ROWS = [
    {"TRANSACTION_ID": "0", "TX_DATETIME": "2018-04-01 00:00:31", "CUSTOMER_ID": "596",
     "TERMINAL_ID": "3156", "TX_AMOUNT": "57.16", "TX_FRAUD": "0"},
]  # fmt: skip
WEIRD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", " ", "NaN", "inf", "-0", "1e309", "9" * 5000, "4111111111111111",
                     "2024-02-30T25:61:00", "0x10", "1_000", "١٢٣", "\x00", "é" * 300]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip


@st.composite
def records(draw: st.DrawFn) -> Any:
    """A valid record with fields replaced, removed or added; sometimes not a dict at all."""
    rec = dict(draw(st.sampled_from(RECORDS)))
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from([*RECORDS[0], "extra", ""]))
        if draw(st.integers(0, 4)) == 0:
            rec.pop(key, None)
        else:
            rec[key] = draw(WEIRD_VALUES)
    if draw(st.integers(0, 30)) == 0:
        return draw(WEIRD_VALUES)
    return rec


def _check_record(rec: Any) -> None:
    tx = parse_record(rec)
    assert isinstance(tx, Transaction)
    assert tx.amount >= 0 and tx.ts_us >= 0
    to_record(tx, b"s" * 32)  # a valid transaction must pseudonymise


# -- files ---------------------------------------------------------------------

_DIR = scratch_dir("fraudnet-fuzz-")


def _csv_text(rows: list[dict[str, Any]]) -> bytes:
    cols = list(RECORDS[0])
    lines = [",".join(cols)] + [",".join(str(r.get(c, "")) for c in cols) for r in rows]
    return ("\n".join(lines) + "\n").encode()


CSV_SEEDS = [_csv_text(RECORDS), _csv_text(RECORDS[:1]), b'tx_id,card\n"a,b",1\n"unterminated\n']
JSONL_SEEDS = [
    b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS),
    json.dumps(RECORDS[0]).encode() + b'\n\n[1,2]\n"x"\n',
]
JSONL_MAGIC = (b"[" * 5000, b"{\"a\":" * 3000, b"9" * 5000, b"1e999999", b"\"\\ud800\"", b"\x00",
               b"\xff\xfe", b"NaN", b"-Infinity", b"\n" * 10, b"\"" + b"a" * 70_000 + b"\"")  # fmt: skip


@st.composite
def files(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    fmt = draw(st.sampled_from(["csv", "jsonl"]))
    seeds = CSV_SEEDS if fmt == "csv" else JSONL_SEEDS
    data = draw(mutate_bytes(seeds, magic=JSONL_MAGIC if fmt == "jsonl" else (b",", b'"', b"\r",
                                                                             b"\x00", b"\n" * 3)))  # fmt: skip
    return fmt, data, draw(st.integers(0, 5)) == 0


def _check_file(case: tuple[str, bytes, bool]) -> None:
    fmt, data, gz = case
    path = _DIR / (f"in.{fmt}.gz" if gz else f"in.{fmt}")
    path.write_bytes(gzip.compress(data, mtime=0)[: None if len(data) % 7 else -3] if gz else data)
    for loc, rec, _raw in read_records(path):
        assert loc.startswith("line ")
        if isinstance(rec, Unreadable):
            assert rec.reason
            continue
        with contextlib.suppress(TransactionError):
            parse_record(rec)


def _check_fdh_csv(data: bytes) -> None:
    path = _DIR / "fdh.csv"
    path.write_bytes(data)
    table = load_csv(path)
    assert len(table) > 0


FDH_SEEDS = [
    b"TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,TX_TIME_DAYS,"
    b"TX_FRAUD,TX_FRAUD_SCENARIO\n0,2018-04-01 00:00:31,596,3156,57.16,31,0,0,0\n"
    b"1,2018-04-01 00:02:10,4961,3412,81.51,130,0,0,0\n",
    b"TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n"
    b"7,2018-04-02 10:00:00,1,2,3.5,1\n",
]

# -- Kafka values and internal batches ------------------------------------------

KAFKA_SEEDS_JSON = [json.dumps(r).encode() for r in RECORDS]
KAFKA_SEEDS_MSGPACK = [pack(r) for r in RECORDS]


@st.composite
def kafka_values(draw: st.DrawFn) -> tuple[str, bytes | None]:
    fmt = draw(st.sampled_from(["json", "msgpack"]))
    if draw(st.integers(0, 40)) == 0:
        return fmt, draw(st.sampled_from([None, b"", b"\x00" * (MAX_VALUE_BYTES + 1)]))
    if fmt == "json":
        return fmt, draw(mutate_bytes(KAFKA_SEEDS_JSON, magic=JSONL_MAGIC))
    if draw(st.booleans()):
        return fmt, pack(draw(records()))
    return fmt, draw(mutate_bytes(KAFKA_SEEDS_MSGPACK))


def _check_kafka(case: tuple[str, bytes | None]) -> None:
    fmt, value = case
    try:
        obj = decode_value(value, fmt)
    except ValueError as e:  # the ingest service's own wrapping (adapters/stream/ingest.py)
        raise TransactionError(str(e), source="topic", location="partition 0 offset 0") from None
    parse_record(obj)


_TXS = [parse_record(r) for r in RECORDS]
_RECS = [to_record(tx, b"k" * 32) for tx in _TXS]
BATCH_SEEDS = [encode_tx_batch(_RECS, [1, 2, 3], "b1"), encode_tx_batch(_RECS[:1], [9], "")]
DECISIONS = [Decision("t-1", b"\x01" * 16, "review", 0.5, ("velocity",), "m", 1, 2, 3, None)]
DECISION_SEEDS = [encode_decisions(DECISIONS), encode_decisions(DECISIONS * 3)]


def _unpacked(seeds: list[bytes]) -> list[Any]:
    import msgpack

    return [msgpack.unpackb(s, raw=False) for s in seeds]


def _check_batch(data: bytes) -> None:
    recs, arrivals, batch_id = decode_tx_batch(data)
    assert len(recs) == len(arrivals) and isinstance(batch_id, str)


def _check_decisions(data: bytes) -> None:
    for d in decode_decisions(data):
        assert isinstance(d, Decision)


HTTP_SEEDS = [json.dumps(RECORDS).encode(), JSONL_SEEDS[0], JSONL_SEEDS[1]]


def _check_http_body(body: bytes) -> None:
    try:
        items = _split_records(body)
    except ValueError as e:  # the API's own wrapping: 400 with this message
        raise InputError(f"400: {e}") from None
    for _loc, obj, _raw in items:
        with contextlib.suppress(TransactionError):
            parse_record(obj)


# -- the targets -----------------------------------------------------------------


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_parse_record(mode: str) -> None:
    run_target("parse_record", mode, records(), _check_record, (TransactionError,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_csv_and_jsonl_readers(mode: str) -> None:
    run_target("csv_jsonl_files", mode, files(), _check_file, (InputError,))


@pytest.mark.filterwarnings("ignore::UserWarning")  # numpy: "input contained no data"
@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_fdh_csv_loader(mode: str) -> None:
    run_target("fdh_csv", mode, mutate_bytes(FDH_SEEDS, magic=(b",", b"\n", b"nan", b"-1", b"1e400", b"\x00")),
               _check_fdh_csv, (InputError,))  # fmt: skip


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_kafka_values(mode: str) -> None:
    run_target("kafka_value", mode, kafka_values(), _check_kafka, (TransactionError,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_internal_batch_codecs(mode: str) -> None:
    cases = st.one_of(
        mutate_bytes(BATCH_SEEDS).map(lambda b: (0, b)),
        mutate_value(_unpacked(BATCH_SEEDS)).map(lambda v: (0, pack(v))),
        mutate_bytes(DECISION_SEEDS).map(lambda b: (1, b)),
        mutate_value(_unpacked(DECISION_SEEDS)).map(lambda v: (1, pack(v))),
    )

    def check(case: tuple[int, bytes]) -> None:
        (_check_batch if case[0] == 0 else _check_decisions)(case[1])

    run_target("tx_batch_codecs", mode, cases, check, (InputError,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_http_ingest_bodies(mode: str) -> None:
    cases = mutate_bytes(HTTP_SEEDS, magic=JSONL_MAGIC)
    run_target("http_body", mode, cases, _check_http_body, (InputError,))


def test_deeply_nested_and_huge_number_json_lines_are_unreadable_not_crashes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"[" * 50_000 + b"\n" + b"9" * 5000 + b"\n" + json.dumps(RECORDS[0]).encode())
    out = list(read_records(path))
    assert [type(r) for _, r, _ in out] == [Unreadable, Unreadable, dict]
    assert "JSON" in out[0][1].reason and "JSON" in out[1][1].reason


@pytest.mark.parametrize("value", [b"[" * 50_000, b"9" * 5000])
def test_kafka_json_value_too_deep_or_too_long_a_number_is_a_value_error(value: bytes) -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        decode_value(value, "json")


@pytest.mark.parametrize("arrival", [None, "x", [1]])
def test_batch_with_a_non_integer_arrival_time_is_an_input_error(arrival: Any) -> None:
    import msgpack

    batch = msgpack.unpackb(encode_tx_batch(_RECS[:1], [1]), raw=False)
    batch[2] = [arrival]
    with pytest.raises(InputError, match="tx batch"):
        decode_tx_batch(pack(batch))


def test_http_body_too_deep_is_a_400_and_a_too_deep_line_is_dead_lettered() -> None:
    with pytest.raises(ValueError, match="not a valid JSON array"):
        _split_records(b"[" * 50_000)  # the API answers 400 with this message
    items = _split_records(b"{" + b'"a":{' * 30_000 + b"\n" + json.dumps(RECORDS[0]).encode())
    assert "not valid JSON" in items[0][1].reason and items[1][1]["tx_id"] == "t-1"


@pytest.mark.parametrize(
    ("amount", "why"),
    [("12.1e99999950", "too large"), ("1e-99999999", "decimal places"), ("1e20", "too large")],
)
def test_amounts_with_extreme_exponents_are_transaction_errors(amount: str, why: str) -> None:
    # found by the long pass: Decimal.scaleb overflowed (decimal.Overflow, an HTTP 500)
    raw = {"tx_id": "t", "timestamp": "2024-03-01T12:00:00Z", "card": "4111111111111111",
           "terminal_id": "T", "amount": amount, "currency": "EUR"}  # fmt: skip
    with pytest.raises(TransactionError, match=why):
        parse_record(raw)


def test_decision_record_with_an_infinite_time_is_an_input_error() -> None:
    # found by the long pass: int(inf) raised OverflowError out of decode_decisions
    d = {"tx_id": "t-1", "card": "01" * 16, "outcome": "review", "score": 0.5,
         "reasons": ["velocity"], "model_id": "m", "ts_us": float("inf"),
         "decided_at_us": 2, "latency_us": 3, "label": None}  # fmt: skip
    with pytest.raises(InputError, match="decision record"):
        decode_decisions(pack([d]))
