"""The Transaction type, its validation and normalisation.

A :class:`Transaction` is what a member's systems send: it may carry a raw
card number (PAN). It lives only in memory, only until
:func:`fraudnet.core.records.to_record` turns it into a :class:`TxRecord`
whose identifiers are keyed pseudonyms. ``repr`` masks the PAN.

Parsing is driven by a :class:`FieldMap` so a member can feed its own export
format; :data:`FDH_FIELDS` reads the Fraud Detection Handbook CSV layout.
Every error is a :class:`~fraudnet.errors.TransactionError` naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from fraudnet.errors import TransactionError

from .ids import looks_like_pan, mask_pan

__all__ = [
    "CHANNELS",
    "CURRENCY_EXPONENT",
    "DEFAULT_FIELDS",
    "FDH_FIELDS",
    "MAX_ID_LEN",
    "FieldMap",
    "Normaliser",
    "Transaction",
    "luhn_ok",
    "parse_record",
]

MAX_ID_LEN: Final = 64
MAX_AMOUNT_MINOR: Final = 10**13  # 100 billion major units: anything above is an error
#: a decimal amount whose leading digit is beyond 10**this is refused before it is scaled
#: to minor units (the exact MAX_AMOUNT_MINOR check follows for the rest)
MAX_AMOUNT_DIGITS: Final = 15
#: accepted range of transaction time: 2000-01-01 .. 2100-01-01 (µs since the epoch)
MIN_TS_US: Final = 946_684_800_000_000
MAX_TS_US: Final = 4_102_444_800_000_000

#: ISO 4217 minor-unit exponents (the common ones; others default to 2 when configured).
CURRENCY_EXPONENT: Final[dict[str, int]] = {
    "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2,
    "CZK": 2, "HUF": 2, "RON": 2, "CAD": 2, "AUD": 2, "NZD": 2, "CNY": 2, "INR": 2,
    "BRL": 2, "MXN": 2, "ZAR": 2, "SGD": 2, "HKD": 2, "TRY": 2, "ILS": 2, "AED": 2,
    "JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0,
    "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip

CHANNELS: Final[tuple[str, ...]] = ("pos", "ecom", "moto", "atm", "contactless", "other")

_ID_RE = re.compile(r"^[\x21-\x7e]{1,64}$")  # printable ASCII, no spaces
#: a run of 12-19 digits, optionally separated by single spaces or dashes (a possible PAN)
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){11,18}(?![ -]?[0-9])")
_POW10: Final[tuple[int, ...]] = tuple(10**i for i in range(8))
_LUHN_DOUBLE = bytes.maketrans(b"0123456789", b"0246813579")
#: amounts like "12", "12.5", "12.50" (ASCII digits): parsed without Decimal
_PLAIN_AMOUNT = re.compile(r"[0-9]{1,14}(?:\.[0-9]{0,3})?")


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a string of ASCII digits (same result as ``ids.is_luhn_valid``).

    >>> luhn_ok("4111111111111111"), luhn_ok("4111111111111112")
    (True, False)
    """
    b = digits.encode("ascii")[::-1]
    return (sum(b[0::2]) + sum(b[1::2].translate(_LUHN_DOUBLE)) - 48 * len(b)) % 10 == 0


def _has_pan_run(s: str) -> bool:
    """True if ``s`` contains a 12-19 digit run (spaces/dashes allowed) passing Luhn.

    The audit log refuses such strings (a possible card number), so a
    transaction id containing one must be refused at ingest, not at the audit log.
    """
    for m in _DIGIT_RUN.finditer(s):
        if luhn_ok(m.group(0).replace(" ", "").replace("-", "")):
            return True
    return False


