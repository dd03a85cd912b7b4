"""Witnessing of audit checkpoints: gossip formats, the witness state, the offline check.

Theory of operation
-------------------
Every node gossips its latest signed checkpoint; its peers (*witnesses*)
verify it against the node's trusted key and cosign the very same 85 body
bytes in context ``audit-cosign`` (:func:`~.checkpoint.cosign`), gossip the
cosignature back, and keep what they cosigned. A node that later rewrites
its log and re-signs it cannot make the witnesses' copies match the new log;
a node that shows different histories to different peers leaves two validly
signed checkpoints that cannot both be prefixes of one log.

Numbered rules of :class:`Witness` (one witness's state, sans-IO):

1. A checkpoint counts only if its public key is one the witness trusts
   (a roster / members key) and its ``audit-checkpoint`` signature verifies
   with that key -- checked before anything else is decoded.
2. Two valid checkpoints of one key with the same tree size and different
   roots are a :class:`SplitView`: self-certifying (anyone holding the key
   can check it), recorded, and the key is never cosigned again.
3. A checkpoint already cosigned (same key, size and root) is a duplicate.
4. A checkpoint dated more than ``max_future_us`` after ``now`` is ignored.
5. Memory is bounded: at most ``max_sizes_per_key`` (size -> root) entries
   per key (oldest sizes evicted) and ``max_keys`` keys.

Offline, :func:`check_against_log` takes every cosigned checkpoint of the
log's key from any number of witnesses and the log's own roots at those
sizes, and reports (a) ``rewritten`` -- a witnessed root differs from the
log's root at that size, (b) ``truncated`` -- witnesses saw more records than
the log has, and (c) ``split-view`` -- two witnessed checkpoints of one size
with different roots (found without the log at all).

Wire formats (fixed length, big-endian)::

    checkpoint message  b"FNWC" | u8 1 | signed checkpoint (149)                    = 154 bytes
    cosign message      b"FNWS" | u8 1 | witness public key (32)
                                | signed checkpoint (149) | cosignature (64)       = 250 bytes
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from fraudnet.errors import IntegrityError

from .. import crypto
from .checkpoint import (
    BODY_LEN,
    SIGNED_LEN,
    Checkpoint,
    cosign,
    open_checkpoint,
    verify_cosignature,
)

__all__ = [
    "CKPT_MSG_LEN",
    "COSIGN_MSG_LEN",
    "Cosigned",
    "Finding",
    "Observation",
    "SplitView",
    "Witness",
    "WitnessReport",
    "check_against_log",
    "decode_checkpoint_msg",
    "decode_cosign_msg",
    "encode_checkpoint_msg",
    "encode_cosign_msg",
    "find_split_views",
    "log_key_of",
    "make_signer",
]

_CK_MAGIC: Final = b"FNWC\x01"
_CS_MAGIC: Final = b"FNWS\x01"
CKPT_MSG_LEN: Final = len(_CK_MAGIC) + SIGNED_LEN
COSIGN_MSG_LEN: Final = len(_CS_MAGIC) + crypto.PUBLIC_KEY_LEN + SIGNED_LEN + crypto.SIGNATURE_LEN


def log_key_of(signed: bytes) -> bytes:
    """The public key a signed checkpoint *claims* (verify before trusting anything else)."""
    return signed[5:37]


def _size_root(signed: bytes) -> tuple[int, bytes]:
    """Tree size and root of a checkpoint whose signature was already verified."""
    return int.from_bytes(signed[37:45], "big"), signed[53:BODY_LEN]


def encode_checkpoint_msg(signed: bytes) -> bytes:
    if len(signed) != SIGNED_LEN:
        raise IntegrityError(f"checkpoint message: signed checkpoint is {len(signed)} bytes")
    return _CK_MAGIC + signed


def decode_checkpoint_msg(data: bytes) -> bytes:
    """The signed checkpoint inside a checkpoint message (not yet verified)."""
    if len(data) != CKPT_MSG_LEN or not data.startswith(_CK_MAGIC):
        raise IntegrityError(f"checkpoint message: {len(data)} bytes, not a version-1 message")
    return data[len(_CK_MAGIC) :]


@dataclass(frozen=True, slots=True)
class Cosigned:
    """A checkpoint of ``log_key``'s log with one witness's cosignature."""

    network: str
    signed: bytes
    witness_key: bytes
    cosignature: bytes

    @property
    def log_key(self) -> bytes:
        return log_key_of(self.signed)

    def verify(self, log_key: bytes) -> Checkpoint:
        """Both signatures, the checkpoint's first; :class:`IntegrityError` if either fails."""
        cp = open_checkpoint(self.signed, log_key, self.network)
        if not verify_cosignature(self.witness_key, self.cosignature, self.network, self.signed):
            raise IntegrityError(
                f"cosignature of witness {crypto.key_id(self.witness_key)} does not verify"
            )
        return cp

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1, "network": self.network, "log_key": self.log_key.hex(),
            "checkpoint": self.signed.hex(), "witness_key": self.witness_key.hex(),
            "cosignature": self.cosignature.hex(),
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Cosigned:
        try:
            if not isinstance(doc, dict) or doc.get("v") != 1:
                raise ValueError("not a version-1 witness record")
            net = doc["network"]
            if not isinstance(net, str) or not 0 < len(net) <= 64:
                raise ValueError("bad network")
            c = cls(net, bytes.fromhex(doc["checkpoint"]), bytes.fromhex(doc["witness_key"]),
                    bytes.fromhex(doc["cosignature"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as e:
            raise IntegrityError(f"{where}: malformed witness record ({e})") from None
        if (len(c.signed), len(c.witness_key), len(c.cosignature)) != (
            SIGNED_LEN, crypto.PUBLIC_KEY_LEN, crypto.SIGNATURE_LEN
        ):  # fmt: skip
            raise IntegrityError(f"{where}: witness record field of the wrong length")
        return c


def encode_cosign_msg(c: Cosigned) -> bytes:
    return _CS_MAGIC + c.witness_key + c.signed + c.cosignature


def decode_cosign_msg(data: bytes, network: str) -> Cosigned:
    """Split a cosign message (signatures not yet verified: call :meth:`Cosigned.verify`)."""
    if len(data) != COSIGN_MSG_LEN or not data.startswith(_CS_MAGIC):
        raise IntegrityError(f"cosign message: {len(data)} bytes, not a version-1 message")
    o = len(_CS_MAGIC)
    wk = data[o : o + crypto.PUBLIC_KEY_LEN]
    o += crypto.PUBLIC_KEY_LEN
    return Cosigned(network, data[o : o + SIGNED_LEN], wk, data[o + SIGNED_LEN :])


@dataclass(frozen=True, slots=True)
class SplitView:
    """Two checkpoints signed by one log key, same tree size, different roots (rule 2)."""

    network: str
    a: bytes
    b: bytes

    @property
    def log_key(self) -> bytes:
        return log_key_of(self.a)

    def verify(self) -> int:
        """Check the proof with the log key alone; returns the tree size. Raises IntegrityError."""
        key = self.log_key
        ca = open_checkpoint(self.a, key, self.network)
        cb = open_checkpoint(self.b, key, self.network)
        if ca.tree_size != cb.tree_size or ca.root == cb.root:
            raise IntegrityError("split view: the checkpoints do not conflict")
        return ca.tree_size

    def to_json(self) -> dict[str, Any]:
        size, _ = _size_root(self.a)
        return {"v": 1, "network": self.network, "log_key": self.log_key.hex(),
                "tree_size": size, "a": self.a.hex(), "b": self.b.hex()}  # fmt: skip

    @classmethod
    def from_json(cls, doc: Any, where: str) -> SplitView:
        try:
            sv = cls(str(doc["network"]), bytes.fromhex(doc["a"]), bytes.fromhex(doc["b"]))
        except (KeyError, TypeError, ValueError) as e:
            raise IntegrityError(f"{where}: malformed split-view record ({e})") from None
        if len(sv.a) != SIGNED_LEN or len(sv.b) != SIGNED_LEN:
            raise IntegrityError(f"{where}: split-view checkpoint of the wrong length")
        return sv


Kind = Literal["cosign", "duplicate", "split-view", "known-forked", "untrusted", "future"]


@dataclass(frozen=True, slots=True)
class Observation:
    """What :meth:`Witness.observe` made of one gossiped checkpoint."""

    kind: Kind
    checkpoint: Checkpoint | None = None
    cosigned: Cosigned | None = None
    split_view: SplitView | None = None


@dataclass(slots=True)
class _KeyState:
    sizes: OrderedDict[int, bytes] = field(default_factory=OrderedDict)
    forked: bool = False


class Witness:
    """One node's witness state (see module docstring for the rules)."""

    def __init__(
        self,
        network: str,
        trusted: Mapping[bytes, str],
        sign: Callable[[bytes], bytes],
        witness_key: bytes,
        *,
        max_future_us: int = 60_000_000,
        max_sizes_per_key: int = 4096,
        max_keys: int = 1024,
    ) -> None:
        self.network = network
        self.trusted = dict(trusted)
        self._sign = sign
        self.witness_key = witness_key
        self.max_future_us = max_future_us
        self.max_sizes_per_key = max_sizes_per_key
        self.max_keys = max_keys
        self._keys: dict[bytes, _KeyState] = {}
        self._signed: dict[tuple[bytes, int], bytes] = {}

    def check(self, signed: bytes) -> Checkpoint:
        """Rule 1: verify against a trusted key (IntegrityError otherwise). Thread-safe."""
        key = log_key_of(signed) if len(signed) == SIGNED_LEN else b""
        if key not in self.trusted:
            raise IntegrityError("checkpoint of a key this witness does not trust")
        return open_checkpoint(signed, key, self.network)

    def observe(self, signed: bytes, now_us: int) -> Observation:
        try:
            cp = self.check(signed)
        except IntegrityError:
            return Observation("untrusted")
        if cp.time_us > now_us + self.max_future_us:
            return Observation("future", cp)
        st = self._keys.get(cp.public_key)
        if st is None:
            if len(self._keys) >= self.max_keys:
                return Observation("untrusted", cp)
            st = self._keys[cp.public_key] = _KeyState()
        prev_root = st.sizes.get(cp.tree_size)
        if prev_root is not None and prev_root != cp.root:
            st.forked = True
            other = self._signed_of(cp.public_key, cp.tree_size)
            return Observation("split-view", cp, split_view=SplitView(self.network, other, signed))
        if st.forked:
            return Observation("known-forked", cp)
        if prev_root is not None:
            return Observation("duplicate", cp)
        st.sizes[cp.tree_size] = cp.root
        self._signed[(cp.public_key, cp.tree_size)] = signed
        while len(st.sizes) > self.max_sizes_per_key:
            old, _ = st.sizes.popitem(last=False)
            self._signed.pop((cp.public_key, old), None)
        c = Cosigned(self.network, signed, self.witness_key, self._sign(signed))
        return Observation("cosign", cp, cosigned=c)

    def _signed_of(self, key: bytes, size: int) -> bytes:
        return self._signed[(key, size)]


def make_signer(key: Any, network: str) -> Callable[[bytes], bytes]:
    """``signed -> cosignature`` with an Ed25519 private key."""
    return lambda signed: cosign(key, network, signed)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Literal["rewritten", "truncated", "split-view", "bad-cosignature", "expired"]
    tree_size: int
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} at tree size {self.tree_size}: {self.detail}"


@dataclass(frozen=True, slots=True)
class WitnessReport:
    checked: int
    witnesses: tuple[str, ...]
    findings: tuple[Finding, ...]
    split_views: tuple[SplitView, ...]

    @property
    def ok(self) -> bool:
        return not any(f.kind in ("rewritten", "truncated", "split-view") for f in self.findings)


def find_split_views(log_key: bytes, network: str, signed: Iterable[bytes]) -> list[SplitView]:
    """Pairs of valid checkpoints of ``log_key`` with one size and different roots."""
    by_size: dict[int, dict[bytes, bytes]] = {}
    for s in signed:
        try:
            cp = open_checkpoint(s, log_key, network)
        except IntegrityError:
            continue
        by_size.setdefault(cp.tree_size, {}).setdefault(cp.root, s)
    out = []
    for _size, roots in sorted(by_size.items()):
        if len(roots) > 1:
            a, b = list(roots.values())[:2]
            out.append(SplitView(network, a, b))
    return out


def check_against_log(
    log_key: bytes,
    network: str,
    records: Iterable[Cosigned],
    root_at: Callable[[int], bytes | None],
    log_size: int,
    *,
    extra_split_views: Iterable[SplitView] = (),
) -> WitnessReport:
    """Check cosigned checkpoints of ``log_key`` against the log (see module docstring).

    ``root_at(size)`` is the log's RFC 6962 root over its first ``size``
    records, or None when those records are no longer available (retention).
    Records of other keys are skipped; records whose signatures fail are
    reported as ``bad-cosignature`` and otherwise ignored.
    """
    findings: list[Finding] = []
    valid: list[Cosigned] = []
    witnesses: set[str] = set()
    for r in records:
        if r.log_key != log_key or r.network != network:
            continue
        try:
            r.verify(log_key)
        except IntegrityError as e:
            findings.append(Finding("bad-cosignature", _size_root(r.signed)[0], str(e)))
            continue
        valid.append(r)
        witnesses.add(crypto.key_id(r.witness_key))
    splits = find_split_views(log_key, network, (r.signed for r in valid))
    seen_pairs = {frozenset((sv.a, sv.b)) for sv in splits}
    for sv in extra_split_views:
        try:
            if sv.log_key == log_key and sv.network == network:
                sv.verify()
                if frozenset((sv.a, sv.b)) not in seen_pairs:
                    seen_pairs.add(frozenset((sv.a, sv.b)))
                    splits.append(sv)
        except IntegrityError:
            continue
    for sv in splits:
        size, ra = _size_root(sv.a)
        rb = _size_root(sv.b)[1]
        findings.append(Finding("split-view", size, f"roots {ra.hex()[:16]} and {rb.hex()[:16]} "
                                "both signed by the log key"))  # fmt: skip
    seen: set[tuple[int, bytes]] = set()
    for r in sorted(valid, key=lambda r: _size_root(r.signed)):
        size, root = _size_root(r.signed)
        if (size, root) in seen:
            continue
        seen.add((size, root))
        who = crypto.key_id(r.witness_key)
        if size > log_size:
            findings.append(Finding("truncated", size, f"witness {who} cosigned {size} records; "
                                    f"the log has {log_size}"))  # fmt: skip
            continue
        mine = root_at(size)
        if mine is None:
            findings.append(Finding("expired", size, "records no longer online; not checked"))
        elif mine != root:
            why = f"witness {who} cosigned root {root.hex()[:16]}, the log's is {mine.hex()[:16]}"
            findings.append(Finding("rewritten", size, why))
    bad = sorted((f for f in findings if f.kind != "expired" and f.kind != "bad-cosignature"),
                 key=lambda f: f.tree_size)  # fmt: skip
    rest = [f for f in findings if f not in bad]
    return WitnessReport(len(valid), tuple(sorted(witnesses)), tuple(bad + rest), tuple(splits))
