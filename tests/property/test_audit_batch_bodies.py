"""decision_bodies (per-batch validation and encoding) == the per-record reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.core.audit import batch
from fraudnet.core.audit.batch import decision_bodies, decision_bodies_reference
from fraudnet.core.audit.schema import MAX_STR, decode_body
from fraudnet.core.records import Decision
from fraudnet.errors import InputError

PANS = ("4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005")

# identifiers with digit runs around the 12-19 boundary, hex digests, separators, PANs
_texts = st.one_of(
    st.text(max_size=24),
    st.text(alphabet="0123456789 -abcdefx:", max_size=40),
    st.sampled_from(PANS).map(lambda p: f"id-{p}"),
    st.integers(min_value=0, max_value=10**20).map(str),
    st.binary(min_size=16, max_size=32).map(lambda b: b.hex() + "4111111111111111"),
    st.just("x" * (MAX_STR - 3)),
    st.just("x" * (MAX_STR - 2)),
)
_ints = st.one_of(st.integers(min_value=-(2**63), max_value=2**64 - 1), st.integers())
_scores = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.floats(), st.just(0.5))


@st.composite
def decisions(draw: st.DrawFn) -> Decision:
    return Decision(
        tx_id=draw(_texts),
        card_ref=draw(st.binary(max_size=20)),
        outcome=draw(st.sampled_from(["allow", "review", "block"])),
        score=draw(_scores),
        reasons=tuple(draw(st.lists(_texts, max_size=4))),
        model_id=draw(st.one_of(st.just("rf-1"), _texts)),
        ts_us=draw(_ints),
        decided_at_us=draw(st.one_of(st.integers(min_value=0, max_value=2**63), _ints)),
        latency_us=draw(_ints),
    )


def _run(f: object, ds: list[Decision], actor: str, origin: str) -> tuple[str, object]:
    try:
        return "ok", f(ds, actor=actor, origin=origin)  # type: ignore[operator]
    except InputError as e:
        return "InputError", str(e)
    except (OverflowError, ValueError, TypeError) as e:
        return type(e).__name__, None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(decisions(), max_size=12),
    st.one_of(st.just("node:abcd"), _texts),
    st.one_of(st.just("stream:p.tx-in"), _texts),
)
def test_batch_bodies_equal_reference(ds: list[Decision], actor: str, origin: str) -> None:
    fast = _run(decision_bodies, ds, actor, origin)
    ref = _run(decision_bodies_reference, ds, actor, origin)
    assert fast == ref


def test_fast_path_bytes_decode_to_the_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = [
        Decision(f"t{i}x1764237000s{i}", bytes([i]) * 16, "allow", i / 10, ("velocity", "amt"),
                 "rf-abc", 1_700_000_000_000_000 + i, 1_764_237_000_000_000, 120 + i)
        for i in range(50)
    ]  # fmt: skip
    ref = decision_bodies_reference(ds, actor="node:ab", origin="api")

    def no_fallback(*a: object, **k: object) -> list[bytes]:
        raise AssertionError("a clean batch must take the per-batch path")

    monkeypatch.setattr(batch, "decision_bodies_reference", no_fallback)
    bodies = decision_bodies(ds, actor="node:ab", origin="api")
    assert bodies == ref
    back = [decode_body(b) for b in bodies]
    assert [r.details["tx_id"] for r in back] == [d.tx_id for d in ds]
    assert all(r.resource == f"tx:{d.tx_id}" for r, d in zip(back, ds, strict=True))


@pytest.mark.parametrize("pan", PANS)
def test_a_card_number_anywhere_in_the_batch_refuses_the_batch(pan: str) -> None:
    good = Decision("t1", bytes(16), "allow", 0.1, ("velocity",), "m", 1, 2, 3)
    bad = Decision(f"ref {pan} end", bytes(16), "allow", 0.1, (), "m", 1, 2, 3)
    with pytest.raises(InputError, match=r"details\.tx_id|resource"):
        decision_bodies([good] * 30 + [bad], actor="node:a", origin="api")
    bad_reason = Decision("t2", bytes(16), "allow", 0.1, (f"r{pan}",), "m", 1, 2, 3)
    with pytest.raises(InputError, match=r"details.reasons\[0\]"):
        decision_bodies([good, bad_reason], actor="node:a", origin="api")
