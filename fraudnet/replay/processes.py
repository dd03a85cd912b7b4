"""Real-process backend: scenario members as ``fraudnet node run`` processes on 127.0.0.x.

What it does (network mode): :func:`fraudnet.testing.init_network` creates one
node directory per member (own key, audit log, embedded broker, libp2p on
127.0.0.(10+i), the signed genesis roster with the scenario's ``f``); every
node is started; once the mesh is connected the records are sent, in event
order, to their member's ``POST /v1/decide`` (as fast as possible, or paced
at ``replay.speed`` x real time). The decisions are the HTTP answers; the
block verdicts are read from each node's verdict store and joined back to
cards through the network keyring; each node's audit log is verified with
``fraudnet audit verify``. ``isolated`` runs the same nodes without
``[p2p]``; ``central`` one node that receives everything.

Faults: ``crash`` is applied to real processes (SIGKILL at ``at_s``, records
held, restart at ``until_s`` with the uncommitted tail re-sent, which the
node must answer as duplicates). ``partition`` (network mode) reconfigures
the nodes: at ``at_s`` every node is stopped (SIGTERM) and restarted with only
its own group's peers in ``[p2p] peers``, and the runner waits until no node
is connected to a member outside its group; at ``until_s`` all are restarted
with the full peer list and the mesh is awaited again. The replay goes on
between the two (each node decides its own records throughout). Limits
(reported, not hidden): other faults are simulation-only (listed under
``faults_ignored``); only generator data (the
default field layout) is supported; verdict timing, signal propagation and
per-node message counts are not measured here (``None`` in the report);
decision latency is the node's own ``latency_us`` (wall clock).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from fraudnet.errors import UnavailableError

from .members import Recorder
from .scenario import Scenario
from .simnet import NetStats
from .simrun import RunResult
from .sources import Dataset, Replayed

__all__ = ["run_processes"]

S = 1_000_000
_PEERS = re.compile(r"^peers = \[.*\]$", re.M)
_ADDR = re.compile(r'"(/ip4/[^"]+)"')
_LISTEN = re.compile(r'^listen = "(/ip4/[^"]+)"$', re.M)


def _metric(api: str, name: str) -> float:
    import requests

    for line in requests.get(f"{api}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _prepare(root: Path, sc: Scenario, mode: str) -> list[Path]:
    from fraudnet.testing import init_network, run_cli

    n = sc.network.members
    if mode == "network":
        dirs = init_network(
            root, n, roster_f=sc.network.f, window_s=sc.network.window_s,
            threshold=sc.signals.threshold,
        )  # fmt: skip
    else:
        dirs = [root / (f"member-{i}" if mode == "isolated" else "central") for i in range(
            n if mode == "isolated" else 1)]  # fmt: skip
        for d in dirs:
            run_cli("node", "init", str(d), "--member", d.name)
    for d in dirs:
        toml = d / "node.toml"
        toml.write_text(toml.read_text().replace("# USD = 0.92", "USD = 0.92"))
    return dirs


def _peer_lines(dirs: list[Path]) -> list[str]:
    """Each node's ``peers = [...]`` line of ``node.toml`` as written by init_network."""
    out = []
    for d in dirs:
        m = _PEERS.search((d / "node.toml").read_text())
        if m is None:
            raise UnavailableError(f"process mode: {d}/node.toml has no [p2p] peers line")
        out.append(m.group(0))
    return out


def _set_peers(d: Path, line: str) -> None:
    toml = d / "node.toml"
    toml.write_text(_PEERS.sub(lambda _m: line, toml.read_text(), count=1))


def _group_line(full: str, own: set[str]) -> str:
    """``full`` keeping only the peers whose address is one of ``own`` (listen addresses)."""
    keep = [a for a in _ADDR.findall(full) if a.rsplit("/p2p/", 1)[0] in own]
    return "peers = [" + ", ".join(f'"{a}"' for a in keep) + "]"


def _listen(d: Path) -> str:
    m = _LISTEN.search((d / "node.toml").read_text())
    if m is None:
        raise UnavailableError(f"process mode: {d}/node.toml has no [p2p] listen address")
    return m.group(1)


