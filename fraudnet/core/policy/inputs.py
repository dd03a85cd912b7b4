"""The columns a policy reads, one numpy array per field, for a batch.

Categorical fields are integer-encoded so that conditions compile to
vectorised integer comparisons (strings in a bundle are encoded the same
way when the bundle is compiled):

* ``channel`` -- index in :data:`~fraudnet.core.transaction.CHANNELS`, -1 absent;
* ``country`` / ``currency`` -- the ASCII letters packed big-endian into an
  int (``"FR"`` -> ``0x4652``), 0 absent;
* ``bin`` -- ``int("1" + digits)`` (keeps leading zeros apart), 0 absent;
* entity keys (card, terminal, merchant, device) are the first 8 bytes of
  the node-local pseudonym (:func:`~fraudnet.core.ids.key64`), with a
  presence mask for the optional ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fraudnet.errors import InputError

from ..ids import key64
from ..records import TxRecord
from ..transaction import CHANNELS

__all__ = [
    "CHANNEL_CODES",
    "PolicyInput",
    "encode_bin",
    "encode_letters",
]

CHANNEL_CODES: Final = {c: i for i, c in enumerate(CHANNELS)}
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
B = npt.NDArray[np.bool_]


def _f64(values: list[float]) -> F64:
    return np.array(values, dtype=np.float64)


def _i64(values: list[int]) -> I64:
    return np.array(values, dtype=np.int64)


def _u64(values: list[int]) -> U64:
    return np.array(values, dtype=np.uint64)


def encode_letters(value: str | None) -> int:
    """Pack 1-4 ASCII letters into an int (0 for ``None``/empty)."""
    if not value:
        return 0
    v = value.strip().upper()
    if not (v.isascii() and v.isalpha() and len(v) <= 4):
        return -1
    out = 0
    for ch in v:
        out = (out << 8) | ord(ch)
    return out


def encode_bin(value: str | None) -> int:
    """``int("1" + digits)`` for 6-8 digits; 0 for ``None``; -1 if not a BIN."""
    if not value:
        return 0
    v = value.strip()
    if not (v.isascii() and v.isdigit() and 6 <= len(v) <= 8):
        return -1
    return int("1" + v)


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """A batch of transactions as the columns a policy reads (all of length ``n``).

    ``features`` is the feature matrix of the batch in schema order (see
    :mod:`fraudnet.core.features.schema`) or ``None`` when the caller has
    none; a policy that reads ``feature.*`` refuses to run without it.
    ``verdict`` is the network verdict level per transaction (0 none,
    1 suspicious, 2 fraud), 0 when the node has no verdict.
    """

    ts_s: F64
    amount: F64
    score: F64
    mcc: I64
    channel: I64
    country: I64
    currency: I64
    bin: I64
    card_key: U64
    terminal_key: U64
    merchant_key: U64
    has_merchant: B
    device_key: U64
    has_device: B
    verdict: F64
    features: F64 | None = None

    def __len__(self) -> int:
        return int(self.ts_s.shape[0])

    def check(self) -> None:
        """Raise :class:`InputError` unless every column has length ``n``."""
        n = len(self)
        for f in fields(self):
            name = f.name
            arr = getattr(self, name)
            if arr is None:
                continue
            if arr.shape[0] != n:
                raise InputError(f"policy input: column {name!r} has {arr.shape[0]} rows, not {n}")

    @classmethod
    def from_records(
        cls,
        records: Sequence[TxRecord],
        scores: F64,
        *,
        features: F64 | None = None,
        verdicts: F64 | None = None,
    ) -> PolicyInput:
        """Columns of a batch of node records (the node's decide path)."""
        n = len(records)

        merchant = [r.merchant_ref for r in records]
        device = [r.device_ref for r in records]
        inp = cls(
            ts_s=_f64([r.ts_us / 1e6 for r in records]),
            amount=_f64([r.amount for r in records]),
            score=np.ascontiguousarray(scores, dtype=np.float64),
            mcc=_i64([-1 if r.mcc is None else r.mcc for r in records]),
            channel=_i64([CHANNEL_CODES.get(r.channel, -1) if r.channel else -1 for r in records]),
            country=_i64([encode_letters(r.country) for r in records]),
            currency=_i64([encode_letters(r.currency) for r in records]),
            bin=_i64([encode_bin(r.bin) for r in records]),
            card_key=_u64([key64(r.card_ref) for r in records]),
            terminal_key=_u64([key64(r.terminal_ref) for r in records]),
            merchant_key=_u64([key64(m) if m else 0 for m in merchant]),
            has_merchant=np.array([m is not None for m in merchant], dtype=np.bool_),
            device_key=_u64([key64(d) if d else 0 for d in device]),
            has_device=np.array([d is not None for d in device], dtype=np.bool_),
            verdict=np.zeros(n) if verdicts is None else np.asarray(verdicts, dtype=np.float64),
            features=features,
        )
        inp.check()
        return inp

    @classmethod
    def from_arrays(
        cls,
        *,
        ts_s: F64,
        amount: F64,
        card_key: U64,
        terminal_key: U64,
        score: F64 | None = None,
        features: F64 | None = None,
        mcc: I64 | None = None,
        channel: I64 | None = None,
        country: I64 | None = None,
        currency: I64 | None = None,
        bin: I64 | None = None,
        merchant_key: U64 | None = None,
        device_key: U64 | None = None,
        verdict: F64 | None = None,
    ) -> PolicyInput:
        """Columns from arrays (replays and backtests); absent fields get their 'absent' code."""
        n = int(ts_s.shape[0])

        def or_fill(
            a: npt.NDArray[np.generic] | None, fill: int, dtype: type
        ) -> npt.NDArray[np.generic]:
            return np.full(n, fill, dtype=dtype) if a is None else np.asarray(a, dtype=dtype)

        inp = cls(
            ts_s=np.asarray(ts_s, dtype=np.float64),
            amount=np.asarray(amount, dtype=np.float64),
            score=or_fill(score, 0, np.float64),  # type: ignore[arg-type]
            mcc=or_fill(mcc, -1, np.int64),  # type: ignore[arg-type]
            channel=or_fill(channel, -1, np.int64),  # type: ignore[arg-type]
            country=or_fill(country, 0, np.int64),  # type: ignore[arg-type]
            currency=or_fill(currency, 0, np.int64),  # type: ignore[arg-type]
            bin=or_fill(bin, 0, np.int64),  # type: ignore[arg-type]
            card_key=np.asarray(card_key, dtype=np.uint64),
            terminal_key=np.asarray(terminal_key, dtype=np.uint64),
            merchant_key=or_fill(merchant_key, 0, np.uint64),  # type: ignore[arg-type]
            has_merchant=np.full(n, merchant_key is not None, dtype=np.bool_),
            device_key=or_fill(device_key, 0, np.uint64),  # type: ignore[arg-type]
            has_device=np.full(n, device_key is not None, dtype=np.bool_),
            verdict=or_fill(verdict, 0, np.float64),  # type: ignore[arg-type]
            features=features,
        )
        inp.check()
        return inp

    def take(self, idx: npt.NDArray[np.intp]) -> PolicyInput:
        """The rows ``idx`` (in that order)."""
        kw: dict[str, Any] = {
            f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[idx])
            for f in fields(self)
        }
        return PolicyInput(**kw)
