"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification.

Theory of operation
-------------------
Leaves are the exact payload bytes of audit records. With ``H = SHA-256``::

    leaf_hash(d)    = H(0x00 || d)
    node_hash(l, r) = H(0x01 || l || r)
    MTH({})         = H("")
    MTH(D[0:n])     = node_hash(MTH(D[0:k]), MTH(D[k:n]))   k = largest power of 2 < n

:class:`Frontier` is the compact form of a tree of any size: the roots of its
maximal perfect subtrees, left to right (at most 64). Appending a leaf costs
amortised ~1 extra node hash, so a stream of records can be verified in
constant memory. The frontier at a segment boundary is what lets a log whose
oldest segments were removed by retention still be verified and proven
against (see :mod:`fraudnet.core.audit.segment`).

Proof generation takes a ``range_hash(a, b) -> MTH(D[a:b])`` callback so
the caller decides where leaf hashes come from (memory, a file, a pruned
prefix). Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "HASH_LEN",
    "Frontier",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_of_leaves",
    "split_point",
    "verify_consistency",
    "verify_inclusion",
]

HASH_LEN: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
RangeHash = Callable[[int, int], bytes]

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """Largest power of two strictly less than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """Roots of the maximal perfect subtrees of a tree, left to right.

    ``sizes[i]`` is the number of leaves under ``hashes[i]``; sizes are
    distinct powers of two in decreasing order and sum to :attr:`size`.
    """

    __slots__ = ("hashes", "size", "sizes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        sizes = [1 << b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
        if len(sizes) != len(hashes) or any(len(h) != HASH_LEN for h in hashes):
            raise ValueError(f"frontier of size {size} needs {len(sizes)} hashes of 32 bytes")
        self.size = size
        self.sizes = sizes
        self.hashes = list(hashes)

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (not the leaf data) at the right edge."""
        sizes, hashes = self.sizes, self.hashes
        h, s = leaf, 1
        while sizes and sizes[-1] == s:
            h = node_hash(hashes.pop(), h)
            sizes.pop()
            s <<= 1
        sizes.append(s)
        hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        """``MTH`` of the whole tree (the right-to-left fold of the subtree roots)."""
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h

    def ranges(self) -> list[tuple[int, int, bytes]]:
        """``(start, end, hash)`` of every subtree, left to right."""
        out, start = [], 0
        for s, h in zip(self.sizes, self.hashes, strict=True):
            out.append((start, start + s, h))
            start += s
        return out


def root_of_leaves(leaves: Sequence[bytes]) -> bytes:
    """Root of a tree given all its leaf hashes."""
    f = Frontier()
    for h in leaves:
        f.append(h)
    return f.root()


def inclusion_proof(index: int, size: int, range_hash: RangeHash) -> list[bytes]:
    """RFC 6962 audit path of leaf ``index`` in the tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            path.append(range_hash(lo + k, hi))
            hi = lo + k
        else:
            path.append(range_hash(lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def consistency_proof(old: int, new: int, range_hash: RangeHash) -> list[bytes]:
    """RFC 6962 consistency proof that the tree of ``old`` leaves prefixes ``new``."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to {new}")
    if old in (0, new):
        return []
    out: list[bytes] = []

    def sub(m: int, lo: int, hi: int, complete: bool) -> None:
        n = hi - lo
        if m == n:
            if not complete:
                out.append(range_hash(lo, hi))
            return
        k = split_point(n)
        if m <= k:
            sub(m, lo, lo + k, complete)
            out.append(range_hash(lo + k, hi))
        else:
            sub(m - k, lo + k, hi, False)
            out.append(range_hash(lo, lo + k))

    sub(old, 0, new, True)
    return out


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` place leaf hash ``leaf`` at ``index`` under ``root``?"""
    if not 0 <= index < size or any(len(p) != HASH_LEN for p in proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: does ``proof`` show tree ``old`` is a prefix of tree ``new``?"""
    if not 0 <= old <= new or any(len(p) != HASH_LEN for p in proof):
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root is the first node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
