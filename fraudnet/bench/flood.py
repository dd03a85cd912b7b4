"""``fraudnet bench flood``: a hostile member floods a node; graylisting keeps validation bounded.

Three real py-libp2p GossipSub members in this process, on 127.0.0.x: the
*victim*, an *honest* member publishing signals steadily, and a *flooder* (a
member whose key is on the roster: the Byzantine case). After one valid
envelope, the flooder publishes valid-looking but invalid envelopes at
``--multiple`` times the per-member quota, cycling through five kinds:

* ``replay``       -- correctly signed, a sequence number the victim already accepted
* ``stale``        -- correctly signed, created 10 minutes ago
* ``future``       -- correctly signed, created 10 minutes ahead
* ``bad_signature``-- signed with a key that is not the flooder's
* ``wrong_network``-- correctly signed for another network

The victim rejects each with its own counter, REJECTs penalise the flooder
(P4; replay/stale/future are the author's own fault, see
:mod:`fraudnet.adapters.p2p.scoring`), the flooder is graylisted, and from then
on its messages are dropped before validation. Reported: flood rate offered
and reaching the victim, envelopes validated vs dropped before validation,
time to graylist, honest-signal p50/p99 latency (creation -> delivery at the
victim) during the flood, and the CPU seconds of the victim's validations.

The victim and the honest member share this process (and its GIL), the flooder
runs in its own, so honest latencies are somewhat pessimistic.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

KINDS = ("replay", "stale", "future", "bad_signature", "wrong_network")
NET = "floodnet"
S = 1_000_000


@dataclass
class _Inbox:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies_ms: list[float] = field(default_factory=list)
    from_flooder: int = 0
    probes: int = 0

    def deliver(self, payload: Any) -> None:
        now = time.time() * 1e6
        with self.lock:
            if payload.signer == "flooder":
                self.from_flooder += 1
                return
            for s in payload.signals:
                if s.pseudonym[:1] == b"H":  # not the probes sent before the flood
                    self.latencies_ms.append((now - s.observed_at_us) / 1000.0)
            self.probes += sum(1 for s in payload.signals if s.pseudonym[:1] == b"P")


def _thread_cpu_s(native_id: int | None) -> float | None:
    """User + system CPU seconds of one thread of this process (Linux /proc), or None."""
    if native_id is None:
        return None
    try:
        with open(f"/proc/self/task/{native_id}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)  # bounded polling with a deadline
    raise TimeoutError(f"timed out waiting for {what}")


def hostile_envelopes(
    key: Any, wrong_key: Any, n: int, now_us: int, replay_seq: int
) -> list[tuple[str, bytes]]:
    """``n`` distinct hostile envelopes of the five :data:`KINDS`, in rotation."""
    from fraudnet.core.signals import Signal, SignalPayload, seal

    out: list[tuple[str, bytes]] = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        created, net, k, seq = now_us, NET, key, 1_000_000 + i
        if kind == "replay":
            created, seq = now_us + i, replay_seq  # same seq, new bytes: not a gossip duplicate
        elif kind == "stale":
            created = now_us - 600 * S
        elif kind == "future":
            created = now_us + 600 * S
        elif kind == "bad_signature":
            k = wrong_key
        else:
            net = "othernet"
        ps = b"F" + i.to_bytes(8, "big") + bytes(23)
        sig = Signal("card", ps, 990, ("flood",), created, created + 3600 * S)
        out.append((kind, seal(k, SignalPayload(net, "flooder", 0, seq, created, (sig,)))))
    return out


def _settings(name: str, addrs: dict[str, str], pids: dict[str, str], members: dict[str, str],
              quota: float, burst: float, flush_ms: int, heartbeat_ms: int) -> Any:  # fmt: skip
    from fraudnet.adapters.p2p.settings import P2PSettings

    return P2PSettings.from_mapping(
        {
            "listen": addrs[name],
            "network_id": NET,
            "members": members,
            "network_key_file": "unused",
            "peers": [f"{addrs[m]}/p2p/{pids[m]}" for m in addrs if m != name],
            "heartbeat_ms": heartbeat_ms,
            "flush_interval_ms": flush_ms,
            "member_rate_per_s": quota,
            "member_burst": burst,
        },
        f"bench-flood:{name}",
    )


def _flooder_main(cfg: dict[str, Any], cmd_q: Any, out_q: Any) -> None:
    """The flooder's process: a member node that obeys ``cmd_q`` (probe / flood / stop)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fraudnet.adapters.p2p.service import P2PService
    from fraudnet.core.signals import EpochKey, NetworkKeyring, Signal, SignalPayload, seal

    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    key = Ed25519PrivateKey.from_private_bytes(cfg["key"])
    svc = P2PService(_settings(**cfg["settings"]), key,
                     NetworkKeyring([EpochKey(0, 0, b"\x05" * 32)], 0), lambda p: None)  # fmt: skip
    svc.start()
    # hostile: no outbound spam limit of its own (py-libp2p applies
    # max_messages_per_topic_per_second to a node's own publications too)
    assert svc.runtime.pubsub is not None
    router: Any = svc.runtime.pubsub.router
    router.spam_protection_enabled = False
    out_q.put(("ready",))
    while True:
        cmd = cmd_q.get()
        if cmd[0] == "probe":
            now = int(time.time() * S)
            sig = Signal("card", b"V" * 32, 900, ("ok",), now, now + 3600 * S)
            svc.publish_bytes_nowait(
                seal(key, SignalPayload(NET, "flooder", 0, cmd[1], now, (sig,)))
            )
        elif cmd[0] == "flood":
            _, replay_seq, rate, n = cmd
            wrong = Ed25519PrivateKey.from_private_bytes(b"\x7f" * 32)
            envs = hostile_envelopes(key, wrong, n, int(time.time() * S), replay_seq)
            out_q.put(("started", time.time()))
            t0 = time.monotonic()
            for i, (_kind, data) in enumerate(envs):
                due = t0 + i / rate
                while (now_m := time.monotonic()) < due:
                    time.sleep(min(0.002, due - now_m))  # load generator pacing
                svc.publish_bytes_nowait(data)
            out_q.put(("flooded", time.monotonic() - t0, svc.metrics()["p2p_raw_dropped"]))
        else:
            svc.stop()
            out_q.put(("stopped",))
            return


