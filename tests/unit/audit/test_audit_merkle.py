"""Merkle proofs against an independent, literal transcription of RFC 6962 section 2.1."""

from __future__ import annotations

import hashlib

import pytest

from fraudnet.core.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)


# ---- independent reference (RFC 6962 2.1, written from the text, recursion on lists) ----
def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def data(n: int) -> list[bytes]:
    return [f"record-{i}".encode() * (i % 3 + 1) for i in range(n)]


def range_hash_of(d: list[bytes]):  # type: ignore[no-untyped-def]
    return lambda a, b: ref_mth(d[a:b])


def test_empty_and_single() -> None:
    assert Frontier().root() == EMPTY_ROOT == ref_mth([])
    f = Frontier()
    f.append(leaf_hash(b"x"))
    assert f.root() == ref_mth([b"x"])


@pytest.mark.parametrize("n", range(1, 70))
def test_frontier_root_matches_reference(n: int) -> None:
    d = data(n)
    f = Frontier()
    for x in d:
        f.append(leaf_hash(x))
    assert f.root() == ref_mth(d)
    assert Frontier(f.size, f.hashes).root() == f.root()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33])
def test_inclusion_matches_reference_and_verifies(n: int) -> None:
    d = data(n)
    root = ref_mth(d)
    for m in range(n):
        p = inclusion_proof(m, n, range_hash_of(d))
        assert p == ref_path(m, d)
        assert verify_inclusion(leaf_hash(d[m]), m, n, p, root)
        assert not verify_inclusion(leaf_hash(d[m] + b"!"), m, n, p, root)
        if n > 1:
            assert not verify_inclusion(leaf_hash(d[m]), (m + 1) % n, n, p, root)
            bad = [bytes(32), *p[1:]]
            assert not verify_inclusion(leaf_hash(d[m]), m, n, bad, root)


def test_consistency_matches_reference_and_verifies() -> None:
    for n in range(1, 34):
        d = data(n)
        for m in range(1, n + 1):
            p = consistency_proof(m, n, range_hash_of(d))
            assert p == (ref_proof(m, d) if m < n else [])
            assert verify_consistency(m, n, ref_mth(d[:m]), ref_mth(d), p)
            other = d[:]
            other[m - 1] = b"rewritten"
            if m < n:
                assert not verify_consistency(m, n, ref_mth(other[:m]), ref_mth(d), p)
                assert not verify_consistency(m, n, ref_mth(d[:m]), ref_mth(other), p)


def test_rejects_malformed_inputs() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(3, 3, lambda a, b: b"")
    assert not verify_inclusion(bytes(32), 0, 0, [], bytes(32))
    assert not verify_inclusion(bytes(32), 0, 2, [b"short"], bytes(32))
    assert not verify_consistency(3, 2, bytes(32), bytes(32), [])
    with pytest.raises(ValueError):
        Frontier(3, [bytes(32)])
