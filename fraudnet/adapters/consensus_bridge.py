"""The node's consensus adapter: attest from local evidence, track quorums from the network.

Theory of operation::

    NetworkBridge.on_decided (loop)  -- local score >= threshold --> Attester.flag
    labels (false positive)           ----------------------------> Attester.unflag
        own SignedAttestation --> QuorumTracker.add_attestation + publish (attestations topic)

    p2p thread (trio): validators of the attestations / proofs / roster topics
        (origin must be a roster member's node; signature checked against the
        roster tip before anything is decoded; stale or far-future windows IGNORE)
    loop: QuorumTracker.receive_* --> Publish (re-gossip) | VerdictChanged
        VerdictChanged --> verdict table (``verdict_for``), certificate appended
        to ``DIR/state/verdicts.store`` and a ``verdict`` audit record
        adopted roster update --> ``DIR/state/roster.chain`` + ``roster_change`` record

Rules:

1. Attestations come from this node's *local* scores and labels only; what it
   hears from the network never reaches the :class:`Attester`.
2. :meth:`ConsensusBridge.verdict_for` is a dict lookup plus an expiry check:
   safe and cheap on the decision path.
3. Sequence numbers survive restarts: each start reserves a new block of
   2**16 per-entity sequence numbers (``state/consensus/attester-restarts``,
   written before use), so a restarted node never signs a second, different
   statement under an identity it already used (which would be equivocation).
4. Network input never raises out of a callback: errors are counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core import crypto
from fraudnet.core.audit.schema import AuditRecord, event_record
from fraudnet.core.consensus import (
    IGNORE_REASONS,
    TOPIC_ATTESTATIONS,
    TOPIC_PROOFS,
    TOPIC_ROSTER,
    Attester,
    Evidence,
    Publish,
    QuorumTracker,
    RosterChain,
    SignedAttestation,
    Verdict,
    VerdictChanged,
    decode_update,
    encode_update,
    open_attestation,
    open_proof,
)
from fraudnet.core.consensus.attestation import MAX_ATTESTATION_BYTES, MAX_SEQ
from fraudnet.core.consensus.chain import MAX_UPDATE_BYTES
from fraudnet.core.consensus.codec import pack
from fraudnet.core.consensus.equivocation import MAX_PROOF_BYTES as _MAX_PROOF
from fraudnet.core.signals import Outcome
from fraudnet.errors import ConfigError, ConsensusError, FraudnetError

from .consensus_settings import ConsensusSettings, load_chain_file, topics
from .p2p.files import atomic_write
from .p2p.service import P2PService
from .storage.verdicts import append_certificate, read_certificates

__all__ = ["VERDICT_REASONS", "ConsensusBridge", "ConsensusSettings", "load_chain_file", "topics"]

# re-exported: settings, chain loading and topic names live in .consensus_settings

log = logging.getLogger("fraudnet.consensus")

#: verdict level -> the reason code a decision cites
VERDICT_REASONS: Final[Mapping[str, str]] = {
    "advisory": "network_verdict_advisory",
    "step-up": "network_verdict_step_up",
    "block": "network_verdict_block",
    "clear": "network_verdict_clear",
}
SEQ_BLOCK: Final = 1 << 16
_RESTARTS_FILE: Final = "attester-restarts"
#: bounds of the core's decoders, plus the envelope around them
MAX_PROOF_BYTES: Final = _MAX_PROOF + 256
MAX_ROSTER_UPDATE_BYTES: Final = MAX_UPDATE_BYTES


class _RestartSafeAttester(Attester):
    """An :class:`Attester` whose per-entity sequence numbers start at ``seq_base`` (rule 3)."""

    def __init__(self, *args: Any, seq_base: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.seq_base = seq_base

    def _sign(
        self, kind: str, entity: bytes, e: Any, stance: str, now_us: int
    ) -> SignedAttestation:
        e.seq = max(e.seq, self.seq_base)
        return super()._sign(kind, entity, e, stance, now_us)


def _reserve_seq_base(state_dir: Path) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / _RESTARTS_FILE
    try:
        n = int(path.read_text().strip() or "0") if path.exists() else 0
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None
    if (n + 2) * SEQ_BLOCK > MAX_SEQ:
        raise ConfigError(f"{path}: attester sequence space exhausted; rotate the member key")
    atomic_write(path, f"{n + 1}\n".encode())
    return n * SEQ_BLOCK


def _wall_us() -> int:
    return time.time_ns() // 1000


class ConsensusBridge:
    """See module docstring. Loop-thread methods unless named ``_validate_*``."""

    def __init__(
        self,
        settings: ConsensusSettings,
        chain: RosterChain,
        node_key: Ed25519PrivateKey,
        audit_append: Callable[[AuditRecord], None],
        actor: str,
        *,
        clock: Callable[[], int] = _wall_us,
    ) -> None:
        self.settings = settings
        self.chain = chain
        self.actor = actor
        self._append = audit_append
        self._clock = clock
        tip = chain.tip
        own = crypto.public_bytes(node_key)
        mine = [m for m in tip.members if m.public_key == own]
        if not mine:
            raise ConfigError(
                f"{settings.roster_chain}: this node's key is not a member of roster v{tip.version}"
            )
        self.member_id = mine[0].member_id
        self.policy = settings.policy
        self.tracker = QuorumTracker(chain, self.policy, reporter=(self.member_id, node_key))
        self.attester = _RestartSafeAttester(
            self.member_id, node_key, tip.network, tip.key_epoch, self.policy,
            opinion_ttl_us=settings.opinion_ttl_us,
            seq_base=_reserve_seq_base(settings.state_dir),
        )  # fmt: skip
        self.topics = topics(tip.network)
        self.counters: Counter[str] = Counter()
        self._verdicts: dict[tuple[str, bytes], Verdict] = {}
        self._flagged_tx: OrderedDict[str, bytes] = OrderedDict()
        self._bucket = (settings.max_attest_per_s * 10, 0)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verdict-store")
        self.p2p: P2PService | None = None
        self._chain_mtime = self._mtime()
        self._restoring = False
        self.on_verdict: list[Callable[[Verdict], None]] = []

    # -- wiring ----------------------------------------------------------------------
    def attach(self, p2p: P2PService) -> None:
        """Register the consensus topics on ``p2p`` (before it starts)."""
        self.p2p = p2p
        t = self.topics
        p2p.register_topic(t[TOPIC_ATTESTATIONS], self._validate_attestation,
                           self._on_attestation, max_bytes=MAX_ATTESTATION_BYTES + 160,
                           rate_per_s=600.0, burst=6000.0)  # fmt: skip
        p2p.register_topic(t[TOPIC_PROOFS], self._validate_proof, self._on_proof,
                           max_bytes=MAX_PROOF_BYTES, rate_per_s=5.0, burst=50.0)  # fmt: skip
        p2p.register_topic(
            t[TOPIC_ROSTER], self._validate_roster, self._on_roster,
            max_bytes=MAX_ROSTER_UPDATE_BYTES, rate_per_s=1.0, burst=10.0,
        )  # fmt: skip

    def restore(self, now_us: int | None = None) -> int:
        """Reload the statements of still-active certificates from the verdict store.

        After a restart the tracker is empty; without this, verdicts would vanish
        until members renew them in the next window. Every statement is verified
        again against the roster; nothing is re-appended to the store or the audit
        log. Returns the number of statements accepted. A damaged store is logged
        and restoring stops at the damage.
        """
        now = self._clock() if now_us is None else now_us
        path = self.settings.verdict_store
        if not path.exists():
            return 0
        try:
            certs = read_certificates(path)
        except FraudnetError as e:
            log.error("verdict store not restored: %s", e)
            self.counters["restore_failed"] += 1
            return 0
        n = 0
        self._restoring = True
        try:
            for c in certs:
                if self.policy.expires_at(c.window) <= now:
                    continue
                for member, raw, sig in c.statements:
                    try:
                        outs = self.tracker.receive_attestation(pack([member, raw, sig]), now)
                    except ConsensusError:
                        continue
                    n += 1
                    self._apply(outs, now)
        finally:
            self._restoring = False
        self.counters["restored_statements"] += n
        return n

    def peer_allowed(self, peer_id: str) -> bool:
        """Connection gate: only nodes of the current roster's members (thread-safe read)."""
        return self.chain.tip.member_for_peer(peer_id) is not None

    def close(self) -> None:
        self._io.shutdown(wait=True)

    # -- decision path -----------------------------------------------------------------
    def verdict_for(self, kind: str, entity: bytes, now_us: int) -> Verdict | None:
        """The network verdict on ``entity`` in force at ``now_us`` (None: no verdict)."""
        v = self._verdicts.get((kind, entity))
        if v is None or v.level == "none" or v.expires_at_us <= now_us:
            return None
        return v

    def verdicts(self) -> dict[tuple[str, bytes], Verdict]:
        return dict(self._verdicts)

    # -- local evidence ------------------------------------------------------------------
    def note_local_score(
        self, kind: str, entity: bytes, key_epoch: int, score: float, now_us: int,
        *, tx_id: str = "", reasons: tuple[str, ...] = (),
    ) -> bool:  # fmt: skip
        """A local decision: attest risk when ``score`` crosses the threshold. True if signed."""
        if score < self.settings.attest_threshold or key_epoch != self.attester.key_epoch:
            return False
        if not self._take_token(now_us):
            self.counters["attest_rate_limited"] += 1
            return False
        band = max(1, min(10, int(score * 10)))
        ev = Evidence(n_tx=1, n_flagged=1, reasons=reasons[:8])
        sas = self.attester.flag(kind, entity, now_us, score_band=band, evidence=ev)
        if tx_id:
            self._flagged_tx[tx_id] = entity
            while len(self._flagged_tx) > 100_000:
                self._flagged_tx.popitem(last=False)
        self._publish_own(sas, now_us)
        return bool(sas)

    def note_false_positive(self, tx_id: str, now_us: int) -> bool:
        """A false-positive label on a transaction this node attested about: sign clear."""
        entity = self._flagged_tx.pop(tx_id, None)
        if entity is None:
            return False
        self._publish_own(self.attester.unflag("card", entity, now_us), now_us)
        return True

    def tick(self, now_us: int | None = None) -> None:
        """Renew live opinions, apply expiries, pick up a newer chain file (about 1/s)."""
        now = self._clock() if now_us is None else now_us
        self._publish_own(self.attester.tick(now), now)
        self._apply(self.tracker.tick(now), now)
        self.check_chain_file()

    def _mtime(self) -> int:
        try:
            return self.settings.roster_chain.stat().st_mtime_ns
        except OSError:
            return 0

    def check_chain_file(self) -> int:
        """Adopt and gossip versions that ``fraudnet roster apply`` added to the chain file.

        Returns how many versions were adopted. A file that does not verify
        from the anchor is logged and otherwise ignored (the node keeps its chain).
        """
        mtime = self._mtime()
        if mtime == self._chain_mtime:
            return 0
        self._chain_mtime = mtime
        try:
            newer = RosterChain.decode(
                self.settings.roster_chain.read_bytes(), self.settings.anchor
            )
        except (OSError, ConsensusError) as e:
            self.counters["chain_file_rejected"] += 1
            log.error("%s: roster chain not adopted: %s", self.settings.roster_chain, e)
            return 0
        adopted = 0
        for raw, votes in newer.updates()[len(self.chain.updates()) :]:
            before = self.chain.tip.version
            self._on_roster("file", encode_update(raw, votes))
            if self.chain.tip.version == before:
                break
            adopted += 1
        return adopted

    def _take_token(self, now_us: int) -> bool:
        rate = self.settings.max_attest_per_s
        tokens, last = self._bucket
        tokens = min(rate * 10, tokens + (now_us - last) * rate / 1e6)
        if tokens < 1.0:
            self._bucket = (tokens, now_us)
            return False
        self._bucket = (tokens - 1.0, now_us)
        return True

    def _publish_own(self, sas: list[SignedAttestation], now_us: int) -> None:
        for sa in sas:
            self.counters["attestations_signed"] += 1
            if self.p2p is not None:
                self.p2p.publish_nowait(self.topics[TOPIC_ATTESTATIONS], sa.to_wire())
            try:
                self._apply(self.tracker.add_attestation(sa, now_us), now_us)
            except ConsensusError as e:
                self.counters[f"own_rejected:{e.reason}"] += 1

    # -- trio-side validators (cheap, never raise) ------------------------------------------
    def _validate_attestation(self, origin: str, data: bytes) -> Outcome:
        tip = self.chain.tip
        try:
            sa = open_attestation(data, tip)
        except ConsensusError as e:
            return (
                Outcome.IGNORE if e.reason in IGNORE_REASONS | {"wrong-epoch"} else Outcome.REJECT
            )
        w, now = sa.body.window, self._clock()
        if self.policy.expires_at(w) <= now or w > self.policy.window_of(now) + 1:
            return Outcome.IGNORE
        return Outcome.ACCEPT

    def _validate_proof(self, origin: str, data: bytes) -> Outcome:
        try:
            open_proof(data, self.chain)
        except ConsensusError:
            return Outcome.REJECT
        return Outcome.ACCEPT

    def _validate_roster(self, origin: str, data: bytes) -> Outcome:
        try:
            raw, _votes = decode_update(data)
            base = self.chain.base_of(raw)
        except ConsensusError:
            return Outcome.REJECT
        return Outcome.IGNORE if base is None else Outcome.ACCEPT

    # -- loop-side delivery --------------------------------------------------------------------
    def _on_attestation(self, origin: str, data: bytes) -> None:
        self._receive("attestation", self.tracker.receive_attestation, data)

    def _on_proof(self, origin: str, data: bytes) -> None:
        self._receive("proof", self.tracker.receive_proof, data)

    def _on_roster(self, origin: str, data: bytes) -> None:
        before = self.chain.tip
        self._receive("roster", self.tracker.receive_roster_update, data)
        tip = self.chain.tip
        if tip.hash == before.hash:
            return
        if tip.key_epoch != self.attester.key_epoch:
            self.attester.rekey(tip.key_epoch)
        if self.p2p is not None and hasattr(self.p2p, "set_members"):
            self.p2p.set_members({m.member_id: m.public_key for m in tip.members})
        try:
            atomic_write(self.settings.state_dir.parent / "roster.chain", self.chain.encode())
        except OSError as e:
            log.error("cannot persist the adopted roster chain: %s", e)
        self._append(event_record(
            "roster_change", at_us=self._clock(), actor=self.actor, action="adopt",
            origin="network", resource=f"roster:{tip.network}",
            change=f"v{before.version}->v{tip.version}",
            details={"roster_hash": tip.hash.hex(), "prev_hash": before.hash.hex(),
                     "members": [m.member_id for m in tip.members], "f": tip.f,
                     "key_epoch": tip.key_epoch},
        ))  # fmt: skip

    def _receive(self, what: str, fn: Callable[[bytes, int], list[Any]], data: bytes) -> None:
        now = self._clock()
        try:
            outs = fn(data, now)
        except ConsensusError as e:
            self.counters[f"{what}_ignored:{e.reason}"] += 1
            return
        except FraudnetError as e:  # defensive: hostile bytes must never crash the loop
            self.counters[f"{what}_error"] += 1
            log.warning("consensus %s rejected: %s", what, e)
            return
        self.counters[f"{what}_accepted"] += 1
        self._apply(outs, now)

    def _apply(self, outs: list[Any], now_us: int) -> None:
        for o in outs:
            if isinstance(o, Publish):
                if self.p2p is not None:
                    self.p2p.publish_nowait(self.topics.get(o.topic, o.topic), o.data)
            elif isinstance(o, VerdictChanged):
                self._verdict_changed(o, now_us)

    def _verdict_changed(self, change: VerdictChanged, now_us: int) -> None:
        v = change.verdict
        key = (v.entity_kind, v.entity)
        if v.level == "none":
            self._verdicts.pop(key, None)
        else:
            self._verdicts[key] = v
        if self._restoring:  # already in the store and the audit log
            return
        self.counters[f"verdicts_{v.level}"] += 1
        cert = v.certificate()
        cert_hash = hashlib.sha256(cert.encode()).hexdigest() if cert is not None else ""
        # the deciding statement is the latest one of the support; same host clock in tests
        decided = max((a.body.issued_at_us for a in v.support), default=now_us)
        if cert is not None:
            fut = asyncio.get_running_loop().run_in_executor(
                self._io, append_certificate, self.settings.verdict_store, cert
            )
            fut.add_done_callback(_log_store_failure)
        for cb in self.on_verdict:
            cb(v)
        self._append(event_record(
            "verdict", at_us=now_us, actor=self.actor, action=v.level, outcome=v.level,
            origin="network", resource=f"{v.entity_kind}:{v.entity.hex()}",
            verdict_id=cert_hash or f"none:{v.entity.hex()}",
            details={"entity": v.entity, "previous": change.old, "window": v.window,
                     "members": list(v.members), "roster_hash": v.roster_hash.hex(),
                     "certificate_sha256": cert_hash, "expires_at_us": v.expires_at_us,
                     "deciding_issued_at_us": decided, "latency_us": now_us - decided},
        ))  # fmt: skip


def _log_store_failure(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("cannot append to the verdict store: %r", fut.exception())
