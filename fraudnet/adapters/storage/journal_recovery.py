"""Settle the journal intents a crash left unconfirmed (rule 4 of :mod:`.journal`).

An unconfirmed intent is a batch the node decided and folded into its
feature state, whose acknowledgement may or may not have happened: the
crash came between the fold and the de-dup insert. Its decisions may be in
the audit log (the fsync finished) or not. For each one this module reads
the audit log from the position stored with the oldest intent, appends the
decisions the log lacks (``origin`` prefixed ``recovered:``, same record
layout), fsyncs, and only then inserts the de-dup rows and confirms the
intent. Afterwards every transaction the feature state counts has exactly
one decision record and one de-dup row, so a sender's retry is answered as
a duplicate instead of being decided (and counted) a second time.

Runs once at start, before the node serves anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fraudnet.core.audit.framing import parse_record_payload
from fraudnet.core.audit.schema import AuditRecord, decision_record, decode_body
from fraudnet.errors import AuditError, InputError

from . import journal_faults
from .audit_files import iter_payloads
from .dedup import DedupStore

__all__ = ["Settled", "settle_intents"]

log = logging.getLogger("fraudnet.journal")


@dataclass(frozen=True, slots=True)
class Settled:
    intents: int
    decisions: int
    already_audited: int
    appended: int


def settle_intents(store: DedupStore, audit_log: Any, *, actor: str, stream_origin: str) -> Settled:
    """Settle every unconfirmed intent of ``store`` against ``audit_log`` (an open
    :class:`~fraudnet.adapters.storage.audit_log.AuditLog`). ``stream_origin`` is the
    origin recorded for stream-path decisions (the API path's is ``api``).

    Raises :class:`~fraudnet.errors.AuditError` when the audit log cannot be read
    or written: the node must not start then.
    """
    intents = store.journal.unconfirmed()
    if not intents:
        return Settled(0, 0, 0, 0)
    wanted = {d.tx_id for it in intents for d in it.decisions}
    start = min(it.audit_from for it in intents)
    present: set[str] = set()
    try:
        for _seq, payload in iter_payloads(audit_log.dir, start):
            rec = decode_body(parse_record_payload(payload)[2])
            if rec.kind == "decision":
                tx = rec.details.get("tx_id")
                if isinstance(tx, str) and tx in wanted:
                    present.add(tx)
    except InputError as e:
        raise AuditError(
            f"{audit_log.dir}: reading the audit log to settle the journal: {e}"
        ) from None
    missing: list[AuditRecord] = []
    for it in intents:
        origin = "api" if it.path == "api" else stream_origin
        missing.extend(
            decision_record(d, actor=actor, origin=f"recovered:{origin}")
            for d in it.decisions
            if d.tx_id not in present
        )
    if missing:
        audit_log.append_many(missing)
        audit_log.commit()
    journal_faults.hit("settle.appended")
    for it in intents:
        store.settle(it)
    out = Settled(len(intents), len(wanted), len(present), len(missing))
    log.warning(
        "journal: settled %d unconfirmed batch(es) after a crash: %d decisions, %d already "
        "in the audit log, %d recorded now", out.intents, out.decisions, out.already_audited,
        out.appended, extra={"fields": {"event": "journal_settled", "appended": out.appended}},
    )  # fmt: skip
    return out
