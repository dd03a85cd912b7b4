"""Deterministic consensus simulation: many members' cores on a virtual clock.

One seed fixes everything: member keys, the ground truth of which cards are
fraudulent, which honest members' local evidence flags which card and when,
the Byzantine members' behaviour, and every link draw of :mod:`.simnet`.

Honest members (:class:`HonestNode`) run a real :class:`QuorumTracker` and
:class:`Attester`: they attest only from their local evidence, flood-forward
every newly accepted message (eager-push gossip) and tick the clock. The ``f``
Byzantine members (:class:`ByzantineNode`) collude with full knowledge of the
ground truth and, per seed, forge, replay, flood, equivocate, attest against
innocent cards and pile onto honest false positives -- or stay silent.

Local evidence comes from a seeded generator (:func:`generate_cards`); the
harness is actor-based so whole node cores (features + model + signals) can
replace it later, and scenario files can inject events with
:meth:`SimNet.schedule`.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core import crypto
from fraudnet.core.consensus import (
    TOPIC_ATTESTATIONS,
    TOPIC_PROOFS,
    Attestation,
    Attester,
    Limits,
    Member,
    Publish,
    QuorumTracker,
    Roster,
    RosterChain,
    SignedAttestation,
    VerdictChanged,
    VerdictPolicy,
    open_attestation,
    sign_attestation,
    sign_genesis,
    verify_certificate,
)
from fraudnet.core.consensus.roster import ZERO_HASH
from fraudnet.errors import ConsensusError

from .simnet import Action, Broadcast, LinkModel, Partition, Send, SimNet, Timer

__all__ = [
    "BEHAVIOURS",
    "CardTruth",
    "HonestNode",
    "SeedResult",
    "SimConfig",
    "SimMembers",
    "build_network",
    "generate_cards",
    "run_seed",
    "summarise",
]

S = 1_000_000
_POLICY = VerdictPolicy(window_us=300 * S, grace_us=30 * S)
_LINK = LinkModel(loss=0.02, duplicate=0.02, tail=0.01)
_LIMITS = Limits(rate_per_s=5.0, burst=60.0)
BEHAVIOURS = ("forge", "replay", "flood", "equivocate", "frame", "pile-on", "garbage")


@dataclass(frozen=True, slots=True)
class SimConfig:
    f: int = 1
    n: int | None = None  # default 3f+1
    fraud_cards: int = 8
    genuine_cards: int = 16
    horizon_us: int = 900 * S
    policy: VerdictPolicy = _POLICY
    p_detect: float = 0.85
    detect_spread_us: int = 30 * S
    fpr: float = 0.15
    p_label: float = 0.5
    link: LinkModel = _LINK
    partitions: tuple[Partition, ...] = ()
    byzantine: str = "mixed"  # "mixed" | "silent" | "honest" (no faulty members)
    flood_n: int = 120
    tick_us: int = 1 * S
    republish_us: int | None = None
    limits: Limits = _LIMITS
    liveness_bound_us: int = 2 * S

    @property
    def members(self) -> int:
        return self.n if self.n is not None else 3 * self.f + 1


@dataclass(frozen=True, slots=True)
class SimMembers:
    chain: RosterChain
    keys: dict[str, Ed25519PrivateKey]

    def fresh_chain(self) -> RosterChain:
        """An independent copy (each node's tracker owns and may extend its chain)."""
        return RosterChain.decode(self.chain.encode(), self.chain.anchor)


def build_network(n: int, f: int, seed: int, network: str = "sim") -> SimMembers:
    """Members ``m00..`` with keys derived from ``seed``, and their signed genesis."""
    keys = {
        f"m{i:02d}": Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(f"fraudnet-sim/{seed}/{i}".encode()).digest()
        )
        for i in range(n)
    }
    members = tuple(
        Member(mid, f"Org {mid}", crypto.public_bytes(k), (f"peer-{mid}",))
        for mid, k in keys.items()
    )
    roster = Roster(network, 0, ZERO_HASH, f, 0, members)
    sigs = {mid: sign_genesis(roster, k) for mid, k in keys.items()}
    return SimMembers(RosterChain(roster.encode(), sigs, roster.hash), keys)


