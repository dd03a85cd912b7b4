"""Assemble and run one node process: broker, core, runtime, Faust app, ingest, HTTP.

Threads and loops of a node process (see docs/architecture.md):

* the main thread runs the asyncio loop: Faust agents, the ingest service,
  the HTTP API and the core (never entered from another thread);
* Faust's aiokafka consumer runs in its own thread and loop;
* librdkafka's threads serve the embedded broker (when no ``[broker] url``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mode import Service

from fraudnet import __version__
from fraudnet.config import Settings
from fraudnet.core.audit.batch import decision_bodies
from fraudnet.core.audit.schema import event_record
from fraudnet.core.crypto import key_id, public_bytes
from fraudnet.core.pipeline import NodeCore
from fraudnet.core.records import Decision
from fraudnet.core.scoring import BaselineScorer, Thresholds
from fraudnet.core.scoring.base import Scorer
from fraudnet.core.transaction import FieldMap, Normaliser

from .http.api import HttpService, build_http_app
from .metrics import NodeMetrics
from .runtime import NodeRuntime, now_us
from .storage.audit_async import AsyncAuditLog
from .storage.audit_log import open_audit_log
from .storage.audit_settings import audit_policy_from
from .storage.dedup import DedupStore
from .storage.journal_recovery import settle_intents
from .storage.keys import load_api_token, load_local_secret, load_node_key
from .stream.app import NodeApp, create_app
from .stream.broker import EmbeddedBroker
from .stream.broker_trim import ConsumedTrimmer
from .stream.ingest import IngestService
from .stream.ingest_proc import IngestProcess

__all__ = ["Node", "build_node", "configure_logging", "run_node"]

log = logging.getLogger("fraudnet.node")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (+ exception text)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str, fmt: str = "json", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Faust/aiokafka are chatty at INFO; keep them at WARNING unless debugging.
    for noisy in ("faust", "mode", "aiokafka", "kafka", "fraudnet.adapters"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def load_scorer(settings: Settings) -> Scorer:
    """The node's scorer: the deployed model (``fraudnet model deploy``), else the
    ``[scoring] model`` file, else the built-in baseline rules."""
    from .model_service import ACTIVE_MODEL

    deployed = settings.node_dir / ACTIVE_MODEL
    if deployed.exists() or settings.scoring.model:
        from fraudnet.core.scoring.model_scorer import ModelScorer
        from fraudnet.training.modelio import load_model

        path = deployed if deployed.exists() else Path(settings.scoring.model)
        if not path.is_absolute():
            path = settings.node_dir / path
        model, model_id = load_model(path)
        return ModelScorer(model, model_id=model_id)
    return BaselineScorer()


#: interim switch for ingest in a second process (ADR 0502) until ``[ingest]`` has a key for
#: it; a name the settings loader ignores (FRAUDNET_INGEST_* would be an unknown key)
INGEST_PROCESS_ENV = "FRAUDNET_INGESTPROC"


def ingest_process_wanted(settings: Settings) -> bool:
    """Ingest in a second process: ``[ingest] process = true`` (or ``FRAUDNET_INGESTPROC=1``),
    and no ``[p2p]`` (network pseudonyms are computed at ingest by the network bridge, which
    lives in this process)."""
    if not (settings.ingest.process or os.environ.get(INGEST_PROCESS_ENV, "0") == "1"):
        return False
    if "p2p" in settings.extra:
        log.warning("[ingest] process ignored: [p2p] needs ingest in the node process")
        return False
    return True


def config_digest(settings: Settings) -> str:
    """SHA-256 of node.toml as loaded (recorded in the audit log at start)."""
    import hashlib

    p = settings.node_dir / "node.toml"
    return hashlib.sha256(p.read_bytes() if p.exists() else b"").hexdigest()


@dataclass
class Node:
    settings: Settings
    broker: EmbeddedBroker | None
    bootstrap: str
    core: NodeCore
    runtime: NodeRuntime
    app: NodeApp
    ingest: IngestService | IngestProcess
    http: HttpService
    dedup: DedupStore
    audit: AsyncAuditLog
    actor: str
    trimmer: Any = None  # ConsumedTrimmer on the embedded broker ([broker] trim_consumed)
    network: Any = None  # NetworkBridge when [p2p] is configured
    policy: Any = None  # PolicyService when DIR/policy/active.toml exists
    model: Any = None  # ModelService (deploys, drift metrics)
    started_at: float = field(default_factory=time.time)

    @property
    def services(self) -> list[Service]:
        extra = [s for s in (self.trimmer, self.network, self.policy, self.model)
                 if s is not None]  # fmt: skip
        return [self.ingest, self.http, *extra]

    def endpoints(self) -> dict[str, Any]:
        t = self.app.fraudnet_topics
        return {
            "pid": os.getpid(),
            "node": self.settings.node.name,
            "api": self.http.url,
            "broker": self.bootstrap,
            "embedded_broker": self.broker is not None,
            "p2p": self.network.address if self.network is not None else "",
            "topics": {
                "tx_in": t.tx_in,
                "tx_batch": t.tx_batch,
                "decisions": t.decisions,
                "tx_api": t.tx_api,
                "labels": t.labels,
                "dead_letters": t.dead_letters,
            },
        }


def build_node(settings: Settings) -> Node:
    """Load keys and state, start the embedded broker if configured, build everything."""
    node_dir = settings.node_dir
    node_key = load_node_key(node_dir)
    actor = f"node:{key_id(public_bytes(node_key))}"
    secret = load_local_secret(node_dir)
    token = load_api_token(node_dir)
    broker: EmbeddedBroker | None = None
    if settings.embedded_broker:
        broker = EmbeddedBroker()
        bootstrap = broker.start()
    else:
        bootstrap = ",".join(
            part.removeprefix("kafka://") for part in settings.broker.url.split(",")
        )
    core = NodeCore(
        load_scorer(settings),
        secret,
        thresholds=Thresholds(settings.scoring.review_at, settings.scoring.block_at),
        fields=FieldMap.from_mapping(settings.ingest.fields, where="ingest.fields"),
        normaliser=Normaliser(
            reporting_currency=settings.currency.reporting,
            default_currency=settings.currency.default,
            rates=dict(settings.currency.rates),
        ),
    )
    metrics = NodeMetrics()
    dedup = DedupStore(node_dir / "state" / "dedup.sqlite")
    network_id = str(settings.extra.get("p2p", {}).get("network_id", "fraudnet"))
    audit_policy = audit_policy_from(settings.extra.get("audit"), str(node_dir / "node.toml"))
    if not audit_policy.fsync:
        log.warning("[audit] fsync = false: decisions are answered before their audit records "
                    "reach the disk (they survive a process crash, not a power loss)")  # fmt: skip
    audit = AsyncAuditLog(
        open_audit_log(node_dir / "audit", node_key, network_id=network_id, policy=audit_policy)
    )
    # a crash between a fold and its de-dup row left journal intents: record their
    # decisions (once) before anything reads the store (storage/journal.py)
    settle_intents(dedup, audit.log, actor=actor,
                   stream_origin=f"stream:{settings.broker.topic_prefix}.tx-in")  # fmt: skip
    dedup.audit_size = lambda: audit.log.size
    runtime = NodeRuntime(
        core, dedup, metrics, max_inflight_batches=settings.ingest.max_inflight_batches
    )

    def audit_decisions(decisions: Sequence[Decision], path: str) -> Awaitable[int]:
        origin = "api" if path == "api" else f"stream:{settings.broker.topic_prefix}.tx-in"
        # validated and encoded per batch: same bytes as one decision_record per decision;
        # appended now, in decision order, and committed at once (NodeRuntime.start_hooks)
        return audit.start_bodies(decision_bodies(decisions, actor=actor, origin=origin))

    runtime.decision_hooks.append(audit_decisions)
    app = create_app(settings, bootstrap, runtime)
    names = app.fraudnet_topics
    if broker is not None:
        broker.create_topics(dataclasses.astuple(names))
    ingest: IngestService | IngestProcess
    if ingest_process_wanted(settings):
        ingest = IngestProcess(runtime, node_dir=node_dir, bootstrap=bootstrap)
    else:
        ingest = IngestService(
            runtime,
            bootstrap=bootstrap,
            topic=names.tx_in,
            group_id=f"fraudnet-{settings.node.name}-ingest",
            fmt=settings.ingest.format,
            batch_max=settings.ingest.batch_max,
            linger_ms=settings.ingest.linger_ms,
            fetch_max_wait_ms=settings.broker.fetch_wait_ms(),
        )
    outputs = app.fraudnet_outputs

    async def send_labels(values: list[bytes]) -> None:
        for v in values:
            await outputs.labels.send(value=v)

    info = {"node": settings.node.name, "member": settings.node.member}
    http_app = build_http_app(
        runtime,
        token=token,
        max_inflight=settings.api.max_inflight,
        metrics_auth=settings.api.metrics_auth,
        info=info,
        send_labels=send_labels,
    )
    tls = (settings.api.tls_cert, settings.api.tls_key) if settings.api.tls_cert else None
    http = HttpService(http_app, settings.api.listen, tls=tls)
    node = Node(settings, broker, bootstrap, core, runtime, app, ingest, http, dedup, audit, actor)
    if broker is not None and broker.can_delete and settings.broker.trim_consumed:
        # the node's own input topics, below what its consumer groups committed (ADR 0506)
        node.trimmer = runtime.broker_trim = ConsumedTrimmer(
            bootstrap,
            {f"fraudnet-{settings.node.name}-ingest": [names.tx_in],
             app.conf.id: [names.tx_batch]},
            broker.delete_records,
        )  # fmt: skip
    if "p2p" in settings.extra:
        node.network = _build_network(settings, node_key, runtime, audit, actor)
        core.network_refs = node.network.network_refs
        core.network_features = node.network.features
        if node.network.consensus is not None:
            core.verdicts = _verdict_lookup(node.network)
    from .policy_service import attach_policy

    node.policy = attach_policy(settings.node_dir, core, runtime, audit, actor, send_labels)
    from .model_service import ModelService

    node.model = ModelService(settings.node_dir, core, runtime, audit, actor)
    return node


def _verdict_lookup(bridge: Any) -> Any:
    """The decision path's view of network verdicts: the card's, under the current epoch."""

    def lookup(rec: Any, now: int) -> tuple[str, int | None, int | None] | None:
        if not rec.net_refs:
            return None
        v = bridge.verdict_for("card", rec.net_refs[0][1], now)
        return None if v is None else (v.level, v.window, v.expires_at_us)

    return lookup


def _build_network(
    settings: Settings,
    node_key: Any,
    runtime: NodeRuntime,
    audit: AsyncAuditLog,
    actor: str,
) -> Any:
    from fraudnet.core.signals.policy import SignalPolicy
    from fraudnet.errors import ConfigError

    from .network import NetworkBridge
    from .p2p.files import load_network_keyring
    from .p2p.settings import P2PSettings

    where = str(settings.node_dir / "node.toml")
    p2p = P2PSettings.from_mapping(settings.extra["p2p"], where, base_dir=settings.node_dir)
    if p2p.state_dir is None:
        p2p = dataclasses.replace(p2p, state_dir=settings.node_dir / "state" / "p2p")
    keyring = load_network_keyring(p2p.network_key_file, p2p.key_grace_s)
    sig = dict(settings.extra.get("signals", {}))
    unknown = sorted(set(sig) - {"threshold", "budget", "cooldown_s"})
    if unknown:
        raise ConfigError(f"{where}: [signals] unknown key(s) {unknown}")
    try:
        policy = SignalPolicy(
            threshold=float(sig.get("threshold", 0.8)),
            budget=float(sig.get("budget", 0.05)),
            cooldown_us=int(float(sig.get("cooldown_s", 3600)) * 1_000_000),
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: [signals] {e}") from None
    consensus = None
    if "consensus" in settings.extra:
        consensus, p2p = _build_consensus(settings, p2p, node_key, audit, actor, policy.threshold)
    witness = None
    if p2p.witness is not None:
        from .witness import WitnessBridge, WitnessSettings

        ws = WitnessSettings.from_mapping(p2p.witness, where, settings.node_dir)
        witness = WitnessBridge(ws, p2p, node_key, audit.log, settings.node_dir)
    bridge = NetworkBridge(p2p, node_key, keyring, runtime, audit, actor, policy=policy,
                           consensus=consensus, witness=witness)  # fmt: skip
    if consensus is not None:  # false-positive labels clear this member's attestations
        on_label = runtime.on_label

        def on_label_and_consensus(value: bytes) -> None:
            on_label(value)
            bridge.on_label(value)

        runtime.on_label = on_label_and_consensus  # type: ignore[method-assign]  # runtime has no label hook list yet
    return bridge


def _build_consensus(
    settings: Settings, p2p: Any, node_key: Any, audit: AsyncAuditLog, actor: str,
    threshold: float,
) -> tuple[Any, Any]:  # fmt: skip
    """``[consensus]``: roster chain, tracker and attester; p2p members := roster members."""
    from .consensus_bridge import ConsensusBridge, ConsensusSettings, load_chain_file

    where = str(settings.node_dir / "node.toml")
    cs = ConsensusSettings.from_mapping(
        settings.extra["consensus"], where, node_dir=settings.node_dir, default_threshold=threshold
    )
    chain = load_chain_file(cs)
    members = {m.member_id: m.public_key for m in chain.tip.members}
    p2p = dataclasses.replace(p2p, members=members)

    def logged(fut: asyncio.Future[int]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.error("audit record of a consensus event failed: %r", fut.exception())

    def append(rec: Any) -> None:
        if getattr(audit, "_closing", False):  # shutdown: the audit log is already closed
            log.warning("audit log closed; consensus event not recorded: %s", rec.kind)
            return
        asyncio.ensure_future(audit.append_durable([rec])).add_done_callback(logged)

    return ConsensusBridge(cs, chain, node_key, append, actor), p2p


class _Lifecycle(Service):
    """Announces the node once everything runs; drains in-flight work on stop."""

    def __init__(self, node: Node, on_ready: Callable[[Node], None] | None, **kw: Any) -> None:
        self.node = node
        self.on_ready = on_ready
        super().__init__(**kw)

    async def on_started(self) -> None:
        node = self.node
        # Everything allocated so far (modules, Faust, the model, restored state) lives as
        # long as the node: moved out of the collector's generations, a full collection
        # scans only what was allocated since -- 1 ms instead of 60-75 ms of loop pause,
        # which held ~70 POST /v1/decide answers at once (ADR 0505).
        gc.collect()
        gc.freeze()
        ep = node.endpoints()
        run_dir = node.settings.node_dir / "run"
        run_dir.mkdir(exist_ok=True)
        tmp = run_dir / "endpoints.json.tmp"
        tmp.write_text(json.dumps(ep, indent=2))
        tmp.replace(run_dir / "endpoints.json")
        log.info(
            "node started: api %s, broker %s%s",
            ep["api"],
            ep["broker"],
            " (embedded)" if ep["embedded_broker"] else "",
            extra={"fields": {"event": "node_start", **ep}},
        )
        await node.audit.append_durable(
            [
                event_record(
                    "node_start", at_us=now_us(), actor=node.actor, action="start",
                    resource=f"node:{node.settings.node.name}",
                    details={
                        "api": str(ep["api"]), "broker": str(ep["broker"]),
                        "model_id": node.core.scorer.model_id,
                        "config_sha256": config_digest(node.settings),
                        "version": __version__,
                        "audit_fsync": node.audit.log.policy.fsync,
                    },
                )
            ]
        )  # fmt: skip
        if self.on_ready is not None:
            self.on_ready(node)


async def _drain_before_stop(node: Node) -> None:
    """Stop ingesting, wait (bounded) for in-flight batches, flush outputs."""
    node.ingest.pause()
    if isinstance(node.ingest, IngestProcess):  # its final counts, before node_stop
        await node.ingest.wait_stopped()
    try:
        await node.runtime.drain(timeout=10.0)
    except Exception as e:
        log.error("drain on stop failed: %r", e)
    # the network, policy and model services write audit records: stop them while the
    # log is still open (mode stops them again later: a no-op for a stopped service)
    for svc in (node.network, node.policy, node.model):
        if svc is not None:
            try:
                await svc.stop()
            except Exception as e:
                log.error("stopping %s failed: %r", type(svc).__name__, e)
    counters = node.core.counters.as_dict()
    log.info("node stopping", extra={"fields": {"event": "node_stop", **counters}})
    try:
        await node.audit.append_durable(
            [
                event_record(
                    "node_stop", at_us=now_us(), actor=node.actor, action="stop",
                    resource=f"node:{node.settings.node.name}",
                    details={k: v for k, v in counters.items() if k != "outcomes"},
                )
            ]
        )  # fmt: skip
        await node.audit.aclose()
    except Exception as e:
        log.error("closing the audit log failed: %r", e)


def run_node(
    node: Node,
    *,
    extra_services: Sequence[Service] = (),
    on_ready: Callable[[Node], None] | None = None,
    loglevel: str = "info",
) -> int:
    """Run until SIGTERM/SIGINT (or a service stops the worker); returns the exit code."""
    from faust import Worker

    class NodeWorker(Worker):
        # Faust stops the app (and its producer) before the other services;
        # drain first, while everything still runs.
        async def on_stop(self) -> None:
            await _drain_before_stop(node)
            await super().on_stop()

    lifecycle = _Lifecycle(node, on_ready)
    worker = NodeWorker(
        node.app,
        *node.services,
        *extra_services,
        lifecycle,
        quiet=True,
        loglevel=loglevel.upper(),
        redirect_stdouts=False,
        override_logging=False,
    )
    worker.spinner = None  # it writes terminal escapes to stdout, which belongs to the CLI
    node.app.fraudnet_worker = worker

    stopping: list[asyncio.Future[None]] = []
    fatal_errors: list[BaseException] = []

    def fatal(exc: BaseException) -> None:
        fatal_errors.append(exc)
        stopping.append(asyncio.ensure_future(worker.stop()))

    node.runtime.on_fatal = fatal
    from .memtrace import start_from_env

    memtrace = start_from_env()  # FRAUDNET_MEMTRACE=file: opt-in leak hunting (off by default)
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        if memtrace is not None:
            memtrace.stop()
        node.dedup.close()
        if node.broker is not None:
            node.broker.stop()
        # Faust closed the loop; leave a fresh one for whatever runs next in-process
        asyncio.get_event_loop_policy().set_event_loop(asyncio.new_event_loop())
    if fatal_errors:
        code = 6
    return code
