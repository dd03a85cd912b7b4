"""Decision records of a whole batch: validated and encoded per batch.

:func:`decision_bodies` returns exactly the bytes of
``[encode_body(decision_record(d, actor=..., origin=...)) for d in decisions]``
(same canonical encoding, same on-disk records, so verification and
``fraudnet audit prove`` are unchanged) and raises the same
:class:`~fraudnet.errors.InputError` for the same inputs. It gets there
without building and validating one :class:`~.schema.AuditRecord` per
decision (~17 µs each, ~100 ``isinstance`` calls):

* fields that are the same for the whole batch (``actor``, ``origin``, the
  detail keys) are checked once;
* the card-number check runs once over all the batch's distinct strings
  joined with ``"\\x00"`` -- a separator that is neither a digit, a space,
  a dash nor a hex digit, so a digit run or hex token never spans two
  strings and ``_pan_in(joined)`` is true exactly when it is true for one
  of them;
* types, lengths and number ranges are checked with C-level ``all``/``map``
  /``min``/``max`` over the batch's columns.

Whenever a fast check fails (including conservatively, e.g. a ``reasons``
item that is not a string), the whole batch takes the reference path,
which raises the precise, field-naming error or returns the same bytes.
A property test checks byte equality and error equivalence against the
reference for arbitrary decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import msgpack

from ..records import Decision
from .schema import (
    MAX_BYTES_FIELD,
    MAX_LIST,
    MAX_STR,
    SCHEMA_VERSION,
    _pan_in,
    decision_record,
    encode_body,
)

__all__ = ["decision_bodies", "decision_bodies_reference"]

_I64_MIN: Final = -(2**63)
_U64_END: Final = 2**64
#: a tx id longer than this makes ``resource = "tx:" + tx_id`` exceed MAX_STR
_MAX_TX_ID: Final = MAX_STR - 3


def decision_bodies_reference(
    decisions: Sequence[Decision], *, actor: str, origin: str
) -> list[bytes]:
    """The per-record reference: one validated :class:`AuditRecord` per decision."""
    return [encode_body(decision_record(d, actor=actor, origin=origin)) for d in decisions]


def _fast_ok(decisions: Sequence[Decision], actor: str, origin: str) -> bool:
    """True when every check of the reference path is known to pass."""
    if type(actor) is not str or type(origin) is not str:
        return False
    if len(actor) > MAX_STR or len(origin) > MAX_STR:
        return False
    ids = [d.tx_id for d in decisions]
    if not all(type(s) is str for s in ids) or max(map(len, ids)) > _MAX_TX_ID:
        return False
    texts = set(ids)
    texts.add(actor)
    texts.add(origin)
    for group in ({d.outcome for d in decisions}, {d.model_id for d in decisions}):
        if not all(type(s) is str and len(s) <= MAX_STR for s in group):
            return False
        texts |= group
    reason_sets = {d.reasons for d in decisions}  # a handful of distinct tuples per batch
    for rs in reason_sets:
        if type(rs) is not tuple or len(rs) > MAX_LIST:
            return False
        if not all(type(s) is str and len(s) <= MAX_STR for s in rs):
            return False
        texts.update(rs)
    cards = [d.card_ref for d in decisions]
    if not all(type(c) is bytes and len(c) <= MAX_BYTES_FIELD for c in cards):
        return False
    scores = [d.score for d in decisions]
    if not all(type(x) is float for x in scores) or not all(map(math.isfinite, scores)):
        return False
    for col, lo in (
        ([d.decided_at_us for d in decisions], 0),
        ([d.latency_us for d in decisions], _I64_MIN),
        ([d.ts_us for d in decisions], _I64_MIN),
    ):
        if not all(type(x) is int for x in col) or min(col) < lo or max(col) >= _U64_END:
            return False
    joined = "\x00".join(texts)
    return not _pan_in(joined)


def decision_bodies(decisions: Sequence[Decision], *, actor: str, origin: str) -> list[bytes]:
    """Canonical ``decision`` record bodies of ``decisions`` (see module docstring).

    Raises :class:`~fraudnet.errors.InputError` exactly when the reference path would (for
    example a transaction id containing a Luhn-valid 12-19 digit run).
    """
    if not decisions:
        return []
    if not _fast_ok(decisions, actor, origin):
        return decision_bodies_reference(decisions, actor=actor, origin=origin)
    pack = msgpack.Packer(use_bin_type=True).pack
    out: list[bytes] = []
    append = out.append
    for d in decisions:
        tx_id = d.tx_id
        append(
            pack(
                [
                    SCHEMA_VERSION, "decision", d.decided_at_us, actor, "decide", d.outcome,
                    origin, "tx:" + tx_id,
                    {  # keys in sorted order, as AuditRecord.to_wire writes them
                        "card": d.card_ref, "latency_us": d.latency_us, "model_id": d.model_id,
                        "reasons": list(d.reasons), "score": d.score, "tx_id": tx_id,
                        "tx_ts_us": d.ts_us,
                    },
                ]
            )
        )  # fmt: skip
    return out
