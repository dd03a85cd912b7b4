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

The libp2p host runs in its own thread (see :mod:`fraudnet.adapters.p2p.service`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mode import Service
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from fraudnet.core.audit.schema import AuditRecord, event_record
from fraudnet.core.records import Decision, TxRecord
from fraudnet.core.signals import NetworkKeyring, SignalPayload
from fraudnet.core.signals.evidence import NetworkEvidence
from fraudnet.core.signals.keyring import PseudonymLinks
from fraudnet.core.signals.policy import SignalPolicy
from fraudnet.core.transaction import Transaction

from .p2p.service import P2PService
from .p2p.settings import P2PSettings
from .runtime import NodeRuntime, now_us
from .storage.audit_async import AsyncAuditLog

__all__ = ["NetworkBridge"]

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
        self.address = ""
        self.signals_offered = 0
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
        self.p2p = P2PService(
            self.p2p_settings, self.node_key, self.keyring, self._on_signals, loop=loop
        )
        self.evidence = NetworkEvidence(self.p2p.member_id)
        self.address = await loop.run_in_executor(None, self.p2p.start)
        log.info(
            "p2p listening on %s",
            self.address,
            extra={"fields": {"event": "p2p_start", "address": self.address}},
        )

    async def on_stop(self) -> None:
        if self.p2p is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.p2p.stop)

    # -- outbound -------------------------------------------------------------------
    def on_decided(self, decisions: Sequence[Decision], records: Sequence[TxRecord]) -> None:
        if self.p2p is None:
            return
        now = now_us()
        out = []
        self.policy.note_transactions(len(decisions))
        for d, r in zip(decisions, records, strict=True):
            if not r.net_refs:
                continue
            _epoch, card_ps, _term_ps = r.net_refs[0]
            sig = self.policy.offer(
                "card",
                card_ps,
                d.score,
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
        fut = asyncio.ensure_future(self.audit.append_durable([rec]))
        fut.add_done_callback(_log_failure)


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
        for name, value in sorted(counters.items()):
            if name.endswith(("_connected_members", "_peers")):
                yield GaugeMetricFamily(f"fraudnet_{name}", name, value=value)
            else:
                yield CounterMetricFamily(f"fraudnet_{name}", name, value=value)
        if b.evidence is not None:
            yield GaugeMetricFamily(
                "fraudnet_network_evidence_entities",
                "entities with network evidence",
                value=len(b.evidence),
            )