_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True, slots=True)
class Transaction:
    """One card transaction, validated and normalised.

    ``ts_us`` is UTC microseconds since the Unix epoch. ``amount_minor`` is
    in minor units of ``currency``; ``amount`` is the same amount in the
    node's reporting currency, major units. ``label`` is 1/0 ground truth in
    replays, ``None`` in production.
    """

    tx_id: str
    ts_us: int
    card: str = field(repr=False)
    terminal_id: str
    amount_minor: int
    currency: str
    amount: float
    merchant_id: str | None = None
    mcc: int | None = None
    channel: str | None = None
    country: str | None = None
    device_id: str | None = None
    ip: str | None = None
    label: int | None = None

    @property
    def card_is_pan(self) -> bool:
        return looks_like_pan(self.card)

    @property
    def bin(self) -> str | None:
        """Bank identification number: the first 6 digits of a PAN, else None."""
        if not self.card_is_pan:
            return None
        return "".join(c for c in self.card if c.isdigit())[:6]

    @property
    def masked_card(self) -> str:
        return mask_pan(self.card)

    def __repr__(self) -> str:
        return (
            f"Transaction(tx_id={self.tx_id!r}, ts_us={self.ts_us}, card={self.masked_card!r}, "
            f"terminal_id={self.terminal_id!r}, amount_minor={self.amount_minor}, "
            f"currency={self.currency!r})"
        )


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Where each Transaction field is found in a source record.

    A value of ``None`` means the source has no such field. ``amount`` is a
    decimal amount in major units (e.g. ``"12.50"``); ``amount_minor`` an
    integer in minor units; give one of them. ``timestamp`` accepts ISO 8601
    (naive = UTC) or epoch seconds (int/float).
    """

    tx_id: str = "tx_id"
    timestamp: str = "timestamp"
    card: str = "card"
    terminal_id: str = "terminal_id"
    amount: str | None = "amount"
    amount_minor: str | None = "amount_minor"
    currency: str | None = "currency"
    merchant_id: str | None = "merchant_id"
    mcc: str | None = "mcc"
    channel: str | None = "channel"
    country: str | None = "country"
    device_id: str | None = "device_id"
    ip: str | None = "ip"
    label: str | None = "label"

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any], where: str = "field mapping") -> FieldMap:
        from fraudnet.errors import ConfigError

        known = set(cls.__dataclass_fields__)
        unknown = set(m) - known
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        for k, v in m.items():
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"{where}: {k} must be a column name (string), got {v!r}")
        return cls(**dict(m))


DEFAULT_FIELDS: Final = FieldMap()
FDH_FIELDS: Final = FieldMap(
    tx_id="TRANSACTION_ID",
    timestamp="TX_DATETIME",
    card="CUSTOMER_ID",
    terminal_id="TERMINAL_ID",
    amount="TX_AMOUNT",
    amount_minor=None,
    currency=None,
    merchant_id=None,
    mcc=None,
    channel=None,
    country=None,
    device_id=None,
    ip=None,
    label="TX_FRAUD",
)


@dataclass(frozen=True, slots=True)
class Normaliser:
    """Currency normalisation: ``amount = amount_minor / 10**exp * rate[currency]``.

    ``rates`` maps ISO 4217 codes to the value of one major unit in the
    reporting currency. The reporting currency itself has rate 1.
    ``default_currency`` is used when a source has no currency field.
    """

    reporting_currency: str = "EUR"
    default_currency: str = "EUR"
    rates: Mapping[str, float] = field(default_factory=dict)

    def rate(self, currency: str) -> float:
        if currency == self.reporting_currency:
            return 1.0
        r = self.rates.get(currency)
        if r is None:
            raise TransactionError(
                f"no exchange rate configured for {currency} (reporting currency "
                f"{self.reporting_currency}); add it to [currency.rates] in node.toml",
                field="currency",
            )
        return r


def _text(v: Any, name: str, *, required: bool) -> str | None:
    if type(v) is str and v and not v[0].isspace() and not v[-1].isspace():
        return v  # fast path: a non-empty string without surrounding whitespace
    if v is None or (isinstance(v, str) and v.strip() == ""):
        if required:
            raise TransactionError("missing", field=name)
        return None
    if isinstance(v, bool):
        raise TransactionError(f"expected a string, got {type(v).__name__}", field=name)
    if isinstance(v, int | float):
        if isinstance(v, float) and (not math.isfinite(v) or v != int(v)):
            raise TransactionError(f"expected an identifier, got {v!r}", field=name)
        v = str(int(v))
    if not isinstance(v, str):
        raise TransactionError(f"expected a string, got {type(v).__name__}", field=name)
    return v.strip()


def _ident(v: Any, name: str, *, required: bool) -> str | None:
    s = _text(v, name, required=required)
    if s is None:
        return None
    if not _ID_RE.match(s):
        shown = mask_pan(s)[:40]
        raise TransactionError(
            f"must be 1-{MAX_ID_LEN} printable ASCII characters without spaces, got {shown!r}",
            field=name,
        )
    return s


def _card(v: Any, name: str) -> str:
    s = _text(v, name, required=True)
    assert s is not None
    compact = s.replace(" ", "").replace("-", "")
    if compact.isdigit() and compact.isascii() and 12 <= len(compact) <= 19:
        if not luhn_ok(compact):
            raise TransactionError("card number fails the Luhn check", field=name)
        return compact
    if not _ID_RE.match(s):
        raise TransactionError(
            f"card id must be 1-{MAX_ID_LEN} printable ASCII characters", field=name
        )
    return s


def _timestamp(v: Any, name: str) -> int:
    if v is None or v == "":
        raise TransactionError("missing", field=name)
    if isinstance(v, bool):
        raise TransactionError("expected a timestamp, got a boolean", field=name)
    if isinstance(v, int | float):
        if not math.isfinite(v):
            raise TransactionError(f"not a finite number: {v!r}", field=name)
        if not -1e12 < v < 1e12:  # epoch seconds; v * 1e6 could overflow to infinity
            raise TransactionError("outside 2000-01-01..2100-01-01", field=name)
        us = round(v * 1_000_000)
    elif isinstance(v, str):
        s = v.strip()
        try:
            if s.replace(".", "", 1).isdigit():
                us = round(float(s) * 1_000_000)
            else:
                dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=UTC)
                us = round(dt.timestamp() * 1_000_000)
        except (ValueError, OverflowError):
            raise TransactionError(
                f"not an ISO 8601 time or epoch seconds: {s[:40]!r}", field=name
            ) from None
    else:
        raise TransactionError(f"expected a timestamp, got {type(v).__name__}", field=name)
    if not MIN_TS_US <= us < MAX_TS_US:
        raise TransactionError("outside 2000-01-01..2100-01-01", field=name)
    return us


def _int_field(v: Any, name: str, lo: int, hi: int) -> int | None:
    if v is None or v == "":
        return None
    try:
        if isinstance(v, bool):
            raise ValueError
        if isinstance(v, float):
            if v != int(v):
                raise ValueError
            v = int(v)
        n = int(v)
    except (ValueError, TypeError, OverflowError):
        raise TransactionError(f"expected an integer, got {str(v)[:20]!r}", field=name) from None
    if not lo <= n <= hi:
        raise TransactionError(f"must be in {lo}..{hi}, got {n}", field=name)
    return n


def _amount_minor(rec: Mapping[str, Any], fm: FieldMap, exp: int) -> int:
    if fm.amount_minor is not None and rec.get(fm.amount_minor) not in (None, ""):
        n = _int_field(rec[fm.amount_minor], fm.amount_minor, 0, MAX_AMOUNT_MINOR)
        assert n is not None
        return n
    if fm.amount is not None and rec.get(fm.amount) not in (None, ""):
        raw = rec[fm.amount]
        if isinstance(raw, bool):
            raise TransactionError("expected a decimal amount", field=fm.amount)
        text = raw if type(raw) is str else str(raw)
        if _PLAIN_AMOUNT.fullmatch(text):
            whole, _, frac = text.partition(".")
            if len(frac) <= exp:  # exact in minor units: no Decimal needed
                n = int(whole) * _POW10[exp] + (int(frac) * _POW10[exp - len(frac)] if frac else 0)
                if n > MAX_AMOUNT_MINOR:
                    raise TransactionError("amount too large", field=fm.amount)
                return n
        try:
            d = Decimal(str(raw).strip())
        except InvalidOperation:
            raise TransactionError(
                f"expected a decimal amount, got {str(raw)[:20]!r}", field=fm.amount
            ) from None
        if not d.is_finite() or d < 0:
            raise TransactionError(f"must be a non-negative amount, got {raw!r}", field=fm.amount)
        if d and d.adjusted() > MAX_AMOUNT_DIGITS:  # before scaling: 1e999999999 overflows
            raise TransactionError("amount too large", field=fm.amount)
        if d and d.adjusted() < -exp:  # below one minor unit (and 1e-99999999 would underflow)
            raise TransactionError(
                f"more than {exp} decimal places for this currency: {str(raw)[:20]!r}",
                field=fm.amount,
            )
        scaled = d.scaleb(exp)
        if scaled != scaled.to_integral_value():
            raise TransactionError(
                f"more than {exp} decimal places for this currency: {raw!r}", field=fm.amount
            )
        n = int(scaled)
        if n > MAX_AMOUNT_MINOR:
            raise TransactionError("amount too large", field=fm.amount)
        return n
    raise TransactionError("missing", field=fm.amount_minor or fm.amount or "amount")


_DEFAULT_NORMALISER: Final = Normaliser()


def _get(rec: Mapping[str, Any], key: str | None) -> Any:
    return None if key is None else rec.get(key)


def parse_record(
    rec: Mapping[str, Any],
    fields: FieldMap = DEFAULT_FIELDS,
    norm: Normaliser | None = None,
) -> Transaction:
    """Validate and normalise one source record (a dict of column -> value).

    Raises :class:`TransactionError` (without source/location: the caller
    adds them with :meth:`TransactionError.located`).
    """
    norm = norm or _DEFAULT_NORMALISER
    if type(rec) is not dict and not isinstance(rec, Mapping):  # the ABC check is slow
        raise TransactionError(f"expected an object, got {type(rec).__name__}")
    fm = fields
    tx_id = _ident(rec.get(fm.tx_id), fm.tx_id, required=True)
    assert tx_id is not None
    if len(tx_id) >= 12 and _has_pan_run(tx_id):
        # ids are written to topics and the audit log in clear: never a card number,
        # nor anything containing one (the audit log would refuse the decision record)
        raise TransactionError(
            "looks like or contains a card number (12-19 digits passing Luhn); use another id",
            field=fm.tx_id,
        )
    ts_us = _timestamp(rec.get(fm.timestamp), fm.timestamp)
    card = _card(rec.get(fm.card), fm.card)
    terminal = _ident(rec.get(fm.terminal_id), fm.terminal_id, required=True)
    assert terminal is not None
    cur_raw = _get(rec, fm.currency)
    if cur_raw in (None, ""):
        currency = norm.default_currency
    elif isinstance(cur_raw, str) and _CURRENCY_RE.match(cur_raw.strip().upper()):
        currency = cur_raw.strip().upper()
    else:
        raise TransactionError(
            f"expected an ISO 4217 code, got {str(cur_raw)[:10]!r}", field=fm.currency
        )
    exp = CURRENCY_EXPONENT.get(currency, 2)
    amount_minor = _amount_minor(rec, fm, exp)
    try:
        rate = norm.rate(currency)
    except TransactionError as e:
        raise TransactionError(e.reason, field=fm.currency or "currency") from None
    amount = amount_minor / (10**exp) * rate
    channel = _text(_get(rec, fm.channel), fm.channel or "channel", required=False)
    if channel is not None:
        channel = channel.lower()
        if channel not in CHANNELS:
            raise TransactionError(f"must be one of {', '.join(CHANNELS)}", field=fm.channel)
    country = _text(_get(rec, fm.country), fm.country or "country", required=False)
    if country is not None:
        country = country.upper()
        if not _COUNTRY_RE.match(country):
            raise TransactionError("expected an ISO 3166 alpha-2 code", field=fm.country)
    label = _int_field(_get(rec, fm.label), fm.label or "label", 0, 1)
    return Transaction(
        tx_id=tx_id,
        ts_us=ts_us,
        card=card,
        terminal_id=terminal,
        amount_minor=amount_minor,
        currency=currency,
        amount=amount,
        merchant_id=_ident(
            _get(rec, fm.merchant_id), fm.merchant_id or "merchant_id", required=False
        ),
        mcc=_int_field(_get(rec, fm.mcc), fm.mcc or "mcc", 0, 9999),
        channel=channel,
        country=country,
        device_id=_ident(_get(rec, fm.device_id), fm.device_id or "device_id", required=False),
        ip=_ident(_get(rec, fm.ip), fm.ip or "ip", required=False),
        label=label,
    )
