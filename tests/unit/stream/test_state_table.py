"""Feature state in a changelog-backed Faust table, against the embedded broker.

One process, one embedded broker, two lifetimes of the same Faust app: the first
writes coalesced shard snapshots (chunked) to the table; its changelog topic holds
them; the second, started after the first stopped, recovers the table from the
changelog and rebuilds exactly the first one's window state from it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import faust
import numpy as np
import pytest

from fraudnet.adapters.storage.dedup import DedupStore
from fraudnet.adapters.stream.broker import EmbeddedBroker
from fraudnet.adapters.stream.snapshots import FeatureSnapshots, ShardSnapshot
from fraudnet.adapters.stream.state_table import StateTable
from fraudnet.core.features.state import CARD_ARRAYS, TERM_ARRAYS
from fraudnet.core.records import TxColumns
from fraudnet.core.scoring import ModelScorer
from fraudnet.errors import InputError
from fraudnet.testing import read_topic, small_forest_model

pytestmark = pytest.mark.integration

DAY = 86400.0
CHUNK = 64 * 1024
APP_ID = "fraudnet-state-table-test"


@pytest.fixture(scope="module")
def model() -> Any:
    return small_forest_model(4)


def _cols(seed: int, n: int) -> TxColumns:
    rng = np.random.default_rng(seed)
    return TxColumns(
        card_key=rng.integers(1, 3000, n).astype(np.uint64),
        terminal_key=rng.integers(1, 200, n).astype(np.uint64),
        ts_s=1.52e9 + np.sort(rng.uniform(0, 10 * DAY, n)),
        amount=np.round(rng.gamma(2.0, 40.0, n), 2),
        mcc=np.full(n, -1, np.int32), channel=np.full(n, -1, np.int8),
        label=np.full(n, -1, np.int8),
    )  # fmt: skip


def _canonical(scorer: ModelScorer) -> dict[str, list[Any]]:
    st = scorer.state
    out: dict[str, list[Any]] = {}
    for names, used in ((CARD_ARRAYS, st.n_cards), (TERM_ARRAYS, st.n_terminals)):
        order = np.argsort(st.a[names[0]][:used])
        for name in names:
            out[name] = st.a[name][:used][order].tolist()
    return out


def _app(bootstrap: str, datadir: Path) -> faust.App:
    """A Faust app configured like the node's (create_app), with a short session timeout
    so the second lifetime does not wait a minute for the first one's group membership."""
    app = faust.App(
        APP_ID, broker=f"kafka://{bootstrap}", store="memory://", datadir=str(datadir),
        topic_allow_declare=False, topic_partitions=4, topic_replication_factor=1,
        web_enabled=False, autodiscover=False, loghandlers=[],
        consumer_auto_offset_reset="earliest", broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )  # fmt: skip
    topic = app.topic(f"{APP_ID}.in", value_serializer="raw")

    @app.agent(topic)
    async def consume(stream: Any) -> None:  # gives the worker partitions to be assigned
        async for _ in stream:
            pass

    return app


async def _life(app: faust.App, table: StateTable, body: Any) -> Any:
    recovered = asyncio.Event()
    user = table.on_recovered

    def on(snaps: dict[int, ShardSnapshot]) -> None:
        if user is not None:
            user(snaps)
        recovered.set()

    table.on_recovered = on
    await app.start()
    try:
        await asyncio.wait_for(recovered.wait(), 120)  # bounded: Faust recovery completes
        return await body()
    finally:
        await app.stop()


def test_shards_go_to_the_changelog_and_a_new_worker_recovers_the_state(
    model: Any, tmp_path: Path
) -> None:
    broker = EmbeddedBroker()
    bootstrap = broker.start()
    try:
        live = ModelScorer(model)
        live.score_many(_cols(1, 30_000))
        # first lifetime: snapshots go to the files and, coalesced per shard, to the table
        app_a = _app(bootstrap, tmp_path / "fa")
        table_a = StateTable(app_a, 4, chunk_bytes=CHUNK)
        store_a = DedupStore(tmp_path / "a.sqlite")
        snaps_a = FeatureSnapshots(live, tmp_path / "files-a", 4, store=store_a, table=table_a)

        async def write() -> int:
            await snaps_a.snapshot_all()
            await app_a.producer.flush()
            return table_a.published

        assert asyncio.run(_life(app_a, table_a, write)) == 4
        # the changelog holds the coalesced values: per shard one manifest + its chunks,
        # each chunk within the bound (one write per shard, never one per card)
        changelog = table_a.table.changelog_topic.get_topic_name()
        sizes = [sum(len(snaps_a.path(i).read_bytes()) for i in range(4))]
        values = read_topic(bootstrap, changelog, until=lambda vs: sum(
            v.startswith(b"{") for v in vs) >= 4, timeout=60)  # fmt: skip
        manifests = [json.loads(v) for v in values if v.startswith(b"{")]
        assert len(manifests) == 4 and all(len(v) <= CHUNK for v in values)
        assert sum(m["chunks"] for m in manifests) == len(values) - 4 > 4  # chunked
        assert sum(m["size"] for m in manifests) == sizes[0]
        # second lifetime, same broker still running, no files, empty journal: the
        # table's recovery rebuilds the state
        rebuilt = ModelScorer(model)
        app_b = _app(bootstrap, tmp_path / "fb")
        table_b = StateTable(app_b, 4, chunk_bytes=CHUNK)
        store_b = DedupStore(tmp_path / "b.sqlite")
        snaps_b = FeatureSnapshots(rebuilt, tmp_path / "files-b", 4, store=store_b,
                                   table=table_b)  # fmt: skip
        assert snaps_b.restore()["shards"] == 0  # nothing on disk
        results: list[Any] = []
        table_b.on_recovered = lambda s: results.append(snaps_b.adopt(s))

        async def nothing() -> None:
            return None

        asyncio.run(_life(app_b, table_b, nothing))
        assert results and results[0] is not None and results[0]["from_table"] == 4
        assert _canonical(rebuilt) == _canonical(live)
    finally:
        broker.stop()


def test_a_manifest_without_its_chunks_is_ignored(tmp_path: Path) -> None:
    """Damage in the table (a lost chunk, a bad manifest) is logged and skipped."""
    broker = EmbeddedBroker()
    bootstrap = broker.start()
    try:
        app = _app(bootstrap, tmp_path / "f")
        table = StateTable(app, 2, chunk_bytes=1024)
        # the local view of the table is a dict-like store: write it directly (no broker)
        good = ShardSnapshot(0, 2, 5, 1, bytes(range(256)) * 20)
        t = table.table
        from fraudnet.adapters.stream.snapshots import encode_snapshot

        data = encode_snapshot(good)
        for i in range(-(-len(data) // 1024)):
            t.data[f"c/0/7/{i}".encode()] = data[i * 1024 : (i + 1) * 1024]
        import hashlib

        t.data[b"s/0"] = json.dumps({"gen": 7, "chunks": -(-len(data) // 1024),
                                     "size": len(data),
                                     "sha256": hashlib.sha256(data).hexdigest()}).encode()  # fmt: skip
        t.data[b"s/1"] = b'{"gen": 1, "chunks": 3, "size": 10, "sha256": "00"}'
        got = table.read()
        assert list(got) == [0] and got[0].blob == good.blob and got[0].covered == 5
        del t.data[b"c/0/7/1"]
        assert table.read() == {}
        with pytest.raises(InputError):
            StateTable(app, 2, chunk_bytes=10, name="other")
    finally:
        broker.stop()
