"""The verdict store: an append-only file of verdict certificates.

Format (all integers big-endian)::

    b"FNVERDICTS1\\n"                                  header, 12 bytes
    { u32 length | u32 crc32(cert) | cert bytes }*    one record per certificate

``cert`` is :meth:`fraudnet.core.consensus.Certificate.encode`. A node
appends each certificate it derives; ``fraudnet verdict show`` reads the file
with no running node. Readers bound every length and name the byte offset of
the first damaged record (a torn final record after a crash included).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Final

from fraudnet.core.consensus import Certificate
from fraudnet.core.consensus.verdict import MAX_CERT_BYTES
from fraudnet.errors import ConsensusError, InputError, IntegrityError

__all__ = ["MAGIC", "append_certificate", "read_certificates"]

MAGIC: Final = b"FNVERDICTS1\n"
_HDR: Final = struct.Struct(">II")


def append_certificate(path: Path, cert: Certificate, *, fsync: bool = True) -> None:
    """Append one certificate (creating the file with its header if absent)."""
    data = cert.encode()
    record = _HDR.pack(len(data), zlib.crc32(data)) + data
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except OSError as e:
        raise InputError(f"{path}: cannot open verdict store ({e.strerror})") from None
    try:
        if os.fstat(fd).st_size == 0:
            os.write(fd, MAGIC)
        os.write(fd, record)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_certificates(path: Path) -> list[Certificate]:
    """Every certificate in the store, in append order."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read verdict store ({e.strerror})") from None
    if not data.startswith(MAGIC):
        raise InputError(f"{path}: not a fraudnet verdict store (bad header)")
    out: list[Certificate] = []
    off = len(MAGIC)
    while off < len(data):
        if off + _HDR.size > len(data):
            raise IntegrityError(f"{path}: offset {off}: truncated record header")
        length, crc = _HDR.unpack_from(data, off)
        body = data[off + _HDR.size : off + _HDR.size + length]
        if length > MAX_CERT_BYTES:
            raise IntegrityError(f"{path}: offset {off}: record length {length} exceeds bound")
        if len(body) != length:
            raise IntegrityError(f"{path}: offset {off}: truncated record")
        if zlib.crc32(body) != crc:
            raise IntegrityError(f"{path}: offset {off}: checksum mismatch")
        try:
            out.append(Certificate.decode(body))
        except ConsensusError as e:
            raise IntegrityError(f"{path}: offset {off}: {e}") from None
        off += _HDR.size + length
    return out
