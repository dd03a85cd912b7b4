"""The tamper-evident audit log, sans-IO.

* :mod:`.schema` -- what a record says (PCI DSS 10 fields) and its canonical bytes
* :mod:`.framing` -- length + CRC frames; record payload = seq + prev hash + body
* :mod:`.merkle` -- RFC 6962 tree, inclusion and consistency proofs
* :mod:`.checkpoint` -- signed checkpoints (and the cosignature format)
* :mod:`.segment` -- segment header and checkpoint sidecar formats
* :mod:`.verify` -- the streaming verifier naming the first bad record

Files, fsync, recovery and retention live in
:mod:`fraudnet.adapters.storage.audit_log`.
"""

from __future__ import annotations

from .checkpoint import Checkpoint, cosign, open_checkpoint, sign_checkpoint, verify_cosignature
from .merkle import (
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from .schema import KINDS, AuditRecord, check_no_pan, decision_record, event_record
from .verify import Damage, LogVerifier, VerifyReport

__all__ = [
    "KINDS",
    "AuditRecord",
    "Checkpoint",
    "Damage",
    "Frontier",
    "LogVerifier",
    "VerifyReport",
    "check_no_pan",
    "consistency_proof",
    "cosign",
    "decision_record",
    "event_record",
    "inclusion_proof",
    "leaf_hash",
    "open_checkpoint",
    "sign_checkpoint",
    "verify_consistency",
    "verify_cosignature",
    "verify_inclusion",
]