def run(
    *,
    duration: float = 20.0,
    multiple: float = 100.0,
    quota: float = 1.0,
    burst: float = 2.0,
    flush_ms: int = 1000,
    heartbeat_ms: int = 300,
    honest_per_s: float = 10.0,
    base_port: int | None = None,
) -> dict[str, Any]:
    """Run the flood scenario (see module docstring); return the figures as a dict.

    The victim and the honest member run in this process, the flooder in its own
    (so its publishing does not compete for this interpreter's GIL).
    """
    import multiprocessing as mp

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fraudnet.adapters.p2p.host import peer_id_of
    from fraudnet.adapters.p2p.service import P2PService
    from fraudnet.core import crypto
    from fraudnet.core.signals import EpochKey, NetworkKeyring

    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    names = ["victim", "honest", "flooder"]
    seeds = {n: bytes([0x60 + i]) * 32 for i, n in enumerate(names)}
    keys = {n: Ed25519PrivateKey.from_private_bytes(seeds[n]) for n in names}
    port = base_port or 44000 + (os.getpid() % 300) * 10
    addrs = {n: f"/ip4/127.0.0.{30 + i}/tcp/{port + i}" for i, n in enumerate(names)}
    pids = {n: peer_id_of(crypto.public_bytes(k)).to_base58() for n, k in keys.items()}
    members = {n: crypto.public_bytes(k).hex() for n, k in keys.items()}
    ring = NetworkKeyring([EpochKey(0, 0, b"\x05" * 32)], 0)
    inbox = _Inbox()

    def settings_of(n: str) -> dict[str, Any]:
        return {"name": n, "addrs": addrs, "pids": pids, "members": members, "quota": quota,
                "burst": burst, "flush_ms": flush_ms, "heartbeat_ms": heartbeat_ms}  # fmt: skip

    victim = P2PService(_settings(**settings_of("victim")), keys["victim"], ring, inbox.deliver)
    honest = P2PService(_settings(**settings_of("honest")), keys["honest"], ring, lambda p: None)
    vcpu = [0.0]
    validate = victim.validator.validate

    def timed_validate(data: bytes, now_us: int) -> Any:
        t = time.thread_time()
        try:
            return validate(data, now_us)
        finally:
            vcpu[0] += time.thread_time() - t

    victim.validator.validate = timed_validate  # type: ignore[method-assign]  # instrumentation
    ctx = mp.get_context("spawn")
    cmd_q, out_q = ctx.Queue(), ctx.Queue()
    cfg = {"key": seeds["flooder"], "settings": settings_of("flooder")}
    proc = ctx.Process(target=_flooder_main, args=(cfg, cmd_q, out_q), daemon=True)
    proc.start()
    victim.start()
    honest.start()
    try:
        if out_q.get(timeout=60)[0] != "ready":
            raise RuntimeError("flooder process did not start")
        _wait(lambda: all(s.metrics()["p2p_connected_members"] >= 2 for s in (victim, honest)),
              30, "connectivity")  # fmt: skip
        probes = iter(range(1, 1_000_000))

        def probe() -> bool:  # a new seq each try: identical bytes would be gossip duplicates
            cmd_q.put(("probe", next(probes)))
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and victim.highest_seq("flooder") < 1:
                time.sleep(0.02)
            return victim.highest_seq("flooder") >= 1

        _wait(probe, 30, "one valid envelope of the flooder at the victim")
        # the honest member reaches the victim before the flood starts
        _wait(lambda: honest.publish_nowait([_honest_signal(0, b"P")]) and inbox.probes > 0,
              30, "an honest signal at the victim")  # fmt: skip
        rate = multiple * quota
        n = int(rate * duration)
        with inbox.lock:
            inbox.latencies_ms.clear()
            f0 = inbox.from_flooder
        m0 = victim.metrics()
        cpu0 = _thread_cpu_s(victim.native_thread_id)
        honest_sent = 0
        wall0 = time.time()
        cmd_q.put(("flood", victim.highest_seq("flooder"), rate, n))
        next_honest = time.monotonic()
        flooded = None
        honest_until = time.monotonic() + duration
        while flooded is None or time.monotonic() < honest_until:
            if time.monotonic() >= next_honest:
                honest_sent += 1
                honest.publish_nowait([_honest_signal(honest_sent)])
                next_honest += 1.0 / honest_per_s
            with contextlib.suppress(queue.Empty):
                got = out_q.get(timeout=max(0.0, next_honest - time.monotonic()))
                if got[0] == "started":
                    wall0 = got[1]  # the flooder's first envelope (same host clock)
                flooded = got if got[0] == "flooded" else flooded
        _, offered_s, raw_dropped = flooded
        offered_s = max(offered_s, 1e-9)
        _wait(lambda: len(inbox.latencies_ms) >= honest_sent, 30, "every honest signal")
        # let the flood in flight drain, then read the counters
        _wait(lambda: _settled(victim), 30, "the victim's counters to settle")
        m1 = victim.metrics()
        cpu1 = _thread_cpu_s(victim.native_thread_id)
        gray_at = victim.graylisted_at().get("flooder")
        scores = victim.peer_scores()
        lowest = dict(victim.runtime.watch.lowest)
        cmd_q.put(("stop",))
        out_q.get(timeout=30)
    finally:
        victim.stop()
        honest.stop()
        proc.join(10)
        if proc.is_alive():
            proc.kill()

    def d(k: str) -> int:
        return int(m1.get(k, 0) - m0.get(k, 0))

    lat = sorted(inbox.latencies_ms)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None

    flooder_accepted = inbox.from_flooder - f0
    honest_envelopes = d("signals_envelopes_accepted") - flooder_accepted
    flood_validations = d("p2p_validations") - honest_envelopes
    reached = flood_validations + d("p2p_dropped_graylisted")
    return {
        "quota_per_s": quota,
        "multiple": multiple,
        "flood_offered_per_s": round(n / offered_s, 1),
        "flood_sent": n - int(raw_dropped),
        "flood_duration_s": round(offered_s, 2),
        "flood_reaching_victim": reached,
        "flood_reaching_victim_per_s": round(reached / offered_s, 1),
        "flood_validations": flood_validations,
        "dropped_before_validation": d("p2p_dropped_graylisted"),
        "time_to_graylist_s": None if gray_at is None else round(gray_at - wall0, 2),
        "flooder_lowest_score": round(lowest.get("flooder", 0.0), 1),
        "flooder_score_at_end": round(scores.get("flooder", 0.0), 1),
        "honest_score": round(scores.get("honest", 0.0), 1),
        "rejected": {k: d(f"signals_reject_{k}") for k in ("bad_signature", "wrong_network")},
        "ignored": {k: d(f"signals_ignore_{k}") for k in ("replay", "expired", "clock_skew")},
        "author_penalised": d("p2p_author_penalised"),
        "bans": d("p2p_peers_banned"),
        "reconnects_refused": d("p2p_conn_refused_banned"),
        "accepted_from_flooder": flooder_accepted,
        "honest_signals": honest_sent,
        "honest_delivered": len(lat),
        "honest_p50_ms": pct(0.50),
        "honest_p99_ms": pct(0.99),
        "validation_cpu_s": round(vcpu[0], 4),
        "victim_p2p_thread_cpu_s": None if cpu0 is None or cpu1 is None
        else round(cpu1 - cpu0, 2),
    }  # fmt: skip


