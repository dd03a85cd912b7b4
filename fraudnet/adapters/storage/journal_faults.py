"""Crash points for the kill tests: die with SIGKILL at a named point of the durable path.

``FRAUDNET_CRASH_AT="<point>:<n>"`` makes the process kill itself (SIGKILL,
no clean-up, exactly like ``kill -9``) the ``n``-th time execution reaches
``hit("<point>")``. Without the variable a hit costs one comparison. Used by
``tests/integration/test_crash_*.py`` to place kills where random timing
rarely lands; never set it in production.

Points (in the order a batch passes them):

==========================  ===================================================
``journal.intent``          after the journal intent commit, before the audit append
``dedup.commit``            after the audit fsync and the acknowledgement, before the
                            de-dup/confirm commit
``dedup.committed``         right after the de-dup commit
``snapshot.write``          shard file written and fsynced, not yet renamed
``snapshot.written``        shard file renamed, journal not yet truncated
``restore.replay``          at start, between two re-folded journal batches
``settle.appended``         at start, settled decisions appended, intents unconfirmed
==========================  ===================================================
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "hit"]

POINTS = (
    "journal.intent", "dedup.commit", "dedup.committed", "snapshot.write", "snapshot.written",
    "restore.replay", "settle.appended",
)  # fmt: skip


def _parse(spec: str) -> tuple[str, int] | None:
    name, _, count = spec.partition(":")
    if name not in POINTS:
        return None
    try:
        n = int(count or "1")
    except ValueError:
        return None
    return (name, n) if n >= 1 else None


_armed = _parse(os.environ.get("FRAUDNET_CRASH_AT", ""))
_hits = 0


def hit(point: str) -> None:
    """Kill this process if ``point`` is the armed one and its count is reached."""
    global _hits
    if _armed is None or point != _armed[0]:
        return
    _hits += 1
    if _hits >= _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)
