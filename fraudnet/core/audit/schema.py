"""Audit record schema and its canonical encoding.

Every record answers the PCI DSS requirement 10.2/10.3 questions in fixed
fields, plus kind-specific ``details``:

==========  ==========================================================
``actor``     who: the node (``node:<key id>``), a peer, an operator
``action``    what was done (``decide``, ``send``, ``reject``, ...)
``at_us``     when: wall-clock time of the event, µs since the epoch
``outcome``   result (``allow``/``review``/``block``, ``ok``, ``rejected``)
``origin``    where the event came from (``api``, ``stream:tx``, a peer id)
``resource``  the affected resource (``tx:<id>``, ``model:<id>``, ...)
==========  ==========================================================

Canonical body encoding (what is hashed, via the record payload of
:mod:`fraudnet.core.audit.framing`): the msgpack array::

    [1, kind, at_us, actor, action, outcome, origin, resource, details]

with ``details`` a map whose keys are sorted, floats always float64, bytes
as msgpack bin. New fields are only ever added at the end.

No raw card number is ever logged: :func:`check_no_pan` rejects any record
whose strings contain a maximal run of 12-19 digits (single spaces or
dashes allowed between digits) that passes the Luhn check. Runs inside a
hexadecimal token of 32+ characters that contains a letter (a digest such as
a model id) are not card numbers and are allowed. Card references are
logged as the node-local pseudonym *bytes* (never a string).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgpack

from fraudnet.errors import InputError

from ..ids import is_luhn_valid
from ..records import Decision

__all__ = [
    "KINDS",
    "MAX_BYTES_FIELD",
    "MAX_STR",
    "AuditRecord",
    "Kind",
    "Value",
    "check_no_pan",
    "decision_record",
    "decode_body",
    "encode_body",
    "event_record",
]

SCHEMA_VERSION: Final = 1
MAX_STR: Final = 4096
MAX_BYTES_FIELD: Final = 16384
MAX_LIST: Final = 256
MAX_DETAILS: Final = 64

Kind = Literal[
    "decision", "signal_sent", "signal_received", "signal_rejected", "verdict",
    "roster_change", "model_change", "policy_change", "config_change",
    "node_start", "node_stop",
]  # fmt: skip
KINDS: Final[tuple[str, ...]] = (
    "decision", "signal_sent", "signal_received", "signal_rejected", "verdict",
    "roster_change", "model_change", "policy_change", "config_change",
    "node_start", "node_stop",
)  # fmt: skip

Scalar = None | bool | int | float | str | bytes
Value = Scalar | list[Scalar] | tuple[Scalar, ...]

#: details every record of a kind must carry: key -> python type
REQUIRED: Final[dict[str, dict[str, type]]] = {
    "decision": {
        "tx_id": str, "card": bytes, "score": float, "reasons": list,
        "model_id": str, "latency_us": int,
    },
    "signal_sent": {"signal_id": str},
    "signal_received": {"signal_id": str, "peer": str},
    "signal_rejected": {"peer": str, "reason": str},
    "verdict": {"verdict_id": str},
    "roster_change": {"change": str},
    "model_change": {"model_id": str},
    "policy_change": {"policy_id": str},
    "config_change": {"change": str},
    "node_start": {},
    "node_stop": {},
}  # fmt: skip

_RUN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){11,18}(?![ -]?[0-9])")
_HEX = frozenset("0123456789abcdefABCDEF")


def _pan_in(text: str) -> bool:
    for m in _RUN.finditer(text):
        digits = m.group(0).replace(" ", "").replace("-", "")
        if not is_luhn_valid(digits):
            continue
        a, b = m.start(), m.end()
        while a > 0 and text[a - 1] in _HEX:
            a -= 1
        while b < len(text) and text[b] in _HEX:
            b += 1
        token = text[a:b]
        if len(token) >= 32 and not token.isdigit():
            continue  # a hex digest, not a card number
        return True
    return False


def check_no_pan(where: str, value: object) -> None:
    """Raise :class:`InputError` if a string in ``value`` looks like a card number.

    The message names the field, never the value.
    """
    if isinstance(value, str):
        if len(value) >= 12 and _pan_in(value):
            raise InputError(
                f"audit record: {where} contains a Luhn-valid 12-19 digit run (a possible "
                "card number); refusing to log it"
            )
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_no_pan(f"{where}[{i}]", v)


def _check_value(where: str, v: object, *, nested: bool = False) -> None:
    if v is None or isinstance(v, bool | int):
        if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
            raise InputError(f"audit record: {where} integer out of range")
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            raise InputError(f"audit record: {where} must be finite")
        return
    if isinstance(v, str):
        if len(v) > MAX_STR:
            raise InputError(f"audit record: {where} longer than {MAX_STR} characters")
        return
    if isinstance(v, bytes):
        if len(v) > MAX_BYTES_FIELD:
            raise InputError(f"audit record: {where} longer than {MAX_BYTES_FIELD} bytes")
        return
    if isinstance(v, list | tuple) and not nested:
        if len(v) > MAX_LIST:
            raise InputError(f"audit record: {where} has more than {MAX_LIST} items")
        for i, x in enumerate(v):
            _check_value(f"{where}[{i}]", x, nested=True)
        return
    raise InputError(f"audit record: {where} has unsupported type {type(v).__name__}")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited event (see module docstring). Validated on construction."""

    kind: str
    at_us: int
    actor: str
    action: str
    outcome: str
    origin: str
    resource: str
    details: Mapping[str, Value] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in REQUIRED:
            raise InputError(f"audit record: unknown kind {self.kind!r}")
        if isinstance(self.at_us, bool) or not isinstance(self.at_us, int) or self.at_us < 0:
            raise InputError(f"audit record {self.kind}: at_us must be a non-negative integer")
        for name in ("actor", "action", "outcome", "origin", "resource"):
            v = getattr(self, name)
            if not isinstance(v, str) or len(v) > MAX_STR:
                raise InputError(f"audit record {self.kind}: {name} must be a string <= {MAX_STR}")
            check_no_pan(name, v)
        if len(self.details) > MAX_DETAILS:
            raise InputError(f"audit record {self.kind}: more than {MAX_DETAILS} details")
        for k, v in self.details.items():
            if not isinstance(k, str) or not 0 < len(k) <= 64:
                raise InputError(f"audit record {self.kind}: detail keys must be short strings")
            _check_value(f"details.{k}", v)
            check_no_pan(f"details.{k}", k)
            check_no_pan(f"details.{k}", v)
        for k, t in REQUIRED[self.kind].items():
            v = self.details.get(k)
            if t is list:
                ok = isinstance(v, list | tuple)
            elif t is int or t is float:
                ok = isinstance(v, t) and not isinstance(v, bool)
            else:
                ok = isinstance(v, t)
            if not ok:
                raise InputError(
                    f"audit record {self.kind}: details.{k} is required "
                    f"({getattr(t, '__name__', t)})"
                )

    def to_wire(self) -> list[Any]:
        details = {k: list(v) if isinstance(v, tuple) else v for k, v in self.details.items()}
        return [
            SCHEMA_VERSION, self.kind, self.at_us, self.actor, self.action, self.outcome,
            self.origin, self.resource, dict(sorted(details.items())),
        ]  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly view (bytes as lowercase hex)."""

        def conv(v: Any) -> Any:
            if isinstance(v, bytes):
                return v.hex()
            if isinstance(v, list | tuple):
                return [conv(x) for x in v]
            return v

        return {
            "kind": self.kind, "at_us": self.at_us, "actor": self.actor,
            "action": self.action, "outcome": self.outcome, "origin": self.origin,
            "resource": self.resource,
            "details": {k: conv(v) for k, v in sorted(self.details.items())},
        }  # fmt: skip


def encode_body(rec: AuditRecord) -> bytes:
    """Canonical bytes of a record body (deterministic for equal records)."""
    return bytes(msgpack.packb(rec.to_wire(), use_bin_type=True))


def decode_body(data: bytes) -> AuditRecord:
    """Parse and validate canonical body bytes; :class:`InputError` when malformed."""
    try:
        w = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as e:
        raise InputError(f"audit record: body is not msgpack ({type(e).__name__})") from None
    if not isinstance(w, list) or len(w) < 9 or w[0] != SCHEMA_VERSION:
        raise InputError("audit record: body is not a version-1 record array")
    if not isinstance(w[8], dict):
        raise InputError("audit record: details must be a map")
    try:
        rec = AuditRecord(w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8])
    except TypeError as e:
        raise InputError(f"audit record: {e}") from None
    return rec


def decision_record(d: Decision, *, actor: str, origin: str) -> AuditRecord:
    """The ``decision`` record of one :class:`~fraudnet.core.records.Decision`.

    ``actor`` is the deciding node (``node:<key id>``), ``origin`` where the
    transaction came from (``api``, ``stream:<topic>``). ``at_us`` is the
    decision time.
    """
    return AuditRecord(
        kind="decision",
        at_us=d.decided_at_us,
        actor=actor,
        action="decide",
        outcome=d.outcome,
        origin=origin,
        resource=f"tx:{d.tx_id}",
        details={
            "tx_id": d.tx_id,
            "card": d.card_ref,
            "score": float(d.score),
            "reasons": list(d.reasons),
            "model_id": d.model_id,
            "latency_us": int(d.latency_us),
            "tx_ts_us": int(d.ts_us),
        },
    )


def event_record(
    kind: str,
    *,
    at_us: int,
    actor: str,
    action: str,
    outcome: str = "ok",
    origin: str = "node",
    resource: str = "",
    details: Mapping[str, Value] | None = None,
    **more: Value,
) -> AuditRecord:
    """Any other record kind; ``details`` and keyword extras are merged."""
    merged: dict[str, Value] = dict(details or {})
    merged.update(more)
    return AuditRecord(kind, at_us, actor, action, outcome, origin, resource, merged)
