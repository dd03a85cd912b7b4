"""Signed checkpoints of the audit log (and the cosignature format for witnesses).

A checkpoint commits the node to the first ``tree_size`` records of its log.
Its *body* is 85 fixed bytes::

    b"FNCK" | u8 version (1) | 32-byte Ed25519 public key of the log
            | u64 BE tree_size | u64 BE time_us | 32-byte RFC 6962 root

and a *signed checkpoint* is ``body || signature`` where the 64-byte
signature is :func:`fraudnet.core.crypto.sign` over ``body`` in context
``audit-checkpoint`` on the network id. A witness *cosigns* by signing the
very same body bytes in context ``audit-cosign`` (:func:`cosign`), so a
cosignature can be checked against a checkpoint without re-encoding
anything. Signatures are always verified (with a key the verifier already
trusts) before the body is decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.errors import IntegrityError

from .. import crypto

__all__ = [
    "BODY_LEN",
    "SIGNED_LEN",
    "Checkpoint",
    "cosign",
    "open_checkpoint",
    "sign_checkpoint",
    "verify_cosignature",
]

_BODY: Final = struct.Struct(">4sB32sQQ32s")
MAGIC: Final = b"FNCK"
VERSION: Final = 1
BODY_LEN: Final = _BODY.size
SIGNED_LEN: Final = BODY_LEN + crypto.SIGNATURE_LEN
CONTEXT: Final = b"audit-checkpoint"
COSIGN_CONTEXT: Final = b"audit-cosign"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The log of ``public_key`` had ``tree_size`` records with ``root`` at ``time_us``."""

    public_key: bytes
    tree_size: int
    time_us: int
    root: bytes

    def encode(self) -> bytes:
        return _BODY.pack(MAGIC, VERSION, self.public_key, self.tree_size, self.time_us, self.root)

    @classmethod
    def decode(cls, body: bytes) -> Checkpoint:
        if len(body) != BODY_LEN:
            raise IntegrityError(f"checkpoint: body is {len(body)} bytes, expected {BODY_LEN}")
        magic, version, pub, size, t, root = _BODY.unpack(body)
        if magic != MAGIC or version != VERSION:
            raise IntegrityError("checkpoint: not a version-1 fraudnet checkpoint")
        return cls(pub, size, t, root)

    def as_json(self) -> dict[str, Any]:
        return {
            "public_key": self.public_key.hex(),
            "tree_size": self.tree_size,
            "time_us": self.time_us,
            "root": self.root.hex(),
        }


def sign_checkpoint(key: Ed25519PrivateKey, network_id: str, cp: Checkpoint) -> bytes:
    """``body || signature`` of ``cp`` (its public key must be ``key``'s)."""
    if cp.public_key != crypto.public_bytes(key):
        raise ValueError("checkpoint public key is not the signing key")
    body = cp.encode()
    return body + crypto.sign(key, CONTEXT, network_id.encode("utf-8"), body)


def open_checkpoint(signed: bytes, public_key: bytes, network_id: str) -> Checkpoint:
    """Verify a signed checkpoint against a trusted key, then decode it.

    Raises :class:`IntegrityError` naming the problem (length, signature,
    key mismatch); never returns an unverified checkpoint.
    """
    if len(signed) != SIGNED_LEN:
        raise IntegrityError(f"checkpoint: {len(signed)} bytes, expected {SIGNED_LEN}")
    body, sig = signed[:BODY_LEN], signed[BODY_LEN:]
    if not crypto.verify(public_key, sig, CONTEXT, network_id.encode("utf-8"), body):
        raise IntegrityError(
            f"checkpoint: bad signature for key {crypto.key_id(public_key)} "
            f"on network {network_id!r}"
        )
    cp = Checkpoint.decode(body)
    if cp.public_key != public_key:
        raise IntegrityError("checkpoint: signed by the trusted key but names another log key")
    return cp


def cosign(key: Ed25519PrivateKey, network_id: str, signed: bytes) -> bytes:
    """A witness's 64-byte cosignature over the body of a signed checkpoint."""
    return crypto.sign(key, COSIGN_CONTEXT, network_id.encode("utf-8"), signed[:BODY_LEN])


def verify_cosignature(
    witness_key: bytes, cosignature: bytes, network_id: str, signed: bytes
) -> bool:
    return crypto.verify(
        witness_key, cosignature, COSIGN_CONTEXT, network_id.encode("utf-8"), signed[:BODY_LEN]
    )
