"""Pseudonymised records the node works with, and their wire encoding.

* :class:`TxRecord` -- a transaction after ingest: identifiers replaced by
  node-local keyed references (``HMAC-SHA256(node secret, kind || 0 || id)``
  truncated to 16 bytes), the BIN kept (first 6 digits may be shown under
  PCI DSS), amounts normalised. This is what internal topics, state and the
  audit log see; the raw card number never goes further than ingest.
* :class:`TxColumns` -- a batch of records as numpy columns, the input of
  the feature and scoring kernels (one kernel call per batch).
* :class:`Decision` -- the node's answer for one transaction.

Batches travel on internal topics as one msgpack message each
(:func:`encode_tx_batch` / :func:`decode_tx_batch`), so Faust's per-message
cost is paid once per batch, not once per transaction.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, Literal

import msgpack
import numpy as np
import numpy.typing as npt

from fraudnet.errors import InputError

from .ids import ENTITY_KINDS, canonical_id, key64
from .transaction import CHANNELS, Transaction, luhn_ok

__all__ = [
    "OUTCOMES",
    "REF_LEN",
    "Decision",
    "Outcome",
    "Pseudonymiser",
    "TxColumns",
    "TxRecord",
    "columns",
    "decode_decisions",
    "decode_tx_batch",
    "encode_decisions",
    "encode_tx_batch",
    "to_record",
]

REF_LEN: Final = 16
BATCH_VERSION: Final = 2
MAX_BATCH_BYTES: Final = 8 * 1024 * 1024
Outcome = Literal["allow", "review", "block"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("allow", "review", "block")


@dataclass(frozen=True, slots=True)
class TxRecord:
    """A pseudonymised, normalised transaction (see module docstring)."""

    tx_id: str
    ts_us: int
    card_ref: bytes
    terminal_ref: bytes
    amount: float
    amount_minor: int
    currency: str
    bin: str | None = None
    merchant_ref: bytes | None = None
    device_ref: bytes | None = None
    mcc: int | None = None
    channel: str | None = None
    country: str | None = None
    label: int | None = None
    #: network pseudonyms, filled in by the signals layer: ((epoch, card, terminal), ...)
    net_refs: tuple[tuple[int, bytes, bytes], ...] = ()

    def to_wire(self) -> list[Any]:
        return [
            self.tx_id, self.ts_us, self.card_ref, self.terminal_ref, self.amount,
            self.amount_minor, self.currency, self.bin, self.merchant_ref, self.device_ref,
            self.mcc, self.channel, self.country, self.label,
            [list(t) for t in self.net_refs],
        ]  # fmt: skip

    @classmethod
    def from_wire(cls, w: Any) -> TxRecord:
        if not isinstance(w, list) or len(w) < 14:
            raise InputError("tx record: expected an array of at least 14 items")
        net = tuple((int(e), bytes(c), bytes(t)) for e, c, t in w[14]) if len(w) > 14 else ()
        return cls(
            tx_id=str(w[0]), ts_us=int(w[1]), card_ref=bytes(w[2]), terminal_ref=bytes(w[3]),
            amount=float(w[4]), amount_minor=int(w[5]), currency=str(w[6]), bin=w[7],
            merchant_ref=w[8], device_ref=w[9], mcc=w[10], channel=w[11], country=w[12],
            label=w[13], net_refs=net,
        )  # fmt: skip


class Pseudonymiser:
    """Node-local references with the HMAC key schedule done once.

    ``ref(kind, value)`` equals ``pseudonym(secret, kind, value)[:REF_LEN]``
    (:func:`fraudnet.core.ids.pseudonym`, checked by a property test) but
    copies a pre-keyed HMAC state that has already absorbed ``kind || 0``
    instead of re-deriving the inner and outer pads for every identifier:
    about a third of the cost per reference.
    """

    __slots__ = ("_base",)

    def __init__(self, secret: bytes) -> None:
        self._base: dict[str, hmac.HMAC] = {
            k: hmac.new(secret, k.encode("ascii") + b"\x00", hashlib.sha256) for k in ENTITY_KINDS
        }

    def ref(self, kind: str, value: str) -> bytes:
        h = self._base[kind].copy()
        h.update(canonical_id(kind, value))
        out: bytes = h.digest()[:REF_LEN]
        return out

    def ref_canonical(self, kind: str, canonical: bytes) -> bytes:
        """Like :meth:`ref` for an identifier already in canonical form."""
        h = self._base[kind].copy()
        h.update(canonical)
        out: bytes = h.digest()[:REF_LEN]
        return out


def to_record(tx: Transaction, node_secret: bytes | Pseudonymiser) -> TxRecord:
    """Pseudonymise a transaction with the node's secret (drops the raw card number).

    Pass a :class:`Pseudonymiser` built once from the secret on hot paths.
    """
    ps = node_secret if isinstance(node_secret, Pseudonymiser) else Pseudonymiser(node_secret)
    card = tx.card
    if card.isdigit() and card.isascii():
        # already canonical (parse_record compacts PANs); one Luhn check for the BIN
        card_ref = ps.ref_canonical("card", card.encode("ascii"))
        bin_ = card[:6] if 12 <= len(card) <= 19 and luhn_ok(card) else None
    else:
        card_ref = ps.ref("card", card)
        bin_ = tx.bin
    ref = ps.ref
    return TxRecord(
        tx_id=tx.tx_id,
        ts_us=tx.ts_us,
        card_ref=card_ref,
        terminal_ref=ref("terminal", tx.terminal_id),
        amount=tx.amount,
        amount_minor=tx.amount_minor,
        currency=tx.currency,
        bin=bin_,
        merchant_ref=None if tx.merchant_id is None else ref("merchant", tx.merchant_id),
        device_ref=None if tx.device_id is None else ref("device", tx.device_id),
        mcc=tx.mcc,
        channel=tx.channel,
        country=tx.country,
        label=tx.label,
    )


@dataclass(frozen=True, slots=True)
class TxColumns:
    """A batch of transactions as numpy columns (all arrays have the same length).

    ``ts_s`` is event time in seconds (float64), ``amount`` in the reporting
    currency. ``label`` is -1 when unknown. ``channel`` indexes
    :data:`~fraudnet.core.transaction.CHANNELS` (-1 when absent); ``mcc`` is
    -1 when absent.
    """

    card_key: npt.NDArray[np.uint64]
    terminal_key: npt.NDArray[np.uint64]
    ts_s: npt.NDArray[np.float64]
    amount: npt.NDArray[np.float64]
    mcc: npt.NDArray[np.int32]
    channel: npt.NDArray[np.int8]
    label: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return int(self.ts_s.shape[0])


def columns(records: Sequence[TxRecord]) -> TxColumns:
    """Build the numpy columns of a batch of records."""
    n = len(records)
    chan_index = {c: i for i, c in enumerate(CHANNELS)}
    return TxColumns(
        card_key=np.fromiter((key64(r.card_ref) for r in records), dtype=np.uint64, count=n),
        terminal_key=np.fromiter(
            (key64(r.terminal_ref) for r in records), dtype=np.uint64, count=n
        ),
        ts_s=np.fromiter((r.ts_us / 1e6 for r in records), dtype=np.float64, count=n),
        amount=np.fromiter((r.amount for r in records), dtype=np.float64, count=n),
        mcc=np.fromiter((-1 if r.mcc is None else r.mcc for r in records), dtype=np.int32, count=n),
        channel=np.fromiter(
            (chan_index.get(r.channel, -1) if r.channel else -1 for r in records),
            dtype=np.int8,
            count=n,
        ),
        label=np.fromiter(
            (-1 if r.label is None else r.label for r in records), dtype=np.int8, count=n
        ),
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """The node's decision on one transaction.

    ``latency_us`` is the node's processing time for this transaction,
    from its arrival at the node (ingest) to the decision.
    """

    tx_id: str
    card_ref: bytes
    outcome: Outcome
    score: float
    reasons: tuple[str, ...]
    model_id: str
    ts_us: int
    decided_at_us: int
    latency_us: int
    label: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id,
            "card": self.card_ref.hex(),
            "outcome": self.outcome,
            "score": self.score,
            "reasons": list(self.reasons),
            "model_id": self.model_id,
            "ts_us": self.ts_us,
            "decided_at_us": self.decided_at_us,
            "latency_us": self.latency_us,
            "label": self.label,
        }

    @classmethod
    def from_wire(cls, d: Any) -> Decision:
        try:
            return cls(
                tx_id=str(d["tx_id"]),
                card_ref=bytes.fromhex(d["card"]),
                outcome=d["outcome"],
                score=float(d["score"]),
                reasons=tuple(d["reasons"]),
                model_id=str(d["model_id"]),
                ts_us=int(d["ts_us"]),
                decided_at_us=int(d["decided_at_us"]),
                latency_us=int(d["latency_us"]),
                label=d.get("label"),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:  # inf -> int: Overflow
            raise InputError(f"decision record: {e}") from None


def encode_tx_batch(
    records: Sequence[TxRecord], arrival_us: Sequence[int], batch_id: str = ""
) -> bytes:
    """One internal-topic message: ``[2, columns, arrivals, batch_id]`` (msgpack).

    Columnar (version 2): each field is one column -- fixed-width numbers and the
    16-byte references as little-endian byte strings, the rest as arrays -- so
    encoding and decoding cost a few C calls per column instead of a list per
    record (ADR 0500). A batch whose references are not all :data:`REF_LEN` bytes
    or whose integers do not fit 64 bits is written as version 1, one array per
    record (``[1, [[record], ...], [arrival_us, ...], batch_id]``); both decode.

    ``batch_id`` lets the producer of the batch (an HTTP ingest request) be
    told when the batch has been decided; ``""`` when nobody waits.
    """
    out: bytes
    try:
        *cols, arrivals = _columns_v2(records, arrival_us)
    except (ValueError, OverflowError, TypeError):
        out = msgpack.packb(
            [1, [r.to_wire() for r in records], list(arrival_us), batch_id], use_bin_type=True
        )
        return out
    out = msgpack.packb([BATCH_VERSION, cols, arrivals, batch_id], use_bin_type=True)
    return out


_I8: Final = np.dtype("<i8")
_F8: Final = np.dtype("<f8")
#: columns of a version-2 batch, in order (after them: arrival times)
_V2_COLUMNS: Final = 15


_FIELDS: Final = attrgetter(
    "tx_id", "ts_us", "card_ref", "terminal_ref", "amount", "amount_minor", "currency", "bin",
    "merchant_ref", "device_ref", "mcc", "channel", "country", "label", "net_refs",
)  # fmt: skip


def _columns_v2(records: Sequence[TxRecord], arrival_us: Sequence[int]) -> list[Any]:
    n = len(records)
    if len(arrival_us) != n:
        raise ValueError("arrival times and records differ in length")
    if n == 0:
        return [[], b"", b"", b"", b"", b"", [], [], [], [], [], [], [], [], [], b""]
    c = list(zip(*map(_FIELDS, records), strict=True))  # one tuple per field, in C
    cards, terms = b"".join(c[2]), b"".join(c[3])
    if len(cards) != REF_LEN * n or len(terms) != REF_LEN * n:
        raise ValueError("a reference is not REF_LEN bytes")
    net = [[list(t) for t in x] if x else None for x in c[14]]
    return [
        list(c[0]), np.array(c[1], dtype=_I8).tobytes(), cards, terms,
        np.array(c[4], dtype=_F8).tobytes(), np.array(c[5], dtype=_I8).tobytes(),
        *(list(x) for x in c[6:14]), net, np.array(arrival_us, dtype=_I8).tobytes(),
    ]  # fmt: skip


def _opt(col: Any, n: int, types: type | tuple[type, ...], name: str) -> list[Any]:
    if type(col) is not list or len(col) != n:
        raise InputError(f"tx batch: column {name} is not an array of {n} items")
    if not all(x is None or isinstance(x, types) for x in col):
        raise InputError(f"tx batch: column {name} has an item of the wrong type")
    return col


def _fixed(b: Any, n: int, width: int, name: str) -> bytes:
    if type(b) is not bytes or len(b) != width * n:
        raise InputError(f"tx batch: column {name} is not {width * n} bytes")
    return b


def _net(x: Any) -> tuple[tuple[int, bytes, bytes], ...]:
    if x is None:
        return ()
    return tuple((int(e), bytes(c), bytes(t)) for e, c, t in x)


def _decode_v2(cols: Any, arrivals: Any) -> tuple[list[TxRecord], list[int]]:
    if type(cols) is not list or len(cols) != _V2_COLUMNS:
        raise InputError(f"tx batch: expected {_V2_COLUMNS} columns")
    ids = cols[0]
    if type(ids) is not list or not all(type(x) is str for x in ids):
        raise InputError("tx batch: column tx_id is not an array of strings")
    n = len(ids)
    ts = np.frombuffer(_fixed(cols[1], n, 8, "ts_us"), dtype=_I8).tolist()
    cb, tb = _fixed(cols[2], n, REF_LEN, "card_ref"), _fixed(cols[3], n, REF_LEN, "terminal_ref")
    cards = [cb[i : i + REF_LEN] for i in range(0, REF_LEN * n, REF_LEN)]
    terms = [tb[i : i + REF_LEN] for i in range(0, REF_LEN * n, REF_LEN)]
    amount = np.frombuffer(_fixed(cols[4], n, 8, "amount"), dtype=_F8).tolist()
    minor = np.frombuffer(_fixed(cols[5], n, 8, "amount_minor"), dtype=_I8).tolist()
    cur = _opt(cols[6], n, str, "currency")
    if None in cur:
        raise InputError("tx batch: column currency has an empty item")
    bins = _opt(cols[7], n, str, "bin")
    merch, dev = _opt(cols[8], n, bytes, "merchant_ref"), _opt(cols[9], n, bytes, "device_ref")
    mcc = _opt(cols[10], n, int, "mcc")
    chan, country = _opt(cols[11], n, str, "channel"), _opt(cols[12], n, str, "country")
    label = _opt(cols[13], n, int, "label")
    net = [_net(x) for x in _opt(cols[14], n, list, "net_refs")]
    arr = np.frombuffer(_fixed(arrivals, n, 8, "arrival_us"), dtype=_I8).tolist()
    recs = list(map(TxRecord, ids, ts, cards, terms, amount, minor, cur, bins, merch, dev, mcc,
                    chan, country, label, net))  # fmt: skip
    return recs, arr


def decode_tx_batch(data: bytes) -> tuple[list[TxRecord], list[int], str]:
    """Decode a version-2 (columnar) or version-1 batch; :class:`InputError` when malformed."""
    if len(data) > MAX_BATCH_BYTES:
        raise InputError(f"tx batch: {len(data)} bytes exceeds {MAX_BATCH_BYTES}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
        version, recs, arrivals, batch_id = obj
        if version == BATCH_VERSION:
            records, arrivals = _decode_v2(recs, arrivals)
        elif version == 1:
            records = [TxRecord.from_wire(w) for w in recs]
            arrivals = [int(a) for a in arrivals]
            if len(recs) != len(arrivals):
                raise InputError("tx batch: records and arrival times differ in length")
        else:
            raise InputError(f"tx batch: unsupported version {version!r}")
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"tx batch: not a valid batch message ({e})") from None
    return records, arrivals, str(batch_id)


def encode_decisions(decisions: Sequence[Decision]) -> bytes:
    """One decisions-topic message: a msgpack array of decision maps."""
    out: bytes = msgpack.packb([d.to_wire() for d in decisions], use_bin_type=True)
    return out


def decode_decisions(data: bytes) -> list[Decision]:
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise InputError(f"decisions message: not msgpack ({e})") from None
    if not isinstance(obj, list):
        raise InputError("decisions message: expected an array")
    return [Decision.from_wire(d) for d in obj]
