"""Property tests: journal rows round-trip exactly; any damage is a typed InputError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.adapters.storage.journal import (
    decode_columns,
    decode_decisions,
    encode_columns,
    encode_decisions,
)
from fraudnet.adapters.stream.snapshots import ShardSnapshot, decode_snapshot, encode_snapshot
from fraudnet.core.records import OUTCOMES, Decision, TxRecord
from fraudnet.errors import InputError

refs = st.binary(min_size=16, max_size=16)
reason = st.tuples(*[st.sampled_from(["AMOUNT_HIGH", "CARD_VELOCITY", "LOW_RISK"])] * 2)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[TxRecord], list[Decision]]:
    n = draw(st.integers(0, 12))
    recs, decs = [], []
    for i in range(n):
        tx_id = draw(st.text(min_size=1, max_size=20)) + f"#{i}"
        label = draw(st.sampled_from([None, 0, 1]))
        r = TxRecord(tx_id, draw(st.integers(0, 2**52)), draw(refs), draw(refs),
                     draw(st.floats(0, 1e9, allow_nan=False)), 1, "EUR", label=label)  # fmt: skip
        recs.append(r)
        decs.append(Decision(tx_id, r.card_ref, draw(st.sampled_from(OUTCOMES)),
                             draw(st.floats(0, 1)), draw(reason),
                             draw(st.sampled_from(["m1", "model-é"])), r.ts_us,
                             draw(st.integers(0, 2**62)), draw(st.integers(0, 2**40)), label))  # fmt: skip
    return recs, decs


@settings(max_examples=100, deadline=None)
@given(batches())
def test_round_trip(b: tuple[list[TxRecord], list[Decision]]) -> None:
    recs, decs = b
    batch = decode_columns(encode_columns(recs), "w")
    assert batch.card_refs == b"".join(r.card_ref for r in recs)
    assert batch.ts_us.tolist() == [r.ts_us for r in recs]
    assert decode_decisions(encode_decisions(decs), batch, "w") == decs


@settings(max_examples=150, deadline=None)
@given(batches(), st.data())
def test_damage_is_a_typed_error(
    b: tuple[list[TxRecord], list[Decision]], data: st.DataObject
) -> None:
    recs, decs = b
    cols, dec = encode_columns(recs), encode_decisions(decs)
    for blob in (cols, dec):
        cut = data.draw(st.integers(0, len(blob)))
        flip = data.draw(st.integers(0, max(0, len(blob) - 1)))
        variants = [blob[:cut], blob + data.draw(st.binary(min_size=1, max_size=8))]
        if blob:
            variants.append(blob[:flip] + bytes([blob[flip] ^ 0xFF]) + blob[flip + 1 :])
        for v in variants:
            try:
                batch = decode_columns(v if blob is cols else cols, "w")
                decode_decisions(v if blob is dec else dec, batch, "w")
            except InputError as e:
                assert "w" in str(e)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2**40), st.data())
def test_snapshot_header_detects_any_change(blob: bytes, covered: int, data: st.DataObject) -> None:
    raw = encode_snapshot(ShardSnapshot(1, 4, covered, 5, blob))
    assert decode_snapshot(raw, "f") == ShardSnapshot(1, 4, covered, 5, blob)
    i = data.draw(st.integers(0, len(raw) - 1))
    bad = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
    with pytest.raises(InputError, match="f"):
        decode_snapshot(bad, "f")
