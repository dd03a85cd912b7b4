"""The segment writer: commit, checkpoints, rotation, retention, recovery, group commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.adapters.storage.audit_async import AsyncAuditLog
from fraudnet.adapters.storage.audit_files import (
    LeafHashes,
    find_checkpoint,
    iter_payloads,
    list_segments,
    verify_log,
)
from fraudnet.adapters.storage.audit_log import AuditPolicy, open_audit_log
from fraudnet.core.audit.merkle import inclusion_proof, leaf_hash, verify_inclusion
from fraudnet.core.audit.schema import AuditRecord, event_record
from fraudnet.errors import AuditError, ConfigError

DAY_US = 86_400 * 1_000_000


class Clock:
    def __init__(self, t: int = 1_700_000_000_000_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def rec(i: int, clock: Clock | None = None) -> AuditRecord:
    at = clock.t if clock else 1_700_000_000_000_000 + i
    return event_record(
        "signal_sent", at_us=at, actor="node:a", action="send", resource=f"sig:{i}",
        signal_id=f"s{i}", pad="x" * (i % 50),
    )  # fmt: skip


def test_append_commit_verify_and_checkpoint_interval(tmp_path: Path) -> None:
    clock = Clock()
    key = Ed25519PrivateKey.generate()
    log = open_audit_log(tmp_path / "audit", key, clock=clock)
    assert log.append_many([rec(i) for i in range(10)]) == 9
    assert log.durable_size == 0
    assert log.commit() == 9  # first checkpoint is due right away (genesis was at t0)
    clock.t += 1_000_000
    log.commit()
    assert log.checkpointed_size == 10
    log.append_many([rec(i) for i in range(10, 15)])
    clock.t += 500_000
    assert log.commit() == 14
    assert log.checkpointed_size == 10  # interval not elapsed yet
    assert log.checkpoint_due_in_us() == 500_000
    clock.t += 500_000
    log.commit()
    assert log.checkpointed_size == 15
    log.append_many([rec(15)])
    log.close()
    r = verify_log(tmp_path / "audit")
    assert r.ok and r.records == 16 and r.last_checkpoint is not None
    assert r.last_checkpoint.tree_size == 16  # close() always checkpoints
    seqs = [s for s, _ in iter_payloads(tmp_path / "audit")]
    assert seqs == list(range(16))


def test_rotation_and_retention_keep_verification_and_proofs(tmp_path: Path) -> None:
    clock = Clock()
    key = Ed25519PrivateKey.generate()
    d = tmp_path / "audit"
    pol = AuditPolicy(max_segment_bytes=4096, online_segments=2, retention_us=2 * DAY_US)
    log = open_audit_log(d, key, policy=pol, clock=clock)
    for i in range(300):
        log.append_many([rec(i)])
        if i % 10 == 0:
            clock.t += DAY_US // 4
            log.commit()
    log.close()
    segs = list_segments(d)
    assert len(segs) >= 3 and segs[0].first_seq > 0  # oldest deleted
    assert [s.archived for s in segs].count(False) == 2
    r = verify_log(d)
    assert r.ok and r.records == 300 and r.expired > 0, r
    assert any("retention" in n for n in r.notes)
    # proofs for records still online work although older ones are gone
    _signed, cp = find_checkpoint(d)
    leaves = LeafHashes(d, cp.tree_size)
    assert leaves.range_hash(0, cp.tree_size) == cp.root
    for m in (r.expired, r.expired + 7, 299):
        p = inclusion_proof(m, cp.tree_size, leaves.range_hash)
        assert verify_inclusion(leaves.leaf(m), m, cp.tree_size, p, cp.root)


def test_archived_but_not_expired_segments_still_verify(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    d = tmp_path / "audit"
    pol = AuditPolicy(max_segment_bytes=4096, online_segments=1)
    with open_audit_log(d, key, policy=pol) as log:
        for i in range(200):
            log.append_many([rec(i)])
    assert any(s.archived for s in list_segments(d))
    r = verify_log(d)
    assert r.ok and r.expired == 0 and r.records == 200


def test_reopen_continues_the_same_log(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    d = tmp_path / "audit"
    with open_audit_log(d, key) as log:
        log.append_many([rec(i) for i in range(5)])
    with open_audit_log(d, key) as log:
        assert log.size == 5
        assert log.append_many([rec(5)]) == 5
    assert verify_log(d).records == 6
    with pytest.raises(ConfigError, match="belongs to key"):
        open_audit_log(d, Ed25519PrivateKey.generate())
    with pytest.raises(ConfigError, match="network"):
        open_audit_log(d, key, network_id="other")


def _last_segment(d: Path) -> Path:
    return list_segments(d)[-1].log


def test_recovery_cuts_a_torn_tail_and_keeps_it(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    d = tmp_path / "audit"
    log = open_audit_log(d, key)
    log.append_many([rec(i) for i in range(20)])
    log.commit()
    log.checkpoint()
    log.append_many([rec(i) for i in range(20, 25)])
    log.commit()  # durable but not checkpointed (interval not elapsed)
    # simulate a crash: half of a further frame reaches the file, no close()
    seg = _last_segment(d)
    with seg.open("ab") as f:
        f.write(b"\x00\x00\x01\x00garbage")
    r = verify_log(d)
    assert r.ok and any("torn" in n for n in r.notes)
    log2 = open_audit_log(d, key)
    assert log2.size == 25  # every durable record kept
    assert any("cut" in n for n in log2.recovery_notes)
    assert list((d / "recovered").iterdir())
    log2.append_many([rec(25)])
    log2.close()
    r = verify_log(d)
    assert r.ok and r.records == 26 and not r.notes


def test_recovery_refuses_to_cut_checkpointed_records(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    d = tmp_path / "audit"
    with open_audit_log(d, key) as log:
        log.append_many([rec(i) for i in range(20)])
    seg = _last_segment(d)
    data = bytearray(seg.read_bytes())
    data[-30] ^= 0xFF  # inside the last (checkpointed) record
    seg.write_bytes(bytes(data))
    with pytest.raises(AuditError, match=r"refusing|do not match"):
        open_audit_log(d, key)
    assert seg.read_bytes() == bytes(data)  # evidence untouched


def test_async_group_commit_batches_concurrent_callers(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    d = tmp_path / "audit"

    async def main() -> tuple[list[int], int]:
        alog = AsyncAuditLog(open_audit_log(d, key))
        seqs = await asyncio.gather(*(alog.append_durable([rec(i), rec(i)]) for i in range(200)))
        # every acknowledged seq is durable when its await returns
        assert alog.log.durable_size >= max(seqs) + 1
        commits = alog.commits
        await alog.aclose()
        return list(seqs), commits

    seqs, commits = asyncio.run(main())
    assert sorted(seqs) == list(range(1, 400, 2))
    assert commits < 200  # callers shared fsyncs
    r = verify_log(d)
    assert r.ok and r.records == 400
    assert r.last_checkpoint is not None and r.last_checkpoint.tree_size == 400


def test_async_checkpoints_when_traffic_stops(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    d = tmp_path / "audit"
    pol = AuditPolicy(checkpoint_interval_us=50_000)

    async def main() -> int:
        alog = AsyncAuditLog(open_audit_log(d, key, policy=pol))
        await alog.append_durable([rec(0)])
        await alog.append_durable([rec(1)])
        deadline = asyncio.get_running_loop().time() + 10
        while alog.log.checkpointed_size < 2:  # bounded polling, no fixed sleep
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        n = alog.log.checkpointed_size
        await alog.aclose()
        return n

    assert asyncio.run(main()) == 2


def test_leaf_hashes_match_payloads(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    d = tmp_path / "audit"
    with open_audit_log(d, key) as log:
        log.append_many([rec(i) for i in range(9)])
    leaves = LeafHashes(d, 9)
    for s, p in iter_payloads(d):
        assert leaves.leaf(s) == leaf_hash(p)
