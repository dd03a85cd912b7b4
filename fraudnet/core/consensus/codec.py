"""Canonical msgpack for every signed consensus object, and strict field readers.

Every signed object is a msgpack *array* with a fixed field order (never a
map), integers and byte strings only (never floats), so one value has exactly
one encoding. :func:`unpack_canonical` decodes with hard size limits and then
re-encodes: bytes that are valid msgpack but not the canonical encoding of
what they decode to are rejected, so a signature always covers the one
canonical form.

The ``want_*`` readers turn a decoded value into a typed field or raise
:class:`~fraudnet.errors.ConsensusError` naming the object and the field.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from fraudnet.errors import ConsensusError

__all__ = [
    "MAX_ID_LEN",
    "pack",
    "unpack_canonical",
    "want_bytes",
    "want_int",
    "want_list",
    "want_str",
]

MAX_ID_LEN: Final = 64
_MAX_INT: Final = (1 << 63) - 1


def pack(obj: Any) -> bytes:
    """The canonical encoding of ``obj`` (arrays, ints, str, bin)."""
    out = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def unpack_canonical(data: bytes, what: str, max_bytes: int) -> Any:
    """Decode ``data`` (at most ``max_bytes``), requiring it to be canonical."""
    if not isinstance(data, bytes | bytearray):
        raise ConsensusError("malformed", f"{what}: expected bytes")
    if len(data) > max_bytes:
        raise ConsensusError("oversize", f"{what}: {len(data)} bytes exceeds {max_bytes}")
    try:
        obj = msgpack.unpackb(
            bytes(data),
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=max_bytes,
            max_str_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises many types on hostile bytes
        raise ConsensusError(
            "malformed", f"{what}: not valid msgpack ({type(e).__name__})"
        ) from None
    try:
        again = pack(obj)
    except Exception:
        raise ConsensusError("malformed", f"{what}: not re-encodable") from None
    if again != bytes(data):
        raise ConsensusError("non-canonical", f"{what}: not the canonical encoding")
    return obj


def want_list(x: Any, what: str, *, n: int | None = None, max_len: int | None = None) -> list[Any]:
    if not isinstance(x, list):
        raise ConsensusError("malformed", f"{what}: expected an array")
    if n is not None and len(x) != n:
        raise ConsensusError("malformed", f"{what}: expected {n} items, found {len(x)}")
    if max_len is not None and len(x) > max_len:
        raise ConsensusError("oversize", f"{what}: {len(x)} items exceeds {max_len}")
    return x


def want_int(x: Any, what: str, *, lo: int = 0, hi: int = _MAX_INT) -> int:
    if not isinstance(x, int) or isinstance(x, bool):
        raise ConsensusError("malformed", f"{what}: expected an integer")
    if not lo <= x <= hi:
        raise ConsensusError("malformed", f"{what}: {x} outside [{lo}, {hi}]")
    return x


def want_bytes(x: Any, what: str, *, n: int | None = None, max_len: int = 1 << 20) -> bytes:
    if not isinstance(x, bytes):
        raise ConsensusError("malformed", f"{what}: expected a byte string")
    if n is not None and len(x) != n:
        raise ConsensusError("malformed", f"{what}: expected {n} bytes, found {len(x)}")
    if len(x) > max_len:
        raise ConsensusError("oversize", f"{what}: {len(x)} bytes exceeds {max_len}")
    return x


def want_str(x: Any, what: str, *, max_len: int = MAX_ID_LEN, min_len: int = 0) -> str:
    if not isinstance(x, str):
        raise ConsensusError("malformed", f"{what}: expected a string")
    if not min_len <= len(x) <= max_len:
        raise ConsensusError("malformed", f"{what}: length {len(x)} outside [{min_len}, {max_len}]")
    if "\x00" in x:
        raise ConsensusError("malformed", f"{what}: contains NUL")
    return x
