"""Sealing (encode + sign) and verifying signal envelopes.

Sign bytes, not objects: :func:`seal` encodes the payload once and signs the
encoded bytes in the ``signal-envelope`` context of :mod:`fraudnet.core.crypto`
(domain separation: such a signature can never verify as a roster vote or an
audit checkpoint, nor on another network). :func:`verify_envelope` checks the
received payload bytes before anything decodes them.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core import crypto

from .codec import (
    TYPE_CONTEXTS,
    VERSION,
    Envelope,
    SignalPayload,
    encode_envelope,
    encode_payload,
)

__all__ = ["seal", "seal_bytes", "verify_envelope"]


def seal_bytes(
    key: Ed25519PrivateKey, type_: str, network_id: str, signer: str, payload: bytes
) -> bytes:
    """Wire bytes of an envelope of ``type_`` carrying already-encoded ``payload``."""
    context = TYPE_CONTEXTS[type_]
    sig = crypto.sign(key, context, network_id.encode("utf-8"), payload)
    return encode_envelope(Envelope(VERSION, type_, network_id, signer, payload, sig))


def seal(key: Ed25519PrivateKey, payload: SignalPayload) -> bytes:
    """Encode ``payload`` canonically, sign it, and return the envelope's wire bytes."""
    return seal_bytes(key, "signals", payload.network_id, payload.signer, encode_payload(payload))


def verify_envelope(env: Envelope, public_key: bytes) -> bool:
    """True iff ``env.signature`` is the signer's signature over its payload bytes."""
    context = TYPE_CONTEXTS.get(env.type)
    if context is None:
        return False
    return crypto.verify(
        public_key, env.signature, context, env.network_id.encode("utf-8"), env.payload
    )
