"""``fraudnet bench audit``: audit log append rate (group commit) and verify time.

* ``append_per_s``: decision records per second through
  :class:`~fraudnet.adapters.storage.audit_async.AsyncAuditLog` with the
  default durability policy (fsync on every commit), ``--producers``
  concurrent callers each awaiting ``append_durable`` of ``--batch`` records
  -- the shape of a node acknowledging decisions.
* ``verify_seconds_per_million``: wall time of ``verify_log`` over a log of
  ``--verify-records`` records (built untimed, without fsync), scaled to one
  million. Target: < 60 s.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.adapters.storage.audit_async import AsyncAuditLog
from fraudnet.adapters.storage.audit_files import verify_log
from fraudnet.adapters.storage.audit_log import AuditPolicy, open_audit_log
from fraudnet.core.audit.schema import AuditRecord, decision_record
from fraudnet.core.records import Decision
from fraudnet.errors import IntegrityError


def _records(start: int, n: int) -> list[AuditRecord]:
    now = time.time_ns() // 1000
    return [
        decision_record(
            Decision(f"tx-{i}", (i * 2654435761 % 2**64).to_bytes(16, "little"),
                     "allow", 0.12, ("amount_z",), "model-7f3a", now, now, 850),
            actor="node:bench", origin="api",
        )
        for i in range(start, start + n)
    ]  # fmt: skip


async def _append(d: Path, total: int, producers: int, batch: int) -> tuple[float, int]:
    alog = AsyncAuditLog(open_audit_log(d, Ed25519PrivateKey.generate()))
    per = total // producers
    work = [[_records(p * per + i, batch) for i in range(0, per, batch)] for p in range(producers)]

    async def producer(batches: list[list[AuditRecord]]) -> None:
        for recs in batches:
            await alog.append_durable(recs)

    t0 = time.perf_counter()
    await asyncio.gather(*(producer(w) for w in work))
    elapsed = time.perf_counter() - t0
    commits = alog.commits
    await alog.aclose()
    return (sum(len(b) for w in work for b in w) / elapsed), commits


def _build(d: Path, n: int) -> None:
    pol = AuditPolicy(fsync=False)
    with open_audit_log(d, Ed25519PrivateKey.generate(), policy=pol) as log:
        step = 10_000
        for i in range(0, n, step):
            log.append_many(_records(i, min(step, n - i)))
            log.commit()


@click.command()
@click.option("--records", default=200_000, show_default=True, help="Records to append.")
@click.option("--producers", default=16, show_default=True, help="Concurrent callers.")
@click.option("--batch", default=128, show_default=True, help="Records per append_durable call.")
@click.option("--verify-records", default=1_000_000, show_default=True)
@click.option("--dir", "base", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def cli(
    records: int, producers: int, batch: int, verify_records: int, base: Path | None, as_json: bool
) -> None:
    """Append rate with group commit, and verify time per million records."""
    root = Path(tempfile.mkdtemp(prefix="fraudnet-bench-audit-", dir=base))
    try:
        rate, commits = asyncio.run(_append(root / "append", records, producers, batch))
        _build(root / "verify", verify_records)
        t0 = time.perf_counter()
        report = verify_log(root / "verify")
        verify_s = time.perf_counter() - t0
        if not report.ok or report.records != verify_records:
            raise IntegrityError(f"bench audit: verification failed: {report.damage}")
        result: dict[str, Any] = {
            "append_per_s": round(rate, 1),
            "append_records": records,
            "producers": producers,
            "batch": batch,
            "fsync_batches": commits,
            "verify_records": verify_records,
            "verify_seconds": round(verify_s, 3),
            "verify_seconds_per_million": round(verify_s * 1_000_000 / verify_records, 3),
            "verify_bytes": sum(p.stat().st_size for p in (root / "verify").rglob("seg-*.log")),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(result))
    else:
        for k, v in result.items():
            click.echo(f"{k}: {v}")
