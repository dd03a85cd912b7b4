"""Simulation mode: run a scenario's members on the deterministic harness.

One run = one mode of one scenario with one seed, on :class:`.simnet.SimNet`
(the consensus simulation's harness, extended with crashes and slow nodes):

* ``isolated`` -- every member's :class:`.members.CoreMember` decides its own
  transactions; no signals, no consensus.
* ``network`` -- the same members exchange real signed signal envelopes and
  attestations; faults of the scenario apply; verdicts change decisions.
* ``central`` -- one core sees every member's transactions (the upper bound
  a data-pooling bureau would have).

The virtual clock's zero is the first record's event time; each record is
delivered to its member at its event time. Same scenario + seed => the same
:class:`RunResult`, bit for bit.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core.consensus import Limits, VerdictPolicy
from fraudnet.core.ids import key64
from fraudnet.core.pipeline import NodeCore
from fraudnet.core.records import Pseudonymiser, TxColumns, to_record
from fraudnet.core.scoring.base import Scorer, Thresholds
from fraudnet.core.signals import (
    EpochKey,
    NetworkKeyring,
    SignalPolicy,
    ValidationConfig,
    Validator,
)
from fraudnet.core.transaction import Transaction, parse_record
from fraudnet.errors import ConfigError

from .members import ByzantineMember, CoreMember, MemberEnv, Recorder, SybilNode
from .scenario import Scenario
from .sim import ByzantineNode, SimConfig, build_network
from .simnet import LinkModel, NetStats, Partition, SimNet
from .sources import Dataset, Replayed, normaliser
from .trained import ModeModels, TrainedScorer, fit_mode_models

__all__ = ["NETWORK_ID", "RunResult", "run_mode"]

S = 1_000_000
MS = 1_000
NETWORK_ID = "sim"
_BYZ_MAP = {
    "forge": {"forge"}, "replay": {"replay"}, "false": {"frame"}, "flood": {"flood"},
    "equivocate": {"equivocate", "frame"}, "pile-on": {"pile-on"}, "garbage": {"garbage"},
    "silent": set(),
}  # fmt: skip


@dataclass(slots=True)
class RunResult:
    mode: str
    seed: int
    members: tuple[str, ...]
    honest: tuple[str, ...]
    recorder: Recorder
    stats: NetStats
    counters: dict[str, dict[str, Any]] = field(default_factory=dict)
    validator: dict[str, int] = field(default_factory=dict)
    equivocators: list[str] = field(default_factory=list)
    horizon_us: int = 0


def _scorer_factory(sc: Scenario, models: ModeModels | None = None) -> Callable[[str], Scorer]:
    if sc.scoring.scorer == "baseline":
        from fraudnet.core.scoring.baseline import BaselineScorer

        return lambda mid: BaselineScorer(sc.scoring.amount_limit)
    if sc.scoring.scorer == "trained":
        assert models is not None
        mm = models
        # a Byzantine member decides with its own model too; unknown names (none today)
        # fall back to the first member's
        first = next(iter(mm.deciders))
        return lambda mid: TrainedScorer(
            mm.deciders.get(mid, mm.deciders[first]), mm.signals.get(mid)
        )
    from fraudnet.core.scoring.model_scorer import ModelScorer
    from fraudnet.training.modelio import load_model

    assert sc.scoring.model is not None
    model, model_id = load_model(sc.scoring.model)
    return lambda mid: ModelScorer(model, model_id=model_id)


def run_mode(
    sc: Scenario, mode: str, data: Dataset, seed: int | None = None,
    models: ModeModels | None = None,
) -> RunResult:  # fmt: skip
    """Simulate ``mode`` of scenario ``sc`` over ``data`` (see module docstring).

    ``models``: a ``trained`` scenario's models of this mode
    (:func:`.trained.fit_mode_models`; fitted here, uncached, when not given).
    """
    if mode not in ("isolated", "network", "central"):
        raise ConfigError(f"mode {mode!r}: expected isolated, network or central")
    if sc.scoring.scorer == "trained" and models is None:
        models = fit_mode_models(sc, mode, data)
    seed = sc.seed if seed is None else seed
    nw = sc.network
    rng = random.Random(seed)
    rec = Recorder()
    policy = VerdictPolicy(window_us=nw.window_s * S, grace_us=nw.grace_s * S)
    cfg = SimConfig(
        f=nw.f, n=nw.members, policy=policy, tick_us=nw.tick_s * S,
        republish_us=nw.republish_s * S, limits=Limits(rate_per_s=20.0, burst=400.0),
        horizon_us=data.duration_us + 1,
    )  # fmt: skip
    members = build_network(nw.members, nw.f, seed, NETWORK_ID)
    net_key = hashlib.sha256(f"fraudnet-sim-network/{seed}".encode()).digest()
    keyring = NetworkKeyring([EpochKey(0, -(1 << 60), net_key)], grace_us=0)

    def refs(tx: Transaction, now_us: int) -> tuple[tuple[int, bytes, bytes], ...]:
        e, card = keyring.pseudonym("card", tx.card, now_us)
        _, term = keyring.pseudonym("terminal", tx.terminal_id, now_us)
        return ((e, card, term),)

    th = Thresholds(sc.scoring.review_at, sc.scoring.block_at)
    make_scorer = _scorer_factory(sc, models)

    def secret_of(mid: str) -> bytes:
        return hashlib.sha256(f"fraudnet-sim-node/{seed}/{mid}".encode()).digest()

    def make_core(mid: str, scorer: Scorer) -> NodeCore:
        return NodeCore(
            scorer,
            secret_of(mid),
            thresholds=th,
            fields=data.fields,
            network_refs=refs,
            normaliser=normaliser(),
        )

    from fraudnet.core import crypto

    pub = {m: crypto.public_bytes(k) for m, k in members.keys.items()}
    sg = sc.signals
    env = MemberEnv(
        network_id=NETWORK_ID, pubkeys=pub, make_scorer=make_scorer, make_core=make_core,
        make_validator=lambda: Validator(
            NETWORK_ID, pub, ValidationConfig(), accepted_epochs=keyring.accepted_epochs
        ),
        make_policy=lambda: SignalPolicy(
            threshold=sg.threshold, budget=sg.budget, burst=sg.burst,
            cooldown_us=sg.cooldown_s * S, ttl_us=sg.ttl_s * S,
        ),
        attest_threshold=sg.attest_threshold, flush_us=sg.flush_ms * MS,
        service_us=int(sc.replay.service_ms * MS), redeliver=sc.replay.redeliver,
        checkpoint_us=300 * S, recorder=rec, signal_terminals=sc.scoring.scorer == "trained",
    )  # fmt: skip
    faults = sc.faults if mode == "network" else ()
    crash_members = {f.member for f in sc.faults if f.kind == "crash"}
    if mode != "network":  # crashes are node faults: they apply in every mode
        faults = tuple(f for f in sc.faults if f.kind in ("crash", "slow"))
    link = LinkModel(
        loss=nw.loss, duplicate=nw.duplicate, base_delay_us=int(nw.base_delay_ms * MS),
        jitter_us=int(nw.jitter_ms * MS), tail=nw.tail,
    )  # fmt: skip
    parts = [
        Partition(int(f.at_s * S), int((f.until_s or 0) * S), tuple(frozenset(g) for g in f.groups))
        for f in faults if f.kind == "partition"
    ]  # fmt: skip
    net = SimNet(seed, link, parts)
    names = nw.names if mode != "central" else ("central",)
    byz = {f.member: f for f in faults if f.kind == "byzantine"}
    honest = tuple(m for m in names if m not in byz)
    genuine = _genuine_entities(data, keyring)
    nodes: dict[str, Any] = {}
    for m in names:
        key = members.keys.get(m) or members.keys[nw.names[0]]
        skew = sum(int(f.skew_s * S) for f in faults if f.kind == "clock_skew" and f.member == m)
        slow = tuple(
            (int(f.at_s * S), int((f.until_s or 1e12) * S), f.service_factor)
            for f in faults if f.kind == "slow" and f.member == m
        )  # fmt: skip
        core = CoreMember(
            m, key, members.fresh_chain(), cfg, env, network=mode == "network" and m not in byz,
            skew_us=skew, slow=slow, checkpoints=m in crash_members,
        )  # fmt: skip
        if m in byz:
            beh = frozenset(byz[m].behaviours or ("false", "forge", "replay", "equivocate"))
            mapped = frozenset(set().union(*(_BYZ_MAP[b] for b in beh)))
            bnode = ByzantineNode(
                m, key, members.fresh_chain(), cfg, mapped, random.Random(rng.random()),
                set(genuine), rng.sample(genuine, k=min(10, len(genuine))), list(honest),
                int(byz[m].at_s * S),
            )  # fmt: skip
            nodes[m] = ByzantineMember(
                core, bnode, key, NETWORK_ID, beh, genuine, list(honest),
                random.Random(rng.random()), data.duration_us, rec,
            )  # fmt: skip
        else:
            nodes[m] = core
        if sc.scoring.scorer == "trained" and data.history is not None:
            core.warm_up(partial(_warm, data, m, names, secret_of(m)))
        net.add(m, nodes[m])
    for j, f in enumerate(x for x in faults if x.kind == "sybil"):
        skey = Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(f"fraudnet-sim-sybil/{seed}/{j}".encode()).digest()
        )
        end = int((f.until_s or data.duration_us / S) * S)
        net.add(f"sybil{j:02d}", SybilNode(
            f"sybil{j:02d}", skey, NETWORK_ID, 0, policy, genuine, list(honest),
            int(f.at_s * S), end, f.rate_per_s, random.Random(rng.random()),
        ))  # fmt: skip
    for f in faults:
        if f.kind == "crash" and f.member in nodes and mode != "central":
            net.crash(f.member, int(f.at_s * S), int((f.until_s or 0) * S))
        if f.kind == "slow" and f.member in nodes and f.extra_delay_ms:
            net.slow(f.member, int(f.at_s * S), int((f.until_s or 1e12) * S),
                     int(f.extra_delay_ms * MS))  # fmt: skip
    for r in data.records:
        dst = "central" if mode == "central" else nw.names[r.member % nw.members]
        net.schedule(r.t_us, dst, partial(_ingest, nodes[dst], r))
    net.start()
    horizon = data.duration_us + 2 * policy.window_us
    net.run_until(horizon)
    out = RunResult(mode, seed, names, honest, rec, net.stats, horizon_us=horizon)
    for m, node in nodes.items():
        core_m = node.core if isinstance(node, ByzantineMember) else node
        out.counters[m] = core_m.core.counters.as_dict()
        if m in honest:
            for k, v in core_m.validator.counters.items():
                out.validator[k] = out.validator.get(k, 0) + v
            out.equivocators = sorted(set(out.equivocators) | core_m.tracker.equivocators())
    return out


def _warm(data: Dataset, member: str, names: tuple[str, ...], secret: bytes, scorer: Any) -> None:
    """Fold the history rows ``member`` received into its scorer's state, under the keys its
    own core derives (same parser, normaliser and pseudonymiser), labels included."""
    h = data.history
    if h is None or not data.records or not hasattr(scorer, "fold_history"):
        return
    t = h.table
    rows = np.arange(len(t)) if names == ("central",) else np.flatnonzero(
        h.member == names.index(member)
    )  # fmt: skip
    if rows.size == 0:
        return
    fm, norm, pseudo = data.fields, normaliser(), Pseudonymiser(secret)
    template = dict(data.records[0].raw)

    def keys(field_name: str, kind: str, ids: Any, values: dict[int, str]) -> Any:
        uniq, inv = np.unique(ids, return_inverse=True)
        out = np.empty(len(uniq), dtype=np.uint64)
        for j, v in enumerate(uniq.tolist()):
            tx = parse_record({**template, field_name: values[v]}, fm, norm)
            rec = to_record(tx, pseudo)
            out[j] = key64(rec.card_ref if kind == "card" else rec.terminal_ref)
        return out[inv]

    cols = TxColumns(
        card_key=keys(fm.card, "card", t.customer[rows], h.card_values),
        terminal_key=keys(fm.terminal_id, "terminal", t.terminal[rows], h.terminal_values),
        ts_s=np.ascontiguousarray(t.ts_s[rows]), amount=np.ascontiguousarray(t.amount[rows]),
        mcc=np.full(rows.size, -1, dtype=np.int32), channel=np.full(rows.size, -1, dtype=np.int8),
        label=np.ascontiguousarray(t.fraud[rows], dtype=np.int8),
    )  # fmt: skip
    scorer.fold_history(cols)


def _ingest(node: Any, r: Replayed, now_us: int) -> Any:
    return node.ingest(r, now_us)


def _genuine_entities(data: Dataset, keyring: NetworkKeyring) -> list[bytes]:
    """Network pseudonyms of cards with no fraud in the ground truth (attackers' targets)."""
    fraud_cards = {r.card for r in data.records if r.label}
    cards = sorted(c for c in {r.card for r in data.records} if c not in fraud_cards)
    return [keyring.pseudonym("card", data.card_values[c], 0)[1] for c in cards[:2000]]
