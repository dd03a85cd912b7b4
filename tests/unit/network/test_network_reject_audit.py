"""Rejected envelopes become aggregated signal_rejected audit records (one per reason per tick)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from fraudnet.adapters.network import NetworkBridge


class _Audit:
    def __init__(self) -> None:
        self.records: list[Any] = []

    async def append_durable(self, recs: Any) -> int:
        self.records.extend(recs)
        return len(self.records)


def test_rejects_are_audited_as_deltas_per_reason() -> None:
    async def run() -> list[Any]:
        audit = _Audit()
        bridge = NetworkBridge.__new__(NetworkBridge)  # no p2p thread: the tick step alone
        bridge.audit, bridge.actor, bridge.audit_dropped = audit, "node:x", 0
        bridge._rejects_seen = {}
        counters = {"signals_reject_bad_signature": 0, "signals_reject_oversized": 0,
                    "signals_ignore_replay": 7, "p2p_dials": 3}  # fmt: skip
        bridge.p2p = SimpleNamespace(metrics=lambda: dict(counters))
        bridge._audit_rejects(1)  # nothing rejected yet
        counters["signals_reject_bad_signature"] = 500  # a flood
        counters["signals_reject_oversized"] = 2
        bridge._audit_rejects(2)
        bridge._audit_rejects(3)  # no change: no record
        counters["signals_reject_bad_signature"] = 501
        bridge._audit_rejects(4)
        await asyncio.sleep(0)
        return audit.records

    recs = asyncio.run(run())
    got = sorted((r.details["reason"], r.details["count"], r.at_us) for r in recs)
    assert got == [("bad_signature", 1, 4), ("bad_signature", 500, 2), ("oversized", 2, 2)]
    assert all(r.kind == "signal_rejected" and r.outcome == "rejected" for r in recs)