@dataclass(frozen=True, slots=True)
class CardTruth:
    entity: bytes
    fraud: bool
    flags: tuple[tuple[str, int], ...]  # (honest member, time) of local flags
    unflags: tuple[tuple[str, int], ...]  # (honest member, time) of false-positive labels


def generate_cards(rng: random.Random, cfg: SimConfig, honest: list[str]) -> list[CardTruth]:
    """Ground truth and each honest member's local evidence (flags and labels)."""
    out: list[CardTruth] = []
    last = cfg.horizon_us - cfg.detect_spread_us * 4
    for i in range(cfg.fraud_cards + cfg.genuine_cards):
        entity = rng.randbytes(32)
        fraud = i < cfg.fraud_cards
        flags, unflags = [], []
        t0 = rng.randrange(0, last)
        for m in honest:
            if fraud and rng.random() < cfg.p_detect:
                flags.append((m, t0 + int(rng.expovariate(1.0) * cfg.detect_spread_us)))
            elif not fraud and rng.random() < cfg.fpr:
                t = rng.randrange(0, last)
                flags.append((m, t))
                if rng.random() < cfg.p_label:
                    unflags.append((m, t + rng.randrange(10 * S, 300 * S)))
        out.append(CardTruth(entity, fraud, tuple(flags), tuple(unflags)))
    return out


class HonestNode:
    """An honest member's node: tracker + attester, flood-forwarding gossip."""

    def __init__(
        self, mid: str, key: Ed25519PrivateKey, chain: RosterChain, cfg: SimConfig
    ) -> None:
        self.mid = mid
        self.cfg = cfg
        tip = chain.tip
        self.tracker = QuorumTracker(chain, cfg.policy, cfg.limits, reporter=(mid, key))
        self.attester = Attester(mid, key, tip.network, tip.key_epoch, cfg.policy)
        self.first_block: dict[bytes, int] = {}
        self.certified: set[tuple[bytes, int, str]] = set()
        self.last_block: dict[bytes, Any] = {}
        self._own: dict[tuple[str, bytes, int], SignedAttestation] = {}

    def start(self, now_us: int) -> list[Action]:
        acts: list[Action] = [Timer(now_us + self.cfg.tick_us, "tick")]
        if self.cfg.republish_us:
            acts.append(Timer(now_us + self.cfg.republish_us, "republish"))
        return acts

    def _outputs(self, outs: list[Publish | VerdictChanged], now_us: int) -> list[Action]:
        acts: list[Action] = []
        for o in outs:
            if isinstance(o, Publish):
                acts.append(Broadcast(o.topic, o.data))
                continue
            v = o.verdict
            if v.level in ("block", "clear"):
                self.certified.add((v.entity, v.window, v.level))
            if v.level == "block":
                self.first_block.setdefault(v.entity, now_us)
                self.last_block[v.entity] = v
        return acts

    def local(self, atts: list[SignedAttestation], now_us: int) -> list[Action]:
        acts: list[Action] = []
        for sa in atts:
            b = sa.body
            self._own[(b.entity_kind, b.entity, b.window)] = sa
            acts += self._outputs(self.tracker.add_attestation(sa, now_us), now_us)
            acts.append(Broadcast(TOPIC_ATTESTATIONS, sa.to_wire()))
        return acts

    def flag(self, entity: bytes, now_us: int) -> list[Action]:
        return self.local(self.attester.flag("card", entity, now_us), now_us)

    def unflag(self, entity: bytes, now_us: int) -> list[Action]:
        return self.local(self.attester.unflag("card", entity, now_us), now_us)

    def on_message(self, src: str, topic: str, data: bytes, now_us: int) -> list[Action]:
        try:
            if topic == TOPIC_ATTESTATIONS:
                outs = self.tracker.receive_attestation(data, now_us)
            elif topic == TOPIC_PROOFS:
                outs = self.tracker.receive_proof(data, now_us)
            else:
                return []
        except ConsensusError:
            return []
        return [Broadcast(topic, data), *self._outputs(outs, now_us)]

    def on_timer(self, token: Any, now_us: int) -> list[Action]:
        if token == "republish":
            p = self.cfg.policy
            live = [sa for sa in self._own.values() if p.active(sa.body.window, now_us)]
            self._own = {k: v for k, v in self._own.items() if p.expires_at(k[2]) > now_us}
            assert self.cfg.republish_us is not None
            acts: list[Action] = [Timer(now_us + self.cfg.republish_us, "republish")]
            return acts + [Broadcast(TOPIC_ATTESTATIONS, sa.to_wire()) for sa in live]
        acts = self.local(self.attester.tick(now_us), now_us)
        acts += self._outputs(self.tracker.tick(now_us), now_us)
        acts.append(Timer(now_us + self.cfg.tick_us, "tick"))
        return acts


