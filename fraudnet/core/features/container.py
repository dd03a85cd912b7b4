"""A small, pickle-free container for named numpy arrays plus a JSON header.

Layout::

    magic (4 bytes) | u32 header length | header (UTF-8 JSON) | array bytes...

The header holds ``meta`` (any JSON object) and, per array, its name,
dtype (from an allow-list of plain numeric dtypes), shape, offset and
length. Decoding checks every length and offset against the buffer and
never executes or unpickles anything; arrays are copied out of the buffer
so the result is writable and owns its memory.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fraudnet.errors import InputError

__all__ = ["MAX_HEADER", "pack", "unpack"]

MAX_HEADER: Final = 1 << 20
_DTYPES: Final = frozenset(
    {"<f8", "<f4", "<i8", "<i4", "<i2", "|i1", "<u8", "<u4", "<u2", "|u1", "|b1"}
)


def pack(magic: bytes, meta: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """Encode ``meta`` and ``arrays`` (little-endian, C order) behind ``magic``."""
    if len(magic) != 4:
        raise ValueError("magic must be 4 bytes")
    entries = []
    blobs = []
    offset = 0
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        a = a.astype(dt, copy=False)
        if dt.str not in _DTYPES:
            raise ValueError(f"array {name!r}: dtype {dt.str} not allowed")
        raw = a.tobytes()
        entries.append(
            {"name": name, "dtype": dt.str, "shape": list(a.shape), "offset": offset,
             "length": len(raw)}
        )  # fmt: skip
        blobs.append(raw)
        offset += len(raw)
    header = json.dumps({"meta": dict(meta), "arrays": entries}, sort_keys=True).encode()
    return magic + struct.pack("<I", len(header)) + header + b"".join(blobs)


def unpack(
    data: bytes, magic: bytes, what: str
) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """Decode a :func:`pack` buffer; :class:`InputError` naming ``what`` on any damage."""

    def bad(msg: str) -> InputError:
        return InputError(f"{what}: {msg}")

    if len(data) < 8 or data[:4] != magic:
        raise bad(f"not a {magic!r} container (bad magic)")
    (hlen,) = struct.unpack_from("<I", data, 4)
    if hlen > MAX_HEADER or 8 + hlen > len(data):
        raise bad(f"header length {hlen} out of bounds")
    try:
        header = json.loads(data[8 : 8 + hlen].decode("utf-8"))
        meta = header["meta"]
        entries = header["arrays"]
        if not isinstance(meta, dict) or not isinstance(entries, list):
            raise TypeError("meta/arrays have the wrong type")
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise bad(f"corrupt header ({e})") from None
    body = memoryview(data)[8 + hlen :]
    arrays: dict[str, npt.NDArray[Any]] = {}
    for ent in entries:
        try:
            name, dts, shape = str(ent["name"]), str(ent["dtype"]), [int(x) for x in ent["shape"]]
            off, length = int(ent["offset"]), int(ent["length"])
        except (KeyError, TypeError, ValueError, OverflowError) as err:  # JSON Infinity
            raise bad(f"corrupt array entry ({err})") from None
        if dts not in _DTYPES:
            raise bad(f"array {name!r}: dtype {dts!r} not allowed")
        dt = np.dtype(dts)
        count = 1
        for s in shape:
            if s < 0:
                raise bad(f"array {name!r}: negative dimension")
            count *= s
        if off < 0 or length != count * dt.itemsize or off + length > len(body):
            raise bad(f"array {name!r}: length/offset do not match the data")
        arrays[name] = np.frombuffer(body[off : off + length], dtype=dt).reshape(shape).copy()
    return meta, arrays
