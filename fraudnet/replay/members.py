"""Simulated members running the real sans-IO cores (actors for :class:`.simnet.SimNet`).

:class:`CoreMember` is a whole node: :class:`~fraudnet.core.pipeline.NodeCore`
with its scorer, the :class:`~fraudnet.core.signals.SignalPolicy`, a
:class:`~fraudnet.core.signals.SignalBatcher` sealing real signed envelopes,
a :class:`~fraudnet.core.signals.Validator` and
:class:`~fraudnet.core.signals.evidence.NetworkEvidence` on receipt, and the
consensus :class:`~.sim.HonestNode` (``Attester`` + ``QuorumTracker``) it
extends. Its decision step applies the card's live verdict with
:func:`fraudnet.core.consensus.effect.apply_verdict`.

Per transaction (network mode)::

    admit_one -> de-dup -> decide_many -> [local score >= attest threshold] Attester.flag
              -> SignalPolicy.offer -> SignalBatcher -> seal -> Broadcast(signals)
              -> apply_verdict(level of the card) -> recorded decision

A node is a single server: a transaction waits for the previous one
(``busy_until``) and takes ``service_us`` (times a slow fault's factor), so
decision latencies are *virtual*. Clock skew shifts every time the member
stamps or checks (``local = now + skew``), never the simulator's clock.

Crash and restart (:meth:`on_crash` / :meth:`on_restart`): the tracker,
verdict levels, network evidence, pending signals and the scorer's state
since its last checkpoint are lost; the de-dup store (decided ids), the
attester's sequence numbers and the validator's replay window are durable
(a restarted attester that reused sequence numbers would equivocate). The
stream re-delivers its uncommitted tail (``redeliver`` records), which the
de-dup store must absorb: every accepted transaction keeps exactly one
decision.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core.consensus import (
    TOPIC_ATTESTATIONS,
    Attestation,
    Publish,
    QuorumTracker,
    RosterChain,
    VerdictChanged,
    sign_attestation,
)
from fraudnet.core.consensus.effect import apply_verdict
from fraudnet.core.features.network import EvidenceFeatures
from fraudnet.core.pipeline import DeadLetter, NodeCore
from fraudnet.core.scoring.base import Scorer
from fraudnet.core.signals import (
    Outcome,
    Signal,
    SignalBatcher,
    SignalPayload,
    SignalPolicy,
    Validator,
    seal,
)
from fraudnet.core.signals.evidence import NetworkEvidence

from .sim import ByzantineNode, HonestNode, SimConfig
from .simnet import Action, Broadcast, Timer
from .sources import Replayed

__all__ = ["TOPIC_SIGNALS", "ByzantineMember", "CoreMember", "Recorder", "SybilNode"]

TOPIC_SIGNALS = "fraudnet/signals/1"
S = 1_000_000


@dataclass(slots=True)
class Recorder:
    """Everything a run observed (ground truth joins happen in the report)."""

    #: (member, tx_id, card, label, local_score, score, outcome, t_us, decided_us, level, ev)
    decisions: list[tuple[str, str, int, int, float, float, str, int, int, str, int]] = field(
        default_factory=list
    )
    admitted: dict[str, list[str]] = field(default_factory=dict)
    dead_letters: int = 0
    duplicates: int = 0
    entity_card: dict[bytes, int] = field(default_factory=dict)
    flags: dict[int, dict[str, int]] = field(default_factory=dict)
    blocks: dict[int, dict[str, int]] = field(default_factory=dict)
    verdicts_applied: int = 0
    sent_at: dict[bytes, int] = field(default_factory=dict)
    signal_prop_us: list[int] = field(default_factory=list)
    attestation_prop_us: list[int] = field(default_factory=list)
    signals_sent: int = 0
    envelopes_sent: int = 0
    restarts: int = 0

    def note_sent(self, data: bytes, now_us: int) -> None:
        if len(self.sent_at) < 2_000_000:
            self.sent_at.setdefault(data, now_us)


@dataclass(frozen=True, slots=True)
class MemberEnv:
    """What every simulated member of one run shares."""

    network_id: str
    pubkeys: dict[str, bytes]
    #: member name -> its scorer (each member may have its own model)
    make_scorer: Callable[[str], Scorer]
    make_core: Callable[[str, Scorer], NodeCore]
    make_validator: Callable[[], Validator]
    make_policy: Callable[[], SignalPolicy]
    attest_threshold: float
    flush_us: int
    service_us: int
    redeliver: int
    checkpoint_us: int
    recorder: Recorder
    #: also offer the transaction's terminal, with the scorer's local terminal score
    #: (a scorer exposing ``terminal_scores``; else the card's local score)
    signal_terminals: bool = False


class CoreMember(HonestNode):
    """A member's node on real cores (see module docstring)."""

    def __init__(
        self, mid: str, key: Ed25519PrivateKey, chain: RosterChain, cfg: SimConfig,
        env: MemberEnv, *, network: bool, skew_us: int = 0,
        slow: tuple[tuple[int, int, float], ...] = (), checkpoints: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(mid, key, chain, cfg)
        self._key, self._chain_bytes = key, (chain.encode(), chain.anchor)
        self.env, self.network, self.skew, self.slow = env, network, skew_us, slow
        self.rec = env.recorder
        self.scorer = env.make_scorer(mid)
        self.core = env.make_core(mid, self.scorer)
        self.policy = env.make_policy()
        self.batcher = SignalBatcher(env.network_id, mid, flush_interval_us=env.flush_us)
        self.validator = env.make_validator()
        self.evidence = NetworkEvidence(mid)
        #: a model with network columns reads them from this member's evidence (the node's
        #: code path); its local score (network columns neutral) is what may be signalled
        self.net_features = EvidenceFeatures(lambda: self.evidence)
        if network:
            self.core.network_features = self.net_features
        self.levels: dict[bytes, tuple[str, int, int]] = {}
        self.decided: set[str] = set()
        self.busy_until = 0
        self._flush_armed = False
        self._tail: deque[Replayed] = deque(maxlen=max(1, env.redeliver))
        self._checkpoints = checkpoints
        self._snap: bytes = self.scorer.snapshot()

    def warm_up(self, fold: Callable[[Scorer], None]) -> None:
        """Bring the scorer's state up to the replay's start (``fold`` feeds it the
        member's history); the crash checkpoint starts from there."""
        fold(self.scorer)
        self._snap = self.scorer.snapshot()

    # -- clock skew: the member's view of time -------------------------------
    def _unskew(self, acts: list[Action]) -> list[Action]:
        if not self.skew:
            return acts
        return [Timer(a.at_us - self.skew, a.token) if isinstance(a, Timer) else a for a in acts]

    def start(self, now_us: int) -> list[Action]:
        acts: list[Action] = []
        if self.network:
            acts += self._unskew(super().start(now_us + self.skew))
        if self._checkpoints:
            acts.append(Timer(now_us + self.env.checkpoint_us, "checkpoint"))
        return acts

    # -- transactions --------------------------------------------------------
    def ingest(self, rec: Replayed, now_us: int) -> list[Action]:
        """Scheduled by the runner at the record's arrival time."""
        self._tail.append(rec)
        return self._handle(rec, now_us)

    def _factor(self, now_us: int) -> float:
        return max([f for a, b, f in self.slow if a <= now_us < b], default=1.0)

    def _handle(self, rec: Replayed, now_us: int) -> list[Action]:
        local = now_us + self.skew
        if rec.tx_id in self.decided:
            self.core.note_duplicates(1)
            self.rec.duplicates += 1
            return []
        r = self.core.admit_one(rec.raw, source=self.mid, location=rec.tx_id, now_us=local)
        if isinstance(r, DeadLetter):
            self.rec.dead_letters += 1
            return []
        self.rec.admitted.setdefault(rec.tx_id, []).append(self.mid)
        start = max(now_us, self.busy_until)
        done = start + int(self.env.service_us * self._factor(now_us))
        self.busy_until = done
        (d,) = self.core.decide_many([r], [rec.t_us + self.skew], local)
        self.decided.add(rec.tx_id)
        acts: list[Action] = []
        level, ev, local_score = "none", 0, float(d.score)
        self.policy.note_transactions(1)  # before offering, as the node does
        if self.network and r.net_refs:
            _, ps, term_ps = r.net_refs[0]
            self.rec.entity_card[ps] = rec.card
            own = self.net_features.pop_local_score(rec.tx_id)
            card_score = d.score if own is None else own
            acts += self._share(ps, card_score, d.reasons, rec.card, now_us)
            if self.env.signal_terminals:
                ts = getattr(self.scorer, "terminal_scores", None)
                t_score = float(ts[-1]) if ts is not None and len(ts) else card_score
                acts += self._offer("terminal", term_ps, t_score, d.reasons, now_us)
            lv = self.levels.get(ps)
            if lv is not None:
                d, eff = apply_verdict(d, lv[0], window=lv[1], expires_at_us=lv[2], now_us=local)
                if eff.changed:
                    level = lv[0]
                    self.rec.verdicts_applied += 1
            ev = self.evidence.query("card", ps, local).members
        self.rec.decisions.append((
            self.mid, rec.tx_id, rec.card, rec.label, local_score, float(d.score), d.outcome,
            rec.t_us, done, level, ev,
        ))  # fmt: skip
        return acts

    def _share(
        self, ps: bytes, score: float, reasons: tuple[str, ...], card: int, now_us: int
    ) -> list[Action]:
        local = now_us + self.skew
        acts: list[Action] = []
        if score >= self.env.attest_threshold:
            self.rec.flags.setdefault(card, {}).setdefault(self.mid, now_us)
            acts += self.flag(ps, local)
        return acts + self._offer("card", ps, score, reasons, now_us)

    def _offer(
        self, kind: str, ps: bytes, score: float, reasons: tuple[str, ...], now_us: int
    ) -> list[Action]:
        local = now_us + self.skew
        acts: list[Action] = []
        sig = self.policy.offer(
            kind, ps, score, local, reasons=tuple(r.lower() for r in reasons), n_tx=1, n_alerts=1
        )
        if sig is not None and self.batcher.offer(sig) and not self._flush_armed:
            due = self.batcher.due_at() or 0
            self._flush_armed = True
            acts.append(Timer(max(now_us, due - self.skew), "flush"))
        return acts

    # -- consensus outputs: remember live levels -----------------------------
    def _outputs(self, outs: list[Publish | VerdictChanged], now_us: int) -> list[Action]:
        acts = super()._outputs(outs, now_us)
        for o in outs:
            if isinstance(o, VerdictChanged):
                v = o.verdict
                self.levels[v.entity] = (v.level, v.window, v.expires_at_us)
                card = self.rec.entity_card.get(v.entity)
                if v.level == "block" and card is not None:
                    self.rec.blocks.setdefault(card, {}).setdefault(self.mid, now_us - self.skew)
        return acts

    def local(self, atts: Any, now_us: int) -> list[Action]:
        acts = super().local(atts, now_us)
        for a in acts:
            if isinstance(a, Broadcast):
                self.rec.note_sent(a.data, now_us - self.skew)
        return acts

    # -- network -------------------------------------------------------------
    def on_message(self, src: str, topic: str, data: bytes, now_us: int) -> list[Action]:
        if not self.network:
            return []
        local = now_us + self.skew
        if topic == TOPIC_SIGNALS:
            v = self.validator.validate(data, local)
            if v.outcome is not Outcome.ACCEPT or v.payload is None:
                return []
            for s in v.payload.signals:
                self.evidence.add(v.payload.signer, s, s.pseudonym)
            sent = self.rec.sent_at.get(data)
            if sent is not None and v.payload.signer != self.mid:
                self.rec.signal_prop_us.append(now_us - sent)
            return [Broadcast(topic, data)]
        acts = self._unskew(super().on_message(src, topic, data, local))
        if topic == TOPIC_ATTESTATIONS and acts:
            sent = self.rec.sent_at.get(data)
            if sent is not None:
                self.rec.attestation_prop_us.append(now_us - sent)
        return acts

    def on_timer(self, token: Any, now_us: int) -> list[Action]:
        if token == "checkpoint":
            self._snap = self.scorer.snapshot()
            return [Timer(now_us + self.env.checkpoint_us, "checkpoint")]
        if token == "flush":
            return self._flush(now_us)
        if not self.network:
            return []
        return self._unskew(super().on_timer(token, now_us + self.skew))

    def _flush(self, now_us: int) -> list[Action]:
        local = now_us + self.skew
        self._flush_armed = False
        acts: list[Action] = []
        payload = self.batcher.poll(local, 0)
        if payload is not None:
            data = seal(self._key, payload)
            self.rec.note_sent(data, now_us)
            self.rec.envelopes_sent += 1
            self.rec.signals_sent += len(payload.signals)
            acts.append(Broadcast(TOPIC_SIGNALS, data))
        due = self.batcher.due_at()
        if due is not None:
            self._flush_armed = True
            acts.append(Timer(max(now_us + 1, due - self.skew), "flush"))
        return acts

    # -- crash and restart ---------------------------------------------------
    def on_crash(self, now_us: int) -> list[Action]:
        chain = RosterChain.decode(*self._chain_bytes)
        self.tracker = QuorumTracker(
            chain, self.cfg.policy, self.cfg.limits, reporter=(self.mid, self._key)
        )
        self.levels.clear()
        self.evidence = NetworkEvidence(self.mid)
        self.batcher = SignalBatcher(
            self.env.network_id, self.mid, next_seq=self.batcher.next_seq + 1024,
            flush_interval_us=self.env.flush_us,
        )  # fmt: skip
        self._flush_armed = False
        self.scorer.restore(self._snap)
        self.busy_until = now_us
        return []

    def on_restart(self, now_us: int) -> list[Action]:
        self.rec.restarts += 1
        acts = self.start(now_us)
        for rec in list(self._tail):  # the stream's uncommitted tail, delivered again
            acts += self._handle(rec, now_us)
        return acts


class ByzantineMember:
    """A faulty member: decides its own transactions, misbehaves on the network."""

    def __init__(
        self, core: CoreMember, byz: ByzantineNode, key: Ed25519PrivateKey, network_id: str,
        behaviours: frozenset[str], genuine: list[bytes], honest: list[str],
        rng: random.Random, horizon_us: int, recorder: Recorder,
    ) -> None:  # fmt: skip
        self.core, self.byz, self.key, self.network_id = core, byz, key, network_id
        self.behaviours, self.genuine, self.honest = behaviours, genuine, honest
        self.rng, self.horizon_us, self.rec = rng, horizon_us, recorder
        self._seq = 1 << 20

    def ingest(self, rec: Replayed, now_us: int) -> list[Action]:
        return self.core.ingest(rec, now_us)

    def start(self, now_us: int) -> list[Action]:
        acts = self.core.start(now_us) + self.byz.start(now_us)
        s0 = max(now_us, self.byz.start_us)
        for b in ("false", "forge", "flood"):
            if b in self.behaviours:
                acts += [
                    Timer(self.rng.randrange(s0, max(s0 + 1, self.horizon_us)), ("sig", b))
                    for _ in range(5)
                ]
        return acts

    def on_message(self, src: str, topic: str, data: bytes, now_us: int) -> list[Action]:
        return self.byz.on_message(src, topic, data, now_us)

    def _payload(self, entities: list[bytes], now_us: int, signer: str) -> SignalPayload:
        self._seq += 1
        sigs = tuple(
            Signal("card", e, 1000, ("byzantine",), now_us, now_us + 3600 * S) for e in entities
        )
        return SignalPayload(self.network_id, signer, 0, self._seq, now_us, sigs)

    def on_timer(self, token: Any, now_us: int) -> list[Action]:
        if isinstance(token, tuple) and token and token[0] == "sig":
            kind = token[1]
            targets = self.rng.sample(self.genuine, k=min(8, len(self.genuine)))
            if not targets:
                return []
            if kind == "false":  # valid, signed, and false
                return [
                    Broadcast(
                        TOPIC_SIGNALS, seal(self.key, self._payload(targets, now_us, self.byz.mid))
                    )
                ]
            if kind == "forge":  # an honest member's name, our key: bad signature
                victim = self.rng.choice(self.honest)
                return [
                    Broadcast(TOPIC_SIGNALS, seal(self.key, self._payload(targets, now_us, victim)))
                ]
            return [  # flood: far beyond any rate quota
                Broadcast(
                    TOPIC_SIGNALS, seal(self.key, self._payload(targets, now_us, self.byz.mid))
                )
                for _ in range(100)
            ]
        if isinstance(token, tuple) and len(token) == 2 and token[0] in (
            "frame", "flood", "forge", "garbage", "replay",
        ):  # fmt: skip
            return self.byz.on_timer(token, now_us)
        return self.core.on_timer(token, now_us)


class SybilNode:
    """A peer that is not on the roster: signs with its own key, claims names, floods."""

    def __init__(
        self, name: str, key: Ed25519PrivateKey, network_id: str, key_epoch: int, f_policy: Any,
        genuine: list[bytes], honest: list[str], start_us: int, end_us: int, rate_per_s: float,
        rng: random.Random,
    ) -> None:  # fmt: skip
        self.name, self.key, self.network_id, self.epoch = name, key, network_id, key_epoch
        self.policy, self.genuine, self.honest = f_policy, genuine, honest
        self.start_us, self.end_us, self.rng = start_us, end_us, rng
        self.period_us = max(1000, int(S / rate_per_s))
        self._seq = 0
        self.sent = 0

    def start(self, now_us: int) -> list[Action]:
        return [Timer(max(now_us, self.start_us), "send")] if self.genuine else []

    def on_message(self, src: str, topic: str, data: bytes, now_us: int) -> list[Action]:
        return []

    def on_timer(self, token: Any, now_us: int) -> list[Action]:
        if now_us >= self.end_us or self.sent >= 20_000:
            return []
        self._seq += 1
        self.sent += 1
        e = self.rng.choice(self.genuine)
        pick = self._seq % 4
        acts: list[Action] = []
        if pick in (0, 1):
            signer = self.name if pick == 0 else self.rng.choice(self.honest)
            sig = Signal("card", e, 1000, ("sybil",), now_us, now_us + 3600 * S)
            p = SignalPayload(self.network_id, signer, 0, self._seq, now_us, (sig,))
            acts.append(Broadcast(TOPIC_SIGNALS, seal(self.key, p)))
        else:
            member = self.name if pick == 2 else self.rng.choice(self.honest)
            att = Attestation(
                self.network_id, member, "card", e, self.epoch, self.policy.window_of(now_us),
                self._seq, "risk", 10, issued_at_us=now_us,
            )  # fmt: skip
            acts.append(Broadcast(TOPIC_ATTESTATIONS, sign_attestation(att, self.key).to_wire()))
        acts.append(Timer(now_us + self.period_us, "send"))
        return acts
