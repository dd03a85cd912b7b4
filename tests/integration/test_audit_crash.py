"""kill -9 a process in the middle of writing: every acknowledged record survives,
recovery cuts only the torn tail, and the log verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.adapters.storage.audit_files import iter_payloads, verify_log
from fraudnet.adapters.storage.audit_log import AuditPolicy, open_audit_log
from fraudnet.core.audit.framing import parse_record_payload
from fraudnet.core.audit.schema import decode_body

REPO = Path(__file__).resolve().parents[2]

WRITER = r"""
import asyncio, sys
from pathlib import Path
from cryptography.hazmat.primitives import serialization
from fraudnet.adapters.storage.audit_async import AsyncAuditLog
from fraudnet.adapters.storage.audit_log import AuditPolicy, open_audit_log
from fraudnet.core.audit.schema import decision_record
from fraudnet.core.records import Decision

key = serialization.load_pem_private_key(Path(sys.argv[2]).read_bytes(), None)
pol = AuditPolicy(max_segment_bytes=int(sys.argv[3]), checkpoint_interval_us=20_000)
log = open_audit_log(Path(sys.argv[1]), key, policy=pol)
start = log.size

async def producer(p):
    for i in range(10**9):
        tx = f"r{start}-p{p}-{i}"
        d = Decision(tx, bytes(16), "allow", 0.1, (), "m", 1, 2, 3)
        await alog.append_durable([decision_record(d, actor="node:t", origin="test")])
        sys.stdout.write(f"ack {tx}\n")
        sys.stdout.flush()

async def main():
    global alog
    alog = AsyncAuditLog(log)
    await asyncio.gather(*(producer(p) for p in range(8)))

asyncio.run(main())
"""


def _run_and_kill(d: Path, keyfile: Path, script: Path, acks_wanted: int) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(d), str(keyfile), "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    acked: set[str] = set()
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    try:
        while len(acked) < acks_wanted:
            assert time.monotonic() < deadline, "writer too slow"
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.stderr else ""
                pytest.fail(f"writer exited early: {err[-2000:]}")
            if line.startswith("ack "):
                acked.add(line[4:].strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: producers are still appending
        proc.wait(timeout=30)
    return acked


@pytest.mark.integration
def test_kill_9_loses_no_acknowledged_record(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    keyfile = tmp_path / "node.key"
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    d = tmp_path / "audit"
    acked: set[str] = set()
    for _round in range(3):  # crash, recover, write more, crash again
        acked |= _run_and_kill(d, keyfile, script, 400)
        log = open_audit_log(d, key, policy=AuditPolicy(max_segment_bytes=20000))
        log.close()  # recovery happened in open
        r = verify_log(d)
        assert r.ok, str(r.damage)
        present = {
            str(decode_body(parse_record_payload(p)[2]).details["tx_id"])
            for _, p in iter_payloads(d)
        }
        missing = acked - present
        assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:3]}"
    assert r.segments > 1  # rotation happened under the crashes too
