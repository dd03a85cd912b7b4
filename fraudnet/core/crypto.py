"""Domain-separated Ed25519 signatures.

Every signature fraudnet makes is over::

    b"fraudnet/v1\\x00" || context || b"\\x00" || network_id || b"\\x00" || payload

where ``context`` names what is signed (:data:`CONTEXTS`). A signature made
for one context can therefore never verify as another (a signal envelope can
never pass as a roster vote or an audit checkpoint), nor across networks.
Sign and verify *bytes*: encode once, sign the encoded bytes, and verify
received bytes before decoding them.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "CONTEXTS",
    "PUBLIC_KEY_LEN",
    "SIGNATURE_LEN",
    "key_id",
    "load_public",
    "public_bytes",
    "sign",
    "signing_input",
    "verify",
]

PREFIX: Final = b"fraudnet/v1\x00"
SIGNATURE_LEN: Final = 64
PUBLIC_KEY_LEN: Final = 32
#: every context a fraudnet signature may be made in
CONTEXTS: Final = frozenset(
    {
        b"signal-envelope",
        b"audit-checkpoint",
        b"audit-cosign",
        b"roster-genesis",
        b"roster-vote",
        b"attestation",
        b"equivocation-proof",
        b"model-share",
    }
)


def signing_input(context: bytes, network_id: bytes, payload: bytes) -> bytes:
    if context not in CONTEXTS:
        raise ValueError(f"unknown signature context {context!r}")
    if b"\x00" in network_id:
        raise ValueError("network id must not contain NUL")
    return PREFIX + context + b"\x00" + network_id + b"\x00" + payload


def sign(key: Ed25519PrivateKey, context: bytes, network_id: bytes, payload: bytes) -> bytes:
    """64-byte Ed25519 signature of ``payload`` in ``context`` on ``network_id``."""
    return key.sign(signing_input(context, network_id, payload))


def verify(
    public_key: bytes, signature: bytes, context: bytes, network_id: bytes, payload: bytes
) -> bool:
    """True iff ``signature`` is valid; never raises on malformed keys or signatures."""
    if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, signing_input(context, network_id, payload)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id(public_key: bytes) -> str:
    """Short stable id of a public key: first 16 hex chars of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]