class ByzantineNode:
    """A faulty member colluding with the others, with full knowledge of the ground truth."""

    def __init__(
        self, mid: str, key: Ed25519PrivateKey, chain: RosterChain, cfg: SimConfig,
        behaviours: frozenset[str], rng: random.Random, genuine: set[bytes],
        targets: list[bytes], honest: list[str], start_us: int = 0,
    ) -> None:  # fmt: skip
        self.mid, self.key, self.cfg, self.rng = mid, key, cfg, rng
        #: the member turns faulty at ``start_us`` (scenario ``at_s``); honest-silent before
        self.start_us = start_us
        self.roster = chain.tip
        self.behaviours = behaviours
        self.genuine, self.targets, self.honest = genuine, targets, honest
        self._seq = 10_000
        self._framed: set[bytes] = set()
        self._heard: list[bytes] = []
        self._replayed: set[bytes] = set()

    def _att(self, entity: bytes, stance: str, now_us: int, seq: int | None = None) -> Attestation:
        self._seq += 1
        return Attestation(
            self.roster.network, self.mid, "card", entity, self.roster.key_epoch,
            self.cfg.policy.window_of(now_us), self._seq if seq is None else seq,
            stance, 10,  # type: ignore[arg-type]  # literal by construction
            issued_at_us=now_us,
        )  # fmt: skip

    def _frame(self, entity: bytes, now_us: int) -> list[Action]:
        if entity in self._framed:
            return []
        self._framed.add(entity)
        risk = sign_attestation(self._att(entity, "risk", now_us), self.key)
        if "equivocate" not in self.behaviours:
            return [Broadcast(TOPIC_ATTESTATIONS, risk.to_wire())]
        clear = sign_attestation(self._att(entity, "clear", now_us, risk.body.seq), self.key)
        half = len(self.honest) // 2
        acts: list[Action] = [
            Send(d, TOPIC_ATTESTATIONS, risk.to_wire()) for d in self.honest[:half]
        ]
        return acts + [Send(d, TOPIC_ATTESTATIONS, clear.to_wire()) for d in self.honest[half:]]

    def start(self, now_us: int) -> list[Action]:
        h = self.cfg.horizon_us
        acts: list[Action] = []
        s0 = self.start_us
        if "frame" in self.behaviours:
            acts += [
                Timer(self.rng.randrange(s0, max(s0 + 1, h // 2)), ("frame", e))
                for e in self.targets
            ]
        for b in ("flood", "forge", "garbage", "replay"):
            if b in self.behaviours:
                acts += [Timer(self.rng.randrange(s0, max(s0 + 1, h)), (b, i)) for i in range(3)]
        return acts

    def on_message(self, src: str, topic: str, data: bytes, now_us: int) -> list[Action]:
        acts: list[Action] = []
        if now_us < self.start_us:
            return acts
        if "replay" in self.behaviours and data not in self._replayed:
            self._replayed.add(data)  # once each: two replaying members must not ping-pong forever
            acts.append(Broadcast(topic, data))
            if len(self._heard) < 500:
                self._heard.append(data)
        if "pile-on" in self.behaviours and topic == TOPIC_ATTESTATIONS:
            try:
                sa = open_attestation(data, self.roster)
            except ConsensusError:
                return acts
            if sa.body.entity in self.genuine and sa.body.stance == "risk":
                acts += self._frame(sa.body.entity, now_us)
        return acts

    def on_timer(self, token: Any, now_us: int) -> list[Action]:
        kind, arg = token
        if kind == "frame":
            return self._frame(arg, now_us)
        if kind == "flood":
            n = self.cfg.flood_n
            atts = [
                sign_attestation(self._att(self.rng.randbytes(32), "risk", now_us), self.key)
                for _ in range(n)
            ]
            return [Broadcast(TOPIC_ATTESTATIONS, sa.to_wire()) for sa in atts]
        if kind == "forge":  # claim honest members' names, or sign for another network
            victim = self.rng.choice(self.honest)
            entity = self.rng.choice(sorted(self.genuine))
            a = self._att(entity, "risk", now_us)
            forged = Attestation(**{**_fields(a), "member_id": victim})
            other = Attestation(**{**_fields(a), "network": "other-net"})
            return [
                Broadcast(
                    TOPIC_ATTESTATIONS, _envelope(victim, sign_attestation(forged, self.key))
                ),
                Broadcast(TOPIC_ATTESTATIONS, sign_attestation(other, self.key).to_wire()),
            ]
        if kind == "garbage":
            junk = [self.rng.randbytes(self.rng.randrange(0, 300)), b"\x93" + b"\xc4\xff" * 50]
            return [Broadcast(t, d) for d in junk for t in (TOPIC_ATTESTATIONS, TOPIC_PROOFS)]
        # replay: resend everything heard so far, however old
        return [Broadcast(TOPIC_ATTESTATIONS, d) for d in self._heard[:200]]


def _fields(a: Attestation) -> dict[str, Any]:
    return {k: getattr(a, k) for k in Attestation.__slots__}


def _envelope(member_id: str, sa: SignedAttestation) -> bytes:
    from fraudnet.core.consensus.codec import pack

    return pack([member_id, sa.raw, sa.sig])


@dataclass(slots=True)
class SeedResult:
    seed: int
    n: int
    f: int
    fraud_cards: int
    genuine_cards: int
    unsafe_blocks: int = 0  # block on a card no honest member flagged
    genuine_blocked: int = 0
    live_eligible: int = 0  # cards flagged by >= 2f+1 honest members
    live_ok: int = 0  # ... blocked at every honest node within the bound
    block_clear_conflicts: int = 0
    certificates_checked: int = 0
    equivocators: int = 0
    latencies_us: list[int] = field(default_factory=list)
    messages: int = 0


def run_seed(seed: int, cfg: SimConfig | None = None) -> SeedResult:
    """Simulate one seed and measure safety and liveness (see module docstring)."""
    cfg = cfg or SimConfig()
    rng = random.Random(seed)
    n, f = cfg.members, cfg.f
    net_members = build_network(n, f, seed)
    ids = sorted(net_members.keys)
    faulty = [] if cfg.byzantine == "honest" else ids[n - f :]
    honest = [m for m in ids if m not in faulty]
    cards = generate_cards(rng, cfg, honest)
    genuine = {c.entity for c in cards if not c.fraud}
    net = SimNet(seed, cfg.link, cfg.partitions)
    nodes = {m: HonestNode(m, net_members.keys[m], net_members.fresh_chain(), cfg) for m in honest}
    for m, node in nodes.items():
        net.add(m, node)
    for m in faulty:
        beh = frozenset() if cfg.byzantine == "silent" else _pick_behaviours(rng)
        targets = rng.sample(sorted(genuine), k=min(3, len(genuine)))
        net.add(m, ByzantineNode(
            m, net_members.keys[m], net_members.fresh_chain(), cfg, beh,
            random.Random(rng.random()), genuine, targets, honest,
        ))  # fmt: skip
    for c in cards:
        for m, t in c.flags:
            net.schedule(t, m, partial(_flag, nodes[m], c.entity, True))
        for m, t in c.unflags:
            net.schedule(t, m, partial(_flag, nodes[m], c.entity, False))
    net.start()
    net.run_until(cfg.horizon_us)
    return _measure(seed, cfg, cards, nodes, net)


def _flag(node: HonestNode, entity: bytes, risk: bool, now_us: int) -> list[Action]:
    return node.flag(entity, now_us) if risk else node.unflag(entity, now_us)


def _pick_behaviours(rng: random.Random) -> frozenset[str]:
    chosen = {b for b in BEHAVIOURS if rng.random() < 0.6}
    return frozenset(chosen | {"frame"})


def _measure(
    seed: int, cfg: SimConfig, cards: list[CardTruth], nodes: dict[str, HonestNode], net: SimNet
) -> SeedResult:
    f = cfg.f
    r = SeedResult(seed, cfg.members, f, cfg.fraud_cards, cfg.genuine_cards)
    r.messages = net.stats.delivered
    certified: dict[tuple[bytes, int], set[str]] = {}
    for node in nodes.values():
        for e, w, lv in node.certified:
            certified.setdefault((e, w), set()).add(lv)
        r.equivocators = max(r.equivocators, len(node.tracker.equivocators()))
    r.block_clear_conflicts = sum(1 for s in certified.values() if {"block", "clear"} <= s)
    for c in cards:
        blocked_at = [
            nd.first_block[c.entity] for nd in nodes.values() if c.entity in nd.first_block
        ]
        if blocked_at and not c.flags:
            r.unsafe_blocks += 1
        if blocked_at and not c.fraud:
            r.genuine_blocked += 1
        times = sorted(t for _, t in c.flags)
        if c.fraud and len({m for m, _ in c.flags}) >= 2 * f + 1:
            r.live_eligible += 1
            deciding = times[2 * f]
            if len(blocked_at) == len(nodes):
                lat = max(blocked_at) - deciding
                r.latencies_us.append(max(0, lat))
                if lat <= cfg.liveness_bound_us:
                    r.live_ok += 1
    for node in nodes.values():  # every block certificate verifies offline
        for v in node.last_block.values():
            cert = v.certificate()
            assert cert is not None
            verify_certificate(cert, node.tracker.chain)
            r.certificates_checked += 1
    return r


def summarise(results: list[SeedResult]) -> dict[str, Any]:
    """Aggregate figures over seeds (the numbers the closing note reports)."""
    lat = sorted(x for r in results for x in r.latencies_us)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000 if lat else 0.0

    genuine = sum(r.genuine_cards for r in results)
    eligible = sum(r.live_eligible for r in results)
    return {
        "seeds": len(results),
        "unsafe_blocks": sum(r.unsafe_blocks for r in results),
        "block_clear_conflicts": sum(r.block_clear_conflicts for r in results),
        "genuine_cards": genuine,
        "genuine_blocked": sum(r.genuine_blocked for r in results),
        "genuine_block_rate": sum(r.genuine_blocked for r in results) / genuine if genuine else 0.0,
        "live_eligible": eligible,
        "live_ok": sum(r.live_ok for r in results),
        "liveness": sum(r.live_ok for r in results) / eligible if eligible else 1.0,
        "latency_p50_ms": pct(0.5),
        "latency_p99_ms": pct(0.99),
        "certificates_checked": sum(r.certificates_checked for r in results),
        "messages": sum(r.messages for r in results),
    }
