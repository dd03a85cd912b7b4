"""SIGKILL a real node at seeded kill points during a two-path replay, restart it each time.

Traffic: half the transactions go one by one to ``POST /v1/decide`` (a sender
that retries each until HTTP 200), half through ``fraudnet ingest`` (HTTP
ingest -> the internal Kafka topic -> the Faust agent), one file per life of
the node, re-run until it exits 0 (it resumes from its progress file). The
node runs a trained model, so it keeps window state (snapshots + journal).

Kill points, spread over the durable path (see
``fraudnet/adapters/storage/journal_faults.py``): after the journal intent
(mid-batch, before the audit append), after the audit fsync and the answer (before
the de-dup commit), right after the de-dup commit, right after an
acknowledgement (the sender kills on its n-th HTTP 200), during a snapshot
write (file fsynced, not renamed) and right after it, during start (journal
replay, settling intents, or a random moment before the node is ready), and
at random moments under load.

At the end: every transaction has exactly one decision record in the audit
log (so none was decided twice and every acknowledged one is there), every
API answer matches it, ingestion resumed from its progress file, ``fraudnet
audit verify`` passes, and the window state the node restored equals a
crash-free fold of the same transactions, card by card.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fraudnet.testing import FRAUDNET, free_port, run_cli, small_forest_model, wait_for

pytestmark = pytest.mark.integration

T0 = 1_714_560_000  # 2024-05-01
CARDS, TERMINALS = 160, 24
CHUNK = 120  # transactions per life of the node (half API, half ingest)
WINDOW_FEATURES = (
    "CARD_NB_TX_1DAY", "CARD_AVG_AMOUNT_1DAY", "CARD_NB_TX_7DAY", "CARD_AVG_AMOUNT_7DAY",
    "CARD_NB_TX_30DAY", "CARD_AVG_AMOUNT_30DAY", "TERM_NB_TX_1DAY_DELAY",
    "TERM_NB_TX_7DAY_DELAY", "TERM_NB_TX_30DAY_DELAY",
)  # fmt: skip


def _dataset(seed: int, n: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ts = sorted(rng.randrange(0, 3 * 86400) for _ in range(n))
    return [
        {"tx_id": f"k{i:05d}", "timestamp": T0 + t, "card": f"card-{rng.randrange(CARDS)}",
         "terminal_id": f"T{rng.randrange(TERMINALS)}",
         "amount": f"{rng.uniform(1, 250):.2f}"}
        for i, t in enumerate(ts)
    ]  # fmt: skip


def _model() -> Any:
    return small_forest_model(4)


class NodeProc:
    """One node directory, started and killed many times on the same API port."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(d / "node.log", "ab")  # noqa: SIM115

    def start(self, crash_at: str | None = None) -> None:
        ep = self.dir / "run" / "endpoints.json"
        if ep.exists():
            ep.unlink()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("FRAUDNET_CRASH_AT", None)
        if crash_at:
            env["FRAUDNET_CRASH_AT"] = crash_at
        self.proc = subprocess.Popen(
            [*FRAUDNET, "node", "run", str(self.dir), "--api", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip

    def ready(self) -> bool | None:
        """True once serving, None while starting, False if it died first."""
        assert self.proc is not None
        try:
            ep = json.loads((self.dir / "run" / "endpoints.json").read_text())
            if ep.get("pid") == self.proc.pid:
                return True
        except (OSError, ValueError):
            pass
        return False if self.proc.poll() is not None else None

    def wait_ready(self, timeout: float = 90) -> bool:
        state = wait_for(lambda: self.ready() is not None or None, timeout, "node start or exit")
        return bool(state) and self.ready() is True

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def wait_exit(self, timeout: float) -> bool:
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ApiSender(threading.Thread):
    """POSTs each queued transaction until HTTP 200; can kill the node right after an ack."""

    def __init__(self, node: NodeProc, token: str) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.auth = {"Authorization": f"Bearer {token}"}
        self.work: queue.Queue[dict[str, Any]] = queue.Queue()
        self.answers: dict[str, dict[str, Any]] = {}
        self.kill_after: int | None = None  # kill on the n-th ack from now
        self.killed_after_ack = threading.Event()
        self.stop = threading.Event()
        self.error: str | None = None

    def idle(self) -> bool:
        return self.work.unfinished_tasks == 0

    def run(self) -> None:
        s = requests.Session()
        while not self.stop.is_set():
            try:
                tx = self.work.get(timeout=0.05)
            except queue.Empty:
                continue
            deadline = time.monotonic() + 300
            while not self.stop.is_set():
                if time.monotonic() > deadline:
                    self.error = f"{tx['tx_id']}: no HTTP 200 within 300 s"
                    return
                try:
                    r = s.post(f"{self.node.url}/v1/decide", json=tx, headers=self.auth,
                               timeout=10)  # fmt: skip
                except requests.RequestException:
                    time.sleep(0.05)  # retry backoff while the node restarts
                    continue
                if r.status_code == 200:
                    self.answers[tx["tx_id"]] = r.json()
                    if self.kill_after is not None:
                        self.kill_after -= 1
                        if self.kill_after <= 0:
                            self.kill_after = None
                            self.node.kill()
                            self.killed_after_ack.set()
                    break
                if r.status_code not in (409, 500, 502, 503):  # 409: being decided: retry
                    self.error = f"{tx['tx_id']}: HTTP {r.status_code} {r.text[:200]}"
                    return
                time.sleep(0.05)
            self.work.task_done()


@dataclass
class IngestRun:
    rc: int
    resumed_after: int | None
    summary: dict[str, Any] | None


class IngestDriver(threading.Thread):
    """Runs ``fraudnet ingest`` on each queued file until it exits 0 (resuming each time)."""

    def __init__(self, node: NodeProc) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.work: queue.Queue[Path] = queue.Queue()
        self.runs: dict[str, list[IngestRun]] = {}
        self.stop = threading.Event()
        self.error: str | None = None

    def idle(self) -> bool:
        return self.work.unfinished_tasks == 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                f = self.work.get(timeout=0.05)
            except queue.Empty:
                continue
            runs = self.runs.setdefault(f.name, [])
            progress = f.with_suffix(".progress")
            while not self.stop.is_set():
                if len(runs) > 60:
                    self.error = f"{f.name}: not ingested after 60 runs"
                    return
                resumed = None
                if progress.exists():  # what a re-run starts from
                    resumed = int(json.loads(progress.read_text())["acked"])
                # one transaction per request, one at a time: the file takes about as long
                # as the API half, so kills land mid-file and re-runs resume (with batches
                # of 8 the file was done before any kill and no run ever resumed)
                p = subprocess.run(
                    [*FRAUDNET, "ingest", str(f), "--node", self.node.url, "--token-file",
                     str(self.node.dir / "api.token"), "--state", str(progress),
                     "--batch", "1", "--concurrency", "1", "--retry-for", "2", "-q"],
                    capture_output=True, text=True, timeout=120, check=False,
                )  # fmt: skip
                summary = None
                if p.returncode == 0:
                    summary = json.loads(p.stdout.strip().splitlines()[-1])
                runs.append(IngestRun(p.returncode, resumed, summary))
                if p.returncode == 0:
                    break
            self.work.task_done()


#: (kind, argument) kill points; "crash:<point>" kills inside the node at that point
KINDS = (
    "crash:journal.intent", "crash:dedup.commit", "crash:dedup.committed", "after_ack",
    "crash:snapshot.write", "crash:snapshot.written", "crash:restore.replay", "startup",
    "random",
)  # fmt: skip


def _schedule(rng: random.Random, n: int) -> list[str]:
    """``n`` kill points covering every kind, in seeded order; settling intents at start
    is killed right after a crash that leaves unconfirmed intents."""
    kinds = [KINDS[i % len(KINDS)] for i in range(n)]
    rng.shuffle(kinds)
    out: list[str] = []
    for k in kinds:
        out.append(k)
        if k in ("crash:journal.intent", "crash:dedup.commit") and len(out) < n:
            out.append("crash:settle.appended")
    return out[:n]


def _run_kill_test(
    tmp_path: Path, n_points: int, seed: int, schedule: list[str] | None = None
) -> dict[str, Any]:
    from fraudnet.adapters.model_service import ACTIVE_MODEL
    from fraudnet.training.modelio import save_model

    d = tmp_path / "node"
    run_cli("node", "init", str(d), "--member", "bank-k")
    model = _model()
    (d / ACTIVE_MODEL).parent.mkdir(exist_ok=True)
    save_model(model, d / ACTIVE_MODEL)  # what `fraudnet model deploy` installs
    rng = random.Random(seed)
    schedule = schedule or _schedule(rng, n_points)
    data = _dataset(seed, CHUNK * (n_points + 1))
    node = NodeProc(d)
    token = (d / "api.token").read_text().strip()
    api, ingest = ApiSender(node, token), IngestDriver(node)
    api.start()
    ingest.start()
    kills: list[tuple[str, str]] = []

    def feed(life: int) -> None:
        chunk = data[life * CHUNK : (life + 1) * CHUNK]
        for tx in chunk[0::2]:
            api.work.put(tx)
        f = tmp_path / f"chunk-{life:03d}.jsonl"
        f.write_text("".join(json.dumps(tx) + "\n" for tx in chunk[1::2]))
        ingest.work.put(f)

    try:
        for life, kind in enumerate(schedule):
            crash_at = None
            if kind.count(":") == 2:  # an explicit count
                crash_at = kind.removeprefix("crash:")
                kind = kind.rsplit(":", 1)[0]
            elif kind.startswith("crash:"):
                point = kind.removeprefix("crash:")
                count = 1 if point in ("snapshot.write", "snapshot.written", "settle.appended",
                                       "restore.replay") else rng.randint(3, 50)  # fmt: skip
                crash_at = f"{point}:{count}"
            node.start(crash_at)
            if kind == "startup":  # a random moment before the node serves
                deadline = time.monotonic() + rng.uniform(0.3, 3.0)
                wait_for(lambda t=deadline: node.ready() is not None or time.monotonic() > t,
                         120, "startup kill moment")  # fmt: skip
                node.kill()
                feed(life)
                kills.append((kind, "before ready" if node.ready() is not True else "at ready"))
                continue
            up = node.wait_ready()
            feed(life)
            if kind == "after_ack" and up:
                api.kill_after = rng.randint(1, 20)
                how = "killed by the sender after an ack"
                if not node.wait_exit(60):
                    api.kill_after = None
                    node.kill()
                    how = "no ack within 60 s: killed at random"
            elif kind == "random" and up:
                t_kill = time.monotonic() + rng.uniform(0.1, 1.5)
                wait_for(lambda t=t_kill: time.monotonic() > t or not node.alive(), 30, "kill time")
                node.kill()
                how = "killed at a random moment under load"
            elif crash_at is not None:
                died = node.wait_exit(25)
                if not died:
                    node.kill()
                how = "died at the crash point" if died else "point not reached: killed after 25 s"
            else:
                node.kill()
                how = "killed"
            assert node.proc is not None and node.proc.returncode == -signal.SIGKILL, (
                kind, node.proc.returncode if node.proc else None)  # fmt: skip
            kills.append((kind, how))
        # final life: no new traffic; everything pending is retried until acknowledged
        node.start()
        assert node.wait_ready(), "the node did not start after the last kill"
        wait_for(lambda: (api.idle() and ingest.idle()) or api.error or ingest.error, 300,
                 "senders to finish")  # fmt: skip
        assert api.error is None and ingest.error is None, (api.error, ingest.error)
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(60) == 0
    finally:
        api.stop.set()
        ingest.stop.set()
        node.kill()
        node.log.close()
    return {"dir": d, "data": data[: CHUNK * n_points], "model": model, "kills": kills,
            "api": api, "ingest": ingest}  # fmt: skip


def _audit_decisions(d: Path) -> tuple[Counter[str], dict[str, str]]:
    from fraudnet.adapters.storage.audit_files import iter_payloads
    from fraudnet.core.audit.framing import parse_record_payload
    from fraudnet.core.audit.schema import decode_body

    seen: Counter[str] = Counter()
    outcomes: dict[str, str] = {}
    for _, p in iter_payloads(d / "audit"):
        rec = decode_body(parse_record_payload(p)[2])
        if rec.kind == "decision":
            tx = str(rec.details["tx_id"])
            seen[tx] += 1
            outcomes[tx] = rec.outcome
    return seen, outcomes


def _window_features(d: Path, model: Any, txs: list[dict[str, Any]]) -> tuple[Any, Any]:
    """(restored, crash-free reference) window features of one probe per card."""
    from fraudnet.adapters.storage.dedup import DedupStore
    from fraudnet.adapters.storage.keys import load_local_secret
    from fraudnet.adapters.stream.snapshots import FeatureSnapshots
    from fraudnet.core.features import FEATURE_NAMES
    from fraudnet.core.pipeline import NodeCore
    from fraudnet.core.records import TxRecord, columns
    from fraudnet.core.scoring import BaselineScorer, ModelScorer

    core = NodeCore(BaselineScorer(), load_local_secret(d))
    recs = [core.admit_one(tx, source="t", location="-", now_us=0) for tx in txs]
    assert all(isinstance(r, TxRecord) for r in recs)
    ref = ModelScorer(model)
    ref.features_many(columns(recs))  # type: ignore[arg-type]  # checked above
    got = ModelScorer(model)
    store = DedupStore(d / "state" / "dedup.sqlite")
    FeatureSnapshots(got, d / "state" / "features", 4, store=store).restore()
    store.close()
    end = max(tx["timestamp"] for tx in txs) + 60
    probes = [
        core.admit_one({"tx_id": f"probe-{c}", "timestamp": end, "card": f"card-{c}",
                        "terminal_id": f"T{c % TERMINALS}", "amount": "1.00"},
                       source="t", location="-", now_us=0)
        for c in range(CARDS)
    ]  # fmt: skip
    cols = [FEATURE_NAMES.index(n) for n in WINDOW_FEATURES]
    a = got.features_many(columns(probes))[:, cols]  # type: ignore[arg-type]
    b = ref.features_many(columns(probes))[:, cols]  # type: ignore[arg-type]
    return a, b


def _check(res: dict[str, Any], min_points: int) -> None:
    d, data = res["dir"], res["data"]
    kills = res["kills"]
    assert len(kills) >= min_points
    # every transaction acknowledged (the senders retried until they were) has exactly
    # one decision record: none lost, none decided twice
    counts, outcomes = _audit_decisions(d)
    ids = {tx["tx_id"] for tx in data}
    twice = {t: n for t, n in counts.items() if n > 1}
    assert not twice, f"decided twice: {sorted(twice)[:5]}"
    assert ids <= set(counts), f"missing decisions: {sorted(ids - set(counts))[:5]}"
    # each API answer (a decision, or the duplicate's first decision) is the audited one
    api = res["api"].answers
    assert set(api) == {tx["tx_id"] for tx in data[0::2]}
    assert all(a["outcome"] == outcomes[t] for t, a in api.items())
    # ingestion resumed where it stopped: each re-run started from the saved position,
    # and every file ended fully acknowledged
    runs = res["ingest"].runs
    resumed = [r.resumed_after for rs in runs.values() for r in rs[1:] if r.resumed_after]
    for name, rs in runs.items():
        assert rs[-1].rc == 0 and rs[-1].summary is not None, name
        s = rs[-1].summary
        assert s["records"] == CHUNK // 2 and s["dead_lettered"] == 0, (name, s)
        assert s["decided"] + s["duplicates"] == s["received"], (name, s)
        # a resumed run re-sends only what was in flight: at most batch x concurrency
        assert s["received"] <= CHUNK // 2 + 16 * (len(rs) - 1), (name, s)
        positions = [r.resumed_after or 0 for r in rs]
        assert positions == sorted(positions), (name, positions)
    res["resumed_runs"] = len(resumed)
    # the audit log verifies
    out = run_cli("audit", "verify", str(d / "audit"), check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    # window state: what the node restored equals a crash-free fold of the same
    # transactions (the final life added none: only retries of unacknowledged ones)
    got, want = _window_features(d, res["model"], data)
    assert np.array_equal(got, want), (
        f"{int((got != want).any(axis=1).sum())} cards differ; first: "
        f"{got[(got != want).any(axis=1)][:1]} vs {want[(got != want).any(axis=1)][:1]}"
    )
    log = (d / "node.log").read_text()
    assert "Traceback" not in log
    # the final start restored something (snapshots and/or journal batches): the check
    # above compared a rebuilt state, not two empty ones
    last = [json.loads(x)["msg"] for x in log.splitlines() if "feature state restored" in x][-1]
    got_counts = ast.literal_eval(last.split(": ", 1)[1])
    assert got_counts["cards"] + got_counts["replayed_tx"] > 0, last


def test_three_kill_points_quick(tmp_path: Path) -> None:
    """Mid-batch before the audit append, then while settling that batch at start, then
    right after an acknowledgement."""
    schedule = ["crash:journal.intent:4", "crash:settle.appended:1", "after_ack"]
    res = _run_kill_test(tmp_path, 3, seed=11, schedule=schedule)
    _check(res, 3)
    assert [how for _, how in res["kills"]] == [
        "died at the crash point",
        "died at the crash point",
        "killed by the sender after an ack",
    ]


@pytest.mark.slow
def test_kill_points_during_replay(tmp_path: Path) -> None:
    """>= 20 seeded kill points over every kind; the figures are printed for the docs."""
    res = _run_kill_test(tmp_path, 24, seed=2026)
    _check(res, 24)
    kinds = Counter(k for k, _ in res["kills"])
    assert all(kinds[k] >= 1 for k in KINDS), kinds
    assert res["resumed_runs"] >= 1  # some ingest run started from a saved position
    log = (res["dir"] / "node.log").read_text()
    replays = [json.loads(line) for line in log.splitlines() if "feature state restored" in line]
    assert any("replayed_tx" in r["msg"] and "'replayed_tx': 0" not in r["msg"] for r in replays)
    print(json.dumps({"kill_points": len(res["kills"]), "kinds": kinds,
                      "ingest_resumed_runs": res["resumed_runs"],
                      "how": Counter(h for _, h in res["kills"])}))  # fmt: skip