def _honest_signal(i: int, tag: bytes = b"H") -> Any:
    from fraudnet.core.signals import Signal

    now = int(time.time() * S)
    return Signal("card", tag + i.to_bytes(8, "big") + bytes(23), 900, ("honest",), now,
                  now + 3600 * S)  # fmt: skip


def _settled(svc: Any) -> bool:
    """True once two reads of the validation counters 0.5 s apart agree."""
    a = svc.metrics()
    time.sleep(0.5)  # a quiet period is what "settled" means here (no synchronisation)
    b = svc.metrics()
    keys = ("p2p_validations", "p2p_dropped_graylisted")
    return all(a[k] == b[k] for k in keys)


@click.command("flood")
@click.option("--duration", default=20.0, show_default=True, help="seconds of flood")
@click.option("--multiple", default=100.0, show_default=True, help="flood rate / member quota")
@click.option("--quota", default=1.0, show_default=True, help="per-member quota, envelopes/s")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def cli(duration: float, multiple: float, quota: float, as_json: bool) -> None:
    """A member floods invalid envelopes at N x quota; graylisting bounds validation."""
    res = run(duration=duration, multiple=multiple, quota=quota, burst=2 * quota,
              flush_ms=max(1, int(1000 / quota)))  # fmt: skip
    if as_json:
        click.echo(json.dumps(res))
    else:
        for k, v in res.items():
            click.echo(f"{k:>26}: {v}")
