"""Columnar tx-batch messages (version 2): round trip, version 1 still read, hostile bytes."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.core.records import REF_LEN, TxRecord, decode_tx_batch, encode_tx_batch
from fraudnet.errors import InputError

_ref = st.binary(min_size=REF_LEN, max_size=REF_LEN)
_opt_str = st.one_of(st.none(), st.text(max_size=8))


@st.composite
def records(draw: st.DrawFn) -> TxRecord:
    return TxRecord(
        tx_id=draw(st.text(max_size=20)),
        ts_us=draw(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        card_ref=draw(_ref),
        terminal_ref=draw(_ref),
        amount=draw(st.floats(allow_nan=False)),
        amount_minor=draw(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        currency=draw(st.text(min_size=1, max_size=3)),
        bin=draw(_opt_str),
        merchant_ref=draw(st.one_of(st.none(), _ref)),
        device_ref=draw(st.one_of(st.none(), _ref)),
        mcc=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=9999))),
        channel=draw(_opt_str),
        country=draw(_opt_str),
        label=draw(st.one_of(st.none(), st.sampled_from([0, 1]))),
        net_refs=tuple(draw(st.lists(st.tuples(st.integers(0, 2**32), _ref, _ref), max_size=2))),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), max_size=20), st.text(max_size=10))
def test_round_trip_is_exact(recs: list[TxRecord], batch_id: str) -> None:
    arrivals = list(range(len(recs)))
    blob = encode_tx_batch(recs, arrivals, batch_id)
    assert msgpack.unpackb(blob, raw=False)[0] == 2  # columnar
    assert decode_tx_batch(blob) == (recs, arrivals, batch_id)


def test_version_1_messages_still_decode_and_odd_batches_are_written_as_version_1() -> None:
    r = TxRecord("t1", 5, b"c" * 16, b"t" * 16, 1.5, 150, "EUR", mcc=5411, label=1)
    v1 = msgpack.packb([1, [r.to_wire()], [7], "b"], use_bin_type=True)
    assert decode_tx_batch(v1) == ([r], [7], "b")
    odd = TxRecord("t2", 5, b"short", b"t" * 16, 1.0, 100, "EUR")  # not REF_LEN: no column
    blob = encode_tx_batch([odd], [1])
    assert msgpack.unpackb(blob, raw=False)[0] == 1
    assert decode_tx_batch(blob) == ([odd], [1], "")


def _mutations() -> st.SearchStrategy[Any]:
    i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what msgpack can carry
    junk = st.one_of(st.none(), i64, st.text(max_size=4), st.binary(max_size=40),
                     st.lists(i64, max_size=3), st.floats())  # fmt: skip
    return st.tuples(st.integers(min_value=0, max_value=15), junk)


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), min_size=1, max_size=5), st.lists(_mutations(), min_size=1, max_size=3))
def test_hostile_columns_are_input_errors(recs: list[TxRecord], muts: list[Any]) -> None:
    obj = msgpack.unpackb(encode_tx_batch(recs, [1] * len(recs)), raw=False)
    for i, junk in muts:
        if i < 15:
            obj[1][i] = junk
        else:
            obj[2] = junk
    try:
        back, arrivals, _ = decode_tx_batch(msgpack.packb(obj, use_bin_type=True))
    except InputError as e:
        assert "tx batch" in str(e)
    else:
        assert len(back) == len(arrivals)


@pytest.mark.parametrize("n", [0, 1, 300])
def test_sizes(n: int) -> None:
    recs = [TxRecord(f"t{i}", i, bytes([i % 256]) * 16, b"t" * 16, i / 3, i, "EUR")
            for i in range(n)]  # fmt: skip
    assert decode_tx_batch(encode_tx_batch(recs, list(range(n)), "x")) == (
        recs,
        list(range(n)),
        "x",
    )