def run_processes(
    sc: Scenario, mode: str, data: Dataset, seed: int, work_dir: Path | None = None
) -> RunResult:
    """Run ``mode`` of ``sc`` on real node processes (see module docstring)."""
    import requests

    from fraudnet.adapters.p2p.files import load_network_keyring
    from fraudnet.adapters.storage.verdicts import read_certificates
    from fraudnet.testing import run_cli, running_node, wait_for

    if data.fields.card != "card":
        raise UnavailableError("process mode: only generator data is supported so far; use --sim")
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"fraudnet-scenario-{mode}-", dir=work_dir))
    dirs = _prepare(root, sc, mode)
    names = tuple(d.name for d in dirs)
    rec = Recorder()
    counters: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        eps = [stack.enter_context(running_node(d)) for d in dirs]
        if mode == "network" and len(eps) > 1:
            wait_for(lambda: all(
                _metric(ep["api"], "fraudnet_p2p_connected_members") >= len(eps) - 1
                for ep in eps), 120, "the members' mesh")  # fmt: skip
        sessions = [requests.Session() for _ in eps]
        for s, ep in zip(sessions, eps, strict=True):
            s.headers["Authorization"] = f"Bearer {ep['token']}"

        def send(i: int, r: Replayed) -> None:
            resp = sessions[i].post(f"{eps[i]['api']}/v1/decide", json=r.raw, timeout=30)
            if resp.status_code == 400:
                rec.dead_letters += 1
                return
            if resp.status_code != 200:
                raise UnavailableError(
                    f"process mode: {names[i]} answered {resp.status_code} for {r.tx_id}"
                )
            d = resp.json()
            if d.get("duplicate"):
                rec.duplicates += 1
                return
            rec.admitted.setdefault(r.tx_id, []).append(names[i])
            reasons = d.get("reasons", [])
            level = ("block" if "network_verdict_block" in reasons else
                     "step-up" if "network_verdict_step_up" in reasons else "none")  # fmt: skip
            rec.decisions.append((
                names[i], r.tx_id, r.card, r.label, float(d["score"]), float(d["score"]),
                d["outcome"], r.t_us, r.t_us + int(d.get("latency_us", 0)), level, 0,
            ))  # fmt: skip

        # crash faults: SIGKILL the member's node at at_s; its records wait (the stream
        # holds them); at until_s restart it, re-send its last `redeliver` records (the
        # uncommitted tail) and then the held ones
        crashes = [
            (int(f.at_s * S), int((f.until_s or 0) * S), sc.network.names.index(f.member))
            for f in sc.faults if f.kind == "crash" and f.member and mode != "central"
        ]  # fmt: skip
        down: dict[int, int] = {}
        held: dict[int, list[Replayed]] = {}
        recent = [deque[Replayed](maxlen=max(1, sc.replay.redeliver)) for _ in eps]

        def restart(i: int) -> None:
            eps[i] = stack.enter_context(running_node(dirs[i]))
            sessions[i].headers["Authorization"] = f"Bearer {eps[i]['token']}"
            for r in [*recent[i], *held.pop(i, [])]:
                send(i, r)
                recent[i].append(r)
            rec.restarts += 1

        # partition faults (network mode): restart every node with its group's peers only,
        # then, at the heal, with all of them (see module docstring)
        parts = [
            (int(f.at_s * S), int((f.until_s or 0) * S), f.groups)
            for f in sc.faults if f.kind == "partition" and mode == "network" and len(eps) > 1
        ]  # fmt: skip
        full = _peer_lines(dirs) if parts else []

        def connected(i: int) -> float:
            return _metric(eps[i]["api"], "fraudnet_p2p_connected_members")

        def reconfigure(lines: list[str], want: list[float]) -> None:
            for i, line in enumerate(lines):
                if i in down:
                    continue
                eps[i]["proc"].terminate()
                eps[i]["proc"].wait(60)
                _set_peers(dirs[i], line)
            for i in range(len(eps)):
                if i not in down:
                    eps[i] = stack.enter_context(running_node(dirs[i]))
                    sessions[i].headers["Authorization"] = f"Bearer {eps[i]['token']}"
            live = [i for i in range(len(eps)) if i not in down]
            wait_for(lambda: all(connected(i) == want[i] for i in live), 120,
                     "the members' mesh to match the partition")  # fmt: skip
            rec.restarts += len(live)

        def split(groups: tuple[tuple[str, ...], ...]) -> None:
            index = {m: k for k, m in enumerate(sc.network.names)}
            group_of = {index[m]: {index[x] for x in g} for g in groups for m in g}
            lines: list[str] = []
            want: list[float] = []
            for i in range(len(eps)):
                mates = {_listen(dirs[j]) for j in group_of.get(i, {i}) if j != i}
                lines.append(_group_line(full[i], mates))
                want.append(float(len(mates)))
            reconfigure(lines, want)
            split_want[:] = want

        def heal() -> None:
            # the partition held to the end: no node found a member outside its group
            leaked = [names[i] for i in range(len(eps))
                      if i not in down and connected(i) != split_want[i]]  # fmt: skip
            if leaked:
                raise UnavailableError(f"process mode: the partition leaked at {leaked}")
            reconfigure(full, [float(len(eps) - 1)] * len(eps))

        split_want: list[float] = []
        t0 = time.monotonic()
        speed = sc.replay.speed
        healing: list[int] = []
        for r in data.records:
            for k, (at, until, groups) in enumerate(parts):
                if k not in healing and at <= r.t_us < until:
                    split(groups)
                    healing.append(k)
                elif k in healing and r.t_us >= until:
                    heal()
                    healing.remove(k)
                    parts[k] = (at, -1, groups)  # done
            for i, until in list(down.items()):
                if r.t_us >= until:
                    del down[i]
                    restart(i)
            for at, until, i in crashes:
                if at <= r.t_us < until and i not in down and i < len(eps):
                    proc = eps[i]["proc"]
                    proc.kill()
                    proc.wait(30)
                    down[i] = until
                    crashes = [c for c in crashes if c != (at, until, i)]
            i = 0 if mode == "central" else r.member % len(eps)
            if speed:
                lag = r.t_us / S / speed - (time.monotonic() - t0)
                if lag > 0:
                    time.sleep(lag)  # pacing the replay at k x real time, not synchronisation
            if i in down:
                held.setdefault(i, []).append(r)
                continue
            send(i, r)
            recent[i].append(r)
        for i in list(down):
            del down[i]
            restart(i)
        if healing:  # the records ended inside a partition: heal before the checks
            heal()
        if (
            mode == "network"
        ):  # let attestations settle: bounded wait for the stores to stop growing
            _settle(dirs, read_certificates)
        for ep, name in zip(eps, names, strict=True):
            counters[name] = requests.get(
                f"{ep['api']}/v1/stats", headers={"Authorization": f"Bearer {ep['token']}"},
                timeout=10,
            ).json()  # fmt: skip
    if mode == "network":
        ring = load_network_keyring(dirs[0] / "network.key", 3600)
        now = time.time_ns() // 1000
        by_ps = {ring.pseudonyms("card", v, now)[0][1]: c for c, v in data.card_values.items()}
        end = data.duration_us
        for d, name in zip(dirs, names, strict=True):
            store = d / "state" / "verdicts.store"
            for cert in read_certificates(store) if store.exists() else []:
                card = by_ps.get(cert.entity)
                if cert.level == "block" and card is not None:
                    rec.blocks.setdefault(card, {}).setdefault(name, end)
    for d, name in zip(dirs, names, strict=True):
        ok = run_cli("audit", "verify", str(d), check=False).returncode == 0
        counters.setdefault(name, {})["audit_verified"] = ok
    res = RunResult(mode, seed, names, names, rec, NetStats(), counters=counters)
    return res


def _settle(dirs: list[Path], read: Any, rounds: int = 20) -> None:
    """Poll the verdict stores until two consecutive reads agree (at most ``rounds`` s)."""

    def count() -> int:
        n = 0
        for d in dirs:
            store = d / "state" / "verdicts.store"
            with contextlib.suppress(Exception):
                n += len(read(store)) if store.exists() else 0
        return n

    last = -1
    deadline = time.monotonic() + rounds
    while time.monotonic() < deadline:
        cur = count()
        if cur == last and cur > 0:
            return
        last = cur
        time.sleep(1.0)  # polling a file another process appends to, bounded by the deadline
