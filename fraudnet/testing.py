"""Test helpers: run real `fraudnet` processes on 127.0.0.1 and read their topics.

Used by the integration tests and the scenario runner; bounded waits only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FRAUDNET = [sys.executable, "-m", "fraudnet.cli.main"]


def run_cli(
    *args: str, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [*FRAUDNET, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and p.returncode != 0:
        raise AssertionError(
            f"fraudnet {' '.join(args)} exited {p.returncode}:\n{p.stderr[-3000:]}"
        )
    return p


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``pred`` until it returns a truthy value; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def running_node(node_dir: Path, *extra: str, log: Path | None = None) -> Iterator[dict[str, Any]]:
    """Start `fraudnet node run DIR` and yield its endpoints; SIGTERM it afterwards."""
    with running_nodes([node_dir], *extra, logs=[log] if log else None) as eps:
        yield eps[0]


@contextmanager
def running_nodes(
    node_dirs: list[Path], *extra: str, logs: list[Path] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Start one `fraudnet node run` per directory *concurrently*; yield their endpoints.

    All processes are launched first, then each is awaited (bounded), so N nodes
    start in about the time of one. Every process gets SIGTERM afterwards.
    """
    procs: list[tuple[Path, Any, Any]] = []
    try:
        for i, node_dir in enumerate(node_dirs):
            ep_file = node_dir / "run" / "endpoints.json"
            if ep_file.exists():
                ep_file.unlink()
            logf = open((logs[i] if logs else None) or node_dir / "node.log", "ab")  # noqa: SIM115
            proc = subprocess.Popen(
                [*FRAUDNET, "node", "run", str(node_dir), "--api", "127.0.0.1:0", *extra],
                stdout=logf, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
            procs.append((node_dir, proc, logf))
        eps = []
        for node_dir, proc, logf in procs:

            def ready(node_dir: Path = node_dir, proc: Any = proc, logf: Any = logf) -> Any:
                if proc.poll() is not None:
                    raise AssertionError(f"node exited early ({proc.returncode}); log: {logf.name}")
                try:
                    ep: dict[str, Any] = json.loads(
                        (node_dir / "run" / "endpoints.json").read_text()
                    )
                except (OSError, ValueError):
                    return None
                return ep if ep.get("pid") == proc.pid else None

            ep = wait_for(ready, 60 + 10 * len(procs), "node start")
            ep["proc"] = proc
            ep["token"] = (node_dir / "api.token").read_text().strip()
            eps.append(ep)
        yield eps
    finally:
        for _, proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, logf in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            logf.close()


def read_topic(bootstrap: str, topic: str, *, until: Any, timeout: float = 60) -> list[bytes]:
    """Read ``topic`` from the beginning with a plain confluent consumer until ``until(values)``."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    c.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.2):
                v = m.value()
                if m.error() is None and v is not None:
                    values.append(v)
            if until(values):
                return values
        raise AssertionError(f"timed out reading {topic}: {len(values)} messages")
    finally:
        c.close()


def free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def init_network(
    root: Path,
    n: int,
    *,
    network_id: str = "testnet",
    threshold: float = 0.8,
    roster_f: int | None = None,
    witness: bool = False,
    window_s: int = 600,
    direct: bool | None = None,
) -> list[Path]:
    """Create ``n`` node directories that form one network on 127.0.0.(10+i).

    Each node gets its own key; the members table lists every node's public
    key; all share one network key file (0600); each lists the others as peers.

    With ``roster_f``, a genesis roster of the ``n`` members (fault bound
    ``roster_f``, each member's node peer id listed) is signed by every
    founder and written as ``roster.chain`` into each node directory, with a
    ``[consensus]`` section naming it and its hash (also in
    ``root/roster.anchor``, see :func:`network_anchor`). With ``witness``,
    each node gossips and cosigns audit checkpoints (``[p2p.witness]``).
    """
    import secrets

    from fraudnet.adapters.p2p.host import peer_id_of
    from fraudnet.adapters.storage.keys import create_secret_file, load_node_key
    from fraudnet.core import crypto

    dirs = [root / f"member-{i}" for i in range(n)]
    for d in dirs:
        run_cli("node", "init", str(d), "--member", d.name)
    pubs = [crypto.public_bytes(load_node_key(d)) for d in dirs]
    hosts = [f"127.0.0.{10 + i}" for i in range(n)]
    addrs = [f"/ip4/{h}/tcp/{free_port(h)}" for h in hosts]
    pids = [peer_id_of(p).to_base58() for p in pubs]
    netkey = f"0 0 {secrets.token_hex(32)}\n".encode()
    members = "\n".join(f'"{d.name}" = "{p.hex()}"' for d, p in zip(dirs, pubs, strict=True))
    for i, d in enumerate(dirs):
        create_secret_file(d / "network.key", netkey)
        peers = ", ".join(f'"{addrs[j]}/p2p/{pids[j]}"' for j in range(n) if j != i)
        direct_line = "" if direct is None else f"direct = {'true' if direct else 'false'}\n"
        with (d / "node.toml").open("a") as f:
            f.write(
                f'\n[p2p]\nlisten = "{addrs[i]}"\nnetwork_id = "{network_id}"\n'
                f'network_key_file = "network.key"\npeers = [{peers}]\nheartbeat_ms = 300\n'
                f"{direct_line}"
                f"\n[p2p.members]\n{members}\n\n[signals]\nthreshold = {threshold}\n"
            )
    if roster_f is not None:
        anchor = _write_genesis(root, dirs, pids, network_id, roster_f)
        for d in dirs:
            with (d / "node.toml").open("a") as f:
                f.write(
                    f'\n[consensus]\nroster_chain = "roster.chain"\ngenesis = "{anchor}"\n'
                    f"window_s = {window_s}\n"
                )
    if witness:
        for d in dirs:
            with (d / "node.toml").open("a") as f:
                f.write("\n[p2p.witness]\ninterval_s = 1\n")
    return dirs


def network_anchor(root: Path) -> str:
    """The genesis hash (hex) :func:`init_network` wrote for ``root``."""
    return (root / "roster.anchor").read_text().strip()


def _write_genesis(root: Path, dirs: list[Path], pids: list[str], network: str, f: int) -> str:
    from fraudnet.adapters.storage.keys import load_node_key
    from fraudnet.core import crypto
    from fraudnet.core.consensus import Member, Roster, RosterChain, sign_genesis
    from fraudnet.core.consensus.roster import ZERO_HASH

    keys = [load_node_key(d) for d in dirs]
    at = time.time_ns() // 1000
    members = tuple(
        Member(d.name, f"org-{d.name}", crypto.public_bytes(k), (pid,), at)
        for d, k, pid in sorted(zip(dirs, keys, pids, strict=True), key=lambda t: t[0].name)
    )
    roster = Roster(network, 0, ZERO_HASH, f, 0, members, at)
    sigs = {d.name: sign_genesis(roster, k) for d, k in zip(dirs, keys, strict=True)}
    chain = RosterChain(roster.encode(), sigs, roster.hash).encode()
    (root / "roster.chain").write_bytes(chain)
    for d in dirs:
        (d / "roster.chain").write_bytes(chain)
    (root / "roster.anchor").write_text(roster.hash.hex() + "\n")
    return roster.hash.hex()


def small_forest_model(n_estimators: int = 4, seed: int = 0) -> Any:
    """A small random forest, compiled for the node, fitted on 1,500 synthetic
    transactions (30 days, 60 cards, 20 terminals) with the default model features."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from fraudnet.core.features import FEATURE_NAMES, FeatureConfig, default_model_features
    from fraudnet.training.convert import compile_sklearn
    from fraudnet.training.data import TxTable
    from fraudnet.training.train import replay_features

    rng = np.random.default_rng(seed)
    n = 1500
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    t = TxTable(tx_id=np.arange(n), ts_s=1.52e9 + np.sort(rng.uniform(0, 30 * 86400, n)),
                customer=rng.integers(0, 60, n), terminal=rng.integers(0, 20, n), amount=amount,
                fraud=(amount > 200).astype(np.int8))  # fmt: skip
    names = default_model_features()
    x = replay_features(t, FeatureConfig())[:, [FEATURE_NAMES.index(c) for c in names]]
    rf = RandomForestClassifier(n_estimators=n_estimators, random_state=seed).fit(x, t.fraud)
    return compile_sklearn(rf, names, FeatureConfig())


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int = 4) -> int:
    """Sum of the offsets consumer group ``group`` has committed on ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 3,
                  "enable.auto.commit": False})  # fmt: skip
    try:
        parts = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(0, tp.offset) for tp in parts)
    finally:
        c.close()
