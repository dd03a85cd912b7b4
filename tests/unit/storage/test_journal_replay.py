"""The decision journal: intents, confirmation, settling after a crash, and the
snapshot + journal restore that rebuilds exactly the crash-free window state."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.adapters.storage.audit_files import iter_payloads, verify_log
from fraudnet.adapters.storage.audit_log import open_audit_log
from fraudnet.adapters.storage.dedup import DedupStore
from fraudnet.adapters.storage.journal import (
    decode_columns,
    decode_decisions,
    encode_columns,
    encode_decisions,
)
from fraudnet.adapters.storage.journal_recovery import settle_intents
from fraudnet.adapters.stream.snapshots import FeatureSnapshots
from fraudnet.core.audit.framing import parse_record_payload
from fraudnet.core.audit.schema import decision_record, decode_body
from fraudnet.core.features.state import CARD_ARRAYS, TERM_ARRAYS
from fraudnet.core.records import Decision, TxRecord, columns
from fraudnet.core.scoring import ModelScorer
from fraudnet.errors import InputError
from fraudnet.testing import small_forest_model

DAY = 86400.0
T0 = 1_520_000_000


@pytest.fixture(scope="module")
def model() -> Any:
    return small_forest_model(4)


def _ref(kind: str, i: int) -> bytes:
    return f"{kind}{i:06d}".encode().ljust(16, b"\0")[:16]


def _batch(rng: random.Random, first: int, n: int, t: float) -> list[TxRecord]:
    out = []
    for k in range(n):
        ts = int((t + rng.uniform(0, 3600)) * 1e6)
        out.append(TxRecord(f"tx{first + k}", ts, _ref("c", rng.randrange(80)),
                            _ref("t", rng.randrange(25)), round(rng.uniform(1, 300), 2), 100,
                            "EUR", label=rng.choice([None, None, 0, 1])))  # fmt: skip
    return out


def _decisions(recs: list[TxRecord], at: int) -> list[Decision]:
    return [Decision(r.tx_id, r.card_ref, "allow", 0.1, ("LOW_RISK",), "m", r.ts_us, at, 5)
            for r in recs]  # fmt: skip


def _rows(ds: list[Decision], recs: list[TxRecord]) -> list[Any]:
    return [(d.tx_id, d.outcome, d.score, d.decided_at_us, r.ts_us, r.card_ref, r.terminal_ref)
            for d, r in zip(ds, recs, strict=True)]  # fmt: skip


def _canonical(scorer: ModelScorer) -> dict[str, list[Any]]:
    """Every entity's state rows, by key (slot order differs after a restore)."""
    st = scorer.state
    out: dict[str, list[Any]] = {}
    for names, used in ((CARD_ARRAYS, st.n_cards), (TERM_ARRAYS, st.n_terminals)):
        keys = st.a[names[0]][:used]
        order = np.argsort(keys)
        for name in names:
            out[name] = st.a[name][:used][order].tolist()
    return out


def test_columns_round_trip_and_damage_is_typed() -> None:
    recs = _batch(random.Random(1), 0, 7, T0)
    blob = encode_columns(recs)
    batch = decode_columns(blob, "here")
    got, want = batch.columns(), columns(recs)
    for f in ("card_key", "terminal_key", "ts_s", "amount", "label"):
        assert np.array_equal(getattr(got, f), getattr(want, f)), f
    for bad in (blob[:5], b"XXXX" + blob[4:], blob + b"\0", blob[:-1]):
        with pytest.raises(InputError, match="here"):
            decode_columns(bad, "here")
    ds = [Decision(r.tx_id, r.card_ref, "review", 0.25 + k, ("A", "B") if k % 2 else (),
                   f"m{k % 2}", r.ts_us, 77, k, r.label) for k, r in enumerate(recs)]  # fmt: skip
    dblob = encode_decisions(ds)
    assert decode_decisions(dblob, batch, "here") == ds
    for bad in (dblob[:7], dblob[:-1], b"XXXX" + dblob[4:], dblob + b"x"):
        with pytest.raises(InputError, match="here"):
            decode_decisions(bad, batch, "here")


