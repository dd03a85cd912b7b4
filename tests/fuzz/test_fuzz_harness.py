"""The fuzz oracle itself: a hang, an untyped exception and a memory blow-up all fail a pass."""

from __future__ import annotations

import fuzz_support
import pytest
from hypothesis import strategies as st

from fraudnet.errors import InputError


def _spin(x: int) -> None:
    if x == 3:
        while True:
            pass


def _untyped(x: int) -> None:
    if x == 3:
        raise KeyError("not a fraudnet error")
    if x == 2:
        raise InputError("typed: allowed")


def _hog(x: int) -> None:
    if x == 3:
        blob = bytearray(fuzz_support.CASE_MEMORY * 2)
        assert len(blob) > 0


def test_a_case_that_spins_fails_as_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fuzz_support, "CASE_SECONDS", 0.3)
    with pytest.raises(AssertionError, match="hang"):
        fuzz_support.run_target("spin", "quick", st.integers(0, 5), _spin, ())


def test_an_error_outside_the_allowed_classes_fails_the_pass() -> None:
    with pytest.raises(KeyError):
        fuzz_support.run_target("untyped", "quick", st.integers(0, 5), _untyped, (InputError,))


def test_a_case_allocating_more_than_the_bound_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fuzz_support, "TRACE_EVERY", 1)
    with pytest.raises(AssertionError, match="allocated"):
        fuzz_support.run_target("hog", "quick", st.integers(0, 5), _hog, ())
