"""The node's network bridge: risk signals out, network evidence in.

* At ingest, :meth:`NetworkBridge.network_refs` computes the network
  pseudonyms of the card and terminal under every accepted key epoch (the
  raw identifiers exist only then); they travel in ``TxRecord.net_refs``.
* Once decisions are durable, :meth:`NetworkBridge.on_decided` offers each
  to the :class:`~fraudnet.core.signals.policy.SignalPolicy` (threshold on
  the node's *local* score, a budget of at most 5 % of transactions, a
  cooldown) and publishes what passes through the p2p thread (one envelope
  per flush interval). Each envelope sent is an audit record.
* Accepted envelopes from other members arrive on the event loop
  (``loop.call_soon_threadsafe``) and update :class:`NetworkEvidence`;
  each is an audit record.
* With ``[consensus]`` configured, a :class:`ConsensusBridge` rides on the
  same p2p service: the same local scores make this member attest
  (:meth:`ConsensusBridge.note_local_score`), false-positive labels clear,
  quorum verdicts are looked up with :meth:`NetworkBridge.verdict_for`, and
  only roster members' nodes may connect.
* With witnessing on, a :class:`~fraudnet.adapters.witness.WitnessBridge`
  gossips this node's signed audit checkpoints and cosigns its peers'.

The libp2p host runs in its own thread (see :mod:`fraudnet.adapters.p2p.service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mode import Service
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from fraudnet.core.audit.schema import AuditRecord, event_record
from fraudnet.core.consensus import Verdict
from fraudnet.core.features.network import EvidenceFeatures
from fraudnet.core.records import Decision, TxRecord
from fraudnet.core.signals import NetworkKeyring, SignalPayload
from fraudnet.core.signals.evidence import NetworkEvidence
from fraudnet.core.signals.keyring import PseudonymLinks
from fraudnet.core.signals.policy import SignalPolicy
from fraudnet.core.transaction import Transaction

from .consensus_bridge import VERDICT_REASONS, ConsensusBridge
from .p2p.service import P2PService
from .p2p.settings import P2PSettings
from .runtime import NodeRuntime, now_us
from .storage.audit_async import AsyncAuditLog

__all__ = ["VERDICT_REASONS", "NetworkBridge"]

log = logging.getLogger("fraudnet.network")


class NetworkBridge(Service):
    def __init__(
        self,
        settings: P2PSettings,
        node_key: Ed25519PrivateKey,
        keyring: NetworkKeyring,
        runtime: NodeRuntime,
        audit: AsyncAuditLog,
        actor: str,
        *,
        policy: SignalPolicy | None = None,
        consensus: ConsensusBridge | None = None,
        witness: Any = None,
        **kw: Any,
    ) -> None:
        self.p2p_settings = settings
        self.node_key = node_key
        self.keyring = keyring
        self.runtime = runtime
        self.audit = audit
        self.actor = actor
        self.policy = policy or SignalPolicy()
        self.links = PseudonymLinks()
        self.p2p: P2PService | None = None
        self.evidence: NetworkEvidence | None = None
        #: entity kinds a decided transaction offers to the signal policy (same budget)
        self.signal_kinds: tuple[str, ...] = ("card",)
        #: network columns for a model that reads them (NodeCore.network_features)
        self.features = EvidenceFeatures(lambda: self.evidence, self.links.resolve)
        self.address = ""
        self.signals_offered = 0
        self._rejects_seen: dict[str, int] = {}
        self.consensus = consensus
        self.witness = witness
        self.audit_dropped = 0
        self._tick_task: asyncio.Task[None] | None = None
        super().__init__(**kw)
        runtime.decided_hooks.append(self.on_decided)
        runtime.metrics.registry.register(_P2PCollector(self))

    # -- ingest side (called by NodeCore on the loop thread) ----------------------
    def network_refs(self, tx: Transaction, now: int) -> tuple[tuple[int, bytes, bytes], ...]:
        cards = self.keyring.pseudonyms("card", tx.card, now)
        terms = self.keyring.pseudonyms("terminal", tx.terminal_id, now)
        if len(cards) > 1:  # key rotation grace period: keep the entity's windows whole
            self.links.link(cards)
            self.links.link(terms)
        return tuple((e, c, t) for (e, c), (_, t) in zip(cards, terms, strict=True))

    # -- lifecycle ---------------------------------------------------------------
    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()
        c = self.consensus
        self.p2p = P2PService(
            self.p2p_settings, self.node_key, self.keyring, self._on_signals, loop=loop,
            is_allowed=c.peer_allowed if c is not None else None,
        )  # fmt: skip
        if c is not None:
            c.attach(self.p2p)
            restored = c.restore()
            if restored:
                log.info("restored %d statements from the verdict store", restored)
        if self.witness is not None:
            self.witness.attach(self.p2p)
        self.evidence = NetworkEvidence(self.p2p.member_id)
        self.address = await loop.run_in_executor(None, self.p2p.start)
        if c is not None or self.witness is not None:
            self._tick_task = asyncio.ensure_future(self._ticks())
        log.info(
            "p2p listening on %s",
            self.address,
            extra={"fields": {"event": "p2p_start", "address": self.address}},
        )

    async def on_stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        if self.p2p is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.p2p.stop)
        if self.consensus is not None:
            self.consensus.close()

    async def _ticks(self) -> None:
        """Once a second: consensus renewals/expiries; witness checkpoint gossip."""
        while True:
            await asyncio.sleep(1.0)
            now = now_us()
            for step in self._tick_steps():
                try:
                    step(now)
                except Exception:  # a tick must never stop the node
                    log.exception("network tick failed")

    def _audit_rejects(self, now: int) -> None:
        """One ``signal_rejected`` record per reason that rose since the last tick.

        Aggregated per second so a flood of hostile envelopes costs the log a
        few records a second, not one per envelope; the validator runs on the
        p2p thread, which knows the reason but not (after GossipSub) the peer.
        """
        if self.p2p is None:
            return
        counters = self.p2p.metrics()
        for name, value in counters.items():
            if not name.startswith("signals_reject_"):
                continue
            delta = value - self._rejects_seen.get(name, 0)
            if delta <= 0:
                continue
            self._rejects_seen[name] = value
            self._audit(
                event_record(
                    "signal_rejected",
                    at_us=now,
                    actor=self.actor,
                    action="reject",
                    outcome="rejected",
                    origin="p2p",
                    resource="signals",
                    peer="any",
                    reason=name.removeprefix("signals_reject_"),
                    count=delta,
                )
            )

    def _tick_steps(self) -> list[Callable[[int], None]]:
        out: list[Callable[[int], None]] = [self._audit_rejects]
        if self.consensus is not None:
            out.append(self.consensus.tick)
        if self.witness is not None:
            out.append(self.witness.tick)
        return out

    # -- consensus: the decision path's lookup --------------------------------------
    def verdict_for(self, kind: str, net_pseudonym: bytes, now_us: int) -> Verdict | None:
        """The quorum verdict in force on an entity's network pseudonym (None: none).

        A dict lookup and an expiry check; ``kind`` is ``card``, ``terminal``...
        Reason codes to cite: :data:`VERDICT_REASONS` ``[verdict.level]``.
        """
        c = self.consensus
        return None if c is None else c.verdict_for(kind, net_pseudonym, now_us)

    def on_label(self, value: bytes) -> None:
        """A label event (JSON ``{tx_id, kind}``): false positives clear this member's risk."""
        c = self.consensus
        if c is None:
            return
        try:
            obj = json.loads(value)
            kind, tx_id = str(obj["kind"]), str(obj["tx_id"])
        except (ValueError, KeyError, TypeError):
            return
        if kind in ("false_positive", "genuine"):
            c.note_false_positive(tx_id, now_us())

    # -- outbound -------------------------------------------------------------------
    def on_decided(self, decisions: Sequence[Decision], records: Sequence[TxRecord]) -> None:
        if self.p2p is None:
            return
        now = now_us()
        out = []
        self.policy.note_transactions(len(decisions))
        c = self.consensus
        for d, r in zip(decisions, records, strict=True):
            if not r.net_refs:
                continue
            epoch, card_ps, term_ps = r.net_refs[0]
            # a network-aware model left its local score (network columns neutral): only
            # that one may be shared, or one member's false flag would echo back
            local = self.features.pop_local_score(d.tx_id)
            score = d.score if local is None else local
            if c is not None:
                c.note_local_score("card", card_ps, epoch, score, now, tx_id=d.tx_id,
                                   reasons=_wire_reasons(d.reasons))  # fmt: skip
            for kind, ps in (("card", card_ps), ("terminal", term_ps)):
                if kind not in self.signal_kinds:
                    continue
                sig = self.policy.offer(
                    kind,
                    ps,
                    score,
                    now,
                    reasons=_wire_reasons(d.reasons),
                    n_tx=1,
                    n_alerts=int(d.outcome != "allow"),
                )
                if sig is not None:
                    out.append(sig)
        if not out:
            return
        self.signals_offered += len(out)
        queued = self.p2p.publish_nowait(out)
        digest = hashlib.sha256(b"".join(s.pseudonym for s in out)).hexdigest()[:32]
        self._audit(
            event_record(
                "signal_sent",
                at_us=now,
                actor=self.actor,
                action="offer",
                outcome="queued" if queued else "dropped",
                origin="node",
                resource=f"signals:{len(out)}",
                signal_id=digest,
                count=len(out),
            )
        )

    # -- inbound (on the loop thread) --------------------------------------------------
    def _on_signals(self, payload: SignalPayload) -> None:
        ev = self.evidence
        if ev is None:
            return
        for s in payload.signals:
            ev.add(payload.signer, s, self.links.resolve(payload.key_epoch, s.pseudonym))
        if payload.signer != ev.own_member:
            self._audit(
                event_record(
                    "signal_received",
                    at_us=now_us(),
                    actor=self.actor,
                    action="accept",
                    origin=f"member:{payload.signer}",
                    resource=f"signals:{len(payload.signals)}",
                    signal_id=f"{payload.signer}:{payload.seq}",
                    peer=payload.signer,
                    count=len(payload.signals),
                )
            )

    def _audit(self, rec: AuditRecord) -> None:
        if self.audit_closed():
            return
        fut = asyncio.ensure_future(self.audit.append_durable([rec]))
        fut.add_done_callback(_log_failure)

    def audit_closed(self) -> bool:
        """True once the node closed its audit log (shutdown): records are dropped and counted.

        The node closes the audit log while draining, before this service stops;
        network events after that cannot be recorded (the lead may reorder the stop).
        """
        if getattr(self.audit, "_closing", False):
            self.audit_dropped += 1
            return True
        return False