def test_intent_is_confirmed_with_its_dedup_rows_and_truncated(tmp_path: Path) -> None:
    store = DedupStore(tmp_path / "d.sqlite")
    rng = random.Random(2)
    seqs = []
    for b in range(4):
        recs = _batch(rng, 10 * b, 10, T0 + b * 3600)
        ds = _decisions(recs, 1000 + b)
        seqs.append(store.intend(ds, recs, "stream"))
        if b < 3:
            store.add_many(_rows(ds, recs))
    assert seqs == [1, 2, 3, 4]
    assert [it.seq for it in store.journal.unconfirmed()] == [4]
    assert store.seen_many(["tx0", "tx35"]) == {"tx0"}  # an unconfirmed intent is not a row
    store.truncate_journal(3)
    assert [s for s, _ in store.journal.batches_between(0)] == [4]
    store.close()
    again = DedupStore(tmp_path / "d.sqlite")
    assert again.journal.last_seq == 4 and len(again.journal.unconfirmed()) == 1
    assert again.intend(_decisions(recs[:1], 9), recs[:1], "api") == 5


def test_settle_records_missing_decisions_once(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    log = open_audit_log(tmp_path / "audit", key)
    store = DedupStore(tmp_path / "d.sqlite")
    store.audit_size = lambda: log.size
    rng = random.Random(3)
    a, b = _batch(rng, 0, 5, T0), _batch(rng, 5, 5, T0 + 60)
    da, db = _decisions(a, 10), _decisions(b, 11)
    store.intend(da, a, "stream")
    store.intend(db, b, "api")
    # batch a reached the audit log (fsync) but the crash came before its de-dup rows
    log.append_many(decision_record(d, actor="node:x", origin="api") for d in da)
    log.commit()
    log.close()
    store.close()
    log = open_audit_log(tmp_path / "audit", key)
    store = DedupStore(tmp_path / "d.sqlite")
    got = settle_intents(store, log, actor="node:x", stream_origin="stream:t")
    assert (got.intents, got.decisions, got.already_audited, got.appended) == (2, 10, 5, 5)
    assert store.seen_many([r.tx_id for r in a + b]) == {r.tx_id for r in a + b}
    assert not store.journal.unconfirmed()
    assert settle_intents(store, log, actor="node:x", stream_origin="s").intents == 0
    log.close()
    ids = [str(decode_body(parse_record_payload(p)[2]).details["tx_id"])
           for _, p in iter_payloads(tmp_path / "audit")]  # fmt: skip
    assert sorted(ids) == sorted(r.tx_id for r in a + b)  # each exactly once
    assert verify_log(tmp_path / "audit").ok


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_snapshots_plus_journal_restore_the_crash_free_state(
    model: Any, tmp_path: Path, seed: int
) -> None:
    """Folds, intents, confirmations and shard snapshots interleave at random; after a
    'crash' (everything in memory dropped) the restored state equals the state that
    folded every batch exactly once -- entity by entity."""
    rng = random.Random(seed)
    live = ModelScorer(model)
    store = DedupStore(tmp_path / "d.sqlite")
    snaps = FeatureSnapshots(live, tmp_path / "f", shards=4, store=store)
    n = 0
    for b in range(60):
        recs = _batch(rng, n, rng.randrange(1, 40), T0 + b * 1800)
        n += len(recs)
        live.score_many(columns(recs))
        ds = _decisions(recs, b)
        store.intend(ds, recs, "stream")
        if rng.random() < 0.9:  # most batches get their audit fsync and de-dup rows
            store.add_many(_rows(ds, recs))
        if rng.random() < 0.3:
            asyncio.run(snaps.snapshot_next())
    assert snaps.written > 0 and store.journal.batches < 60  # truncated as shards covered it
    store.close()
    store = DedupStore(tmp_path / "d.sqlite")
    fresh = ModelScorer(model)
    got = FeatureSnapshots(fresh, tmp_path / "f", shards=4, store=store).restore()
    assert got["corrupt"] == 0 and got["replayed_batches"] > 0
    assert _canonical(fresh) == _canonical(live)
    assert np.array_equal(fresh.state.kcounters, live.state.kcounters)


def test_a_torn_shard_file_is_set_aside_and_the_node_starts(model: Any, tmp_path: Path) -> None:
    live = ModelScorer(model)
    store = DedupStore(tmp_path / "d.sqlite")
    snaps = FeatureSnapshots(live, tmp_path / "f", shards=2, store=store)
    recs = _batch(random.Random(5), 0, 50, T0)
    live.score_many(columns(recs))
    store.intend(_decisions(recs, 1), recs, "stream")
    asyncio.run(snaps.snapshot_all())
    p = tmp_path / "f" / "shard-1.fnstate"
    p.write_bytes(p.read_bytes()[:-10])
    got = FeatureSnapshots(ModelScorer(model), tmp_path / "f", shards=2, store=store).restore()
    assert got["corrupt"] == 1 and got["shards"] == 1
    assert (tmp_path / "f" / "shard-1.corrupt").exists()


class _Topics:
    partitions = 4

    async def send_tx_batch(self, value: bytes, partition: int) -> None:
        raise AssertionError("not used")

    async def send_decisions(self, value: bytes) -> None:
        pass

    async def send_dead_letters(self, values: Any) -> None:
        pass

    async def send_api_tx(self, value: bytes) -> None:
        pass


def test_the_runtime_journals_each_fold_and_stops_when_it_cannot(tmp_path: Path) -> None:
    """Every decided API group leaves a confirmed journal row; a journal write that
    fails stops the node (on_fatal) and the caller gets the error, not a decision."""
    from fraudnet.adapters.metrics import NodeMetrics
    from fraudnet.adapters.runtime import NodeRuntime
    from fraudnet.core.pipeline import NodeCore
    from fraudnet.core.scoring import BaselineScorer

    fatal: list[BaseException] = []

    async def main() -> None:
        store = DedupStore(tmp_path / "d.sqlite")
        rt = NodeRuntime(NodeCore(BaselineScorer(), b"s" * 32), store, NodeMetrics())
        rt.attach(_Topics())
        rt.on_fatal = fatal.append
        tx = {"tx_id": "j1", "timestamp": 1_714_564_800, "card": "c1", "terminal_id": "T1",
              "amount": "12.50"}  # fmt: skip
        first = (await rt.decide_now(tx, source="t", arrival=1)).decision
        assert first is not None
        assert store.journal.last_seq == 1
        assert [i.seq for i in store.journal.unconfirmed()] == [1]  # answered first ...
        assert rt.decided_before("j1") == (first.outcome, first.score, first.decided_at_us)
        assert store.get("j1") is None  # (from memory: the de-dup row is not written yet)
        await rt.recorded()
        assert not store.journal.unconfirmed()  # ... then de-dup row + confirmation
        again = await rt.decide_now(tx, source="t", arrival=2)
        assert again.decision is None
        assert again.duplicate_of == (first.outcome, first.score, first.decided_at_us)
        assert [len(c) for _, c in store.journal.batches_between(0)] == [1]

        def broken(*a: Any, **k: Any) -> int:
            raise OSError("disk full")

        store.journal.insert_intent = broken  # type: ignore[method-assign]  # a failing disk
        with pytest.raises(OSError, match="disk full"):
            await rt.decide_now({**tx, "tx_id": "j2"}, source="t", arrival=1)
        store.close()

    asyncio.run(main())
    assert len(fatal) == 1 and "disk full" in str(fatal[0])


def test_de_dup_rows_of_many_groups_are_written_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the answers, the de-dup rows and journal confirmations of every group decided
    within RECORD_DELAY_S go to SQLite together; until then the ids count as seen."""
    from fraudnet.adapters import runtime as runtime_mod
    from fraudnet.adapters.metrics import NodeMetrics
    from fraudnet.adapters.runtime import NodeRuntime
    from fraudnet.core.pipeline import NodeCore
    from fraudnet.core.scoring import BaselineScorer

    monkeypatch.setattr(runtime_mod, "RECORD_DELAY_S", 3600.0)  # only recorded() flushes

    async def main() -> None:
        store = DedupStore(tmp_path / "d.sqlite")
        rt = NodeRuntime(NodeCore(BaselineScorer(), b"s" * 32), store, NodeMetrics())
        rt.attach(_Topics())
        writes: list[int] = []
        add_batches = store.add_batches

        def counted(batches: Any) -> None:
            writes.append(len(batches))
            add_batches(batches)

        store.add_batches = counted  # type: ignore[method-assign]
        txs = [{"tx_id": f"g{i}", "timestamp": 1_714_564_800 + i, "card": f"c{i}",
                "terminal_id": "T1", "amount": "5.00"} for i in range(6)]  # fmt: skip
        for tx in txs:  # one group each: the previous answer came before the next request
            assert (await rt.decide_now(tx, source="t", arrival=1)).decision is not None
        assert writes == [] and store.count() == 0  # answered, rows not yet written
        dup = await rt.decide_now(txs[2], source="t", arrival=1)
        assert dup.decision is None and dup.duplicate_of is not None  # seen from memory
        ent = rt.lookup_entity("g2")  # a label by tx id finds it too (labels.py)
        assert ent is not None and ent[0] == (1_714_564_800 + 2) * 1_000_000
        await rt.recorded()
        assert writes == [6] and store.count() == 6  # six groups, one transaction
        assert rt.lookup_entity("g2") == ent == store.lookup_entity("g2")
        assert not store.journal.unconfirmed()
        store.close()

    asyncio.run(main())
