"""Signed, pseudonymous risk signals: types, codec, signing, keyring, validation.

Sans-IO: everything here takes bytes, values and ``now`` and returns values.
The libp2p transport lives in :mod:`fraudnet.adapters.p2p`.
"""

from .batcher import SignalBatcher
from .codec import (
    ENTITY_CODES,
    MAX_ENVELOPE_BYTES,
    MAX_SIGNALS,
    VERSION,
    Envelope,
    Signal,
    SignalPayload,
    coarse_count,
    decode_envelope,
    decode_payload,
    encode_envelope,
    encode_payload,
)
from .envelope import seal, seal_bytes, verify_envelope
from .keyring import EpochKey, NetworkKeyring, PseudonymLinks
from .policy import SignalPolicy
from .validate import REASONS, Outcome, ValidationConfig, Validator, Verdict

__all__ = [
    "ENTITY_CODES",
    "MAX_ENVELOPE_BYTES",
    "MAX_SIGNALS",
    "REASONS",
    "VERSION",
    "Envelope",
    "EpochKey",
    "NetworkKeyring",
    "Outcome",
    "PseudonymLinks",
    "Signal",
    "SignalBatcher",
    "SignalPayload",
    "SignalPolicy",
    "ValidationConfig",
    "Validator",
    "Verdict",
    "coarse_count",
    "decode_envelope",
    "decode_payload",
    "encode_envelope",
    "encode_payload",
    "seal",
    "seal_bytes",
    "verify_envelope",
]
