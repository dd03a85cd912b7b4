"""Canonical identifier encoding and keyed pseudonyms.

An identifier (card number, terminal id, ...) is turned into bytes in one
canonical way before it is hashed, so that two members that see the same card
compute the same pseudonym with the same key:

* ``card``: a PAN is its digits only (spaces and dashes removed); a card id
  that is not a PAN is its UTF-8 bytes, stripped of surrounding whitespace.
* every other kind: the UTF-8 bytes of the stripped string.

A pseudonym is ``HMAC-SHA256(key, kind_tag || 0x00 || canonical)``. The
one-byte-per-character ASCII kind tag and the NUL separator make the input
unambiguous (no kind tag contains NUL). Node-local references (state keys,
decisions, audit) use the node's own secret; network pseudonyms use the
network key (see :mod:`fraudnet.core.signals`).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, Literal

__all__ = [
    "ENTITY_KINDS",
    "EntityKind",
    "canonical_id",
    "is_luhn_valid",
    "key64",
    "looks_like_pan",
    "mask_pan",
    "pseudonym",
]

EntityKind = Literal["card", "terminal", "merchant", "device", "bin", "country", "ip"]
ENTITY_KINDS: Final[tuple[str, ...]] = (
    "card",
    "terminal",
    "merchant",
    "device",
    "bin",
    "country",
    "ip",
)


def is_luhn_valid(digits: str) -> bool:
    """Luhn checksum of a string of digits.

    >>> is_luhn_valid("4111111111111111")
    True
    >>> is_luhn_valid("4111111111111112")
    False
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _pan_digits(value: str) -> str | None:
    stripped = value.strip().replace(" ", "").replace("-", "")
    if 12 <= len(stripped) <= 19 and stripped.isascii() and stripped.isdigit():
        return stripped
    return None


def looks_like_pan(value: str) -> bool:
    """True for 12-19 digits (spaces/dashes allowed) passing the Luhn check."""
    digits = _pan_digits(value)
    return digits is not None and is_luhn_valid(digits)


def canonical_id(kind: str, value: str) -> bytes:
    """The canonical byte encoding of an identifier of ``kind``.

    >>> canonical_id("card", "4111 1111-1111 1111")
    b'4111111111111111'
    >>> canonical_id("terminal", "  T-17 ")
    b'T-17'
    """
    if kind == "card":
        digits = _pan_digits(value)
        if digits is not None:
            return digits.encode("ascii")
    return value.strip().encode("utf-8")


def pseudonym(key: bytes, kind: str, value: str) -> bytes:
    """32-byte keyed pseudonym of an identifier (see module docstring)."""
    msg = kind.encode("ascii") + b"\x00" + canonical_id(kind, value)
    return hmac.new(key, msg, hashlib.sha256).digest()


def key64(ref: bytes) -> int:
    """First 8 bytes of a pseudonym as an unsigned 64-bit integer (state-array key)."""
    return int.from_bytes(ref[:8], "little")


def mask_pan(value: str) -> str:
    """Mask a PAN for display: first 6 and last 4 digits kept (PCI DSS 3.4).

    >>> mask_pan("4111111111111111")
    '411111******1111'
    >>> mask_pan("card-42")
    'card-42'
    """
    digits = _pan_digits(value)
    if digits is None:
        return value
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]