def _wire_reasons(reasons: Sequence[str]) -> tuple[str, ...]:
    """Reason codes as the signal wire allows them: <= 32 chars of [a-z0-9_.:-]."""
    out = []
    for r in reasons:
        w = "".join(c for c in r.lower() if c.isalnum() or c in "_.:-")[:32]
        if w and w.isascii():
            out.append(w)
    return tuple(out[:4])


def _log_failure(fut: asyncio.Future[int]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("audit record of a signal failed: %r", fut.exception())


class _P2PCollector:
    """Exports the p2p thread's counters (and the policy's) to Prometheus."""

    def __init__(self, bridge: NetworkBridge) -> None:
        self.bridge = bridge

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        b = self.bridge
        counters = dict(b.policy.counters)
        if b.p2p is not None:
            counters.update(b.p2p.metrics())
        if b.consensus is not None:
            for k, v in b.consensus.counters.items():
                counters["consensus_" + k.replace(":", "_").replace("-", "_")] = v
            counters["consensus_verdicts_held"] = len(b.consensus.verdicts())
        counters["network_audit_dropped_at_stop"] = b.audit_dropped
        if b.witness is not None:
            counters.update(b.witness.metrics())
        for name, value in sorted(counters.items()):
            if name.endswith(("_connected_members", "_peers", "_held")):
                yield GaugeMetricFamily(f"fraudnet_{name}", name, value=value)
            else:
                yield CounterMetricFamily(f"fraudnet_{name}", name, value=value)
        if b.evidence is not None:
            yield GaugeMetricFamily(
                "fraudnet_network_evidence_entities",
                "entities with network evidence",
                value=len(b.evidence),
            )
