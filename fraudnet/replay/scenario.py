"""Scenario files: TOML describing a multi-member replay, its faults and expectations.

A strict loader: every table and key is known, every value is type-checked,
and every problem raises :class:`~fraudnet.errors.ConfigError` naming the
file, the dotted key and (when it can be found) the line. The format is
documented in ``scenarios/README.md``; :func:`load_scenario` is the only
entry point. All times in a file are seconds from the start of the replayed
data (the virtual clock's zero).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final, TypeVar

from fraudnet.errors import ConfigError

from .generator import ATTACK_SCENARIO, Attack

__all__ = [
    "BYZANTINE_BEHAVIOURS",
    "FAULT_KINDS",
    "MODES",
    "DataSpec",
    "Expectations",
    "FaultSpec",
    "NetworkSpec",
    "ReplaySpec",
    "Scenario",
    "ScoringSpec",
    "SignalSpec",
    "load_scenario",
    "member_name",
]

MODES: Final = ("isolated", "network", "central")
FAULT_KINDS: Final = ("byzantine", "sybil", "partition", "crash", "slow", "clock_skew")
#: forge: sign as someone else; replay: resend old messages; false: valid signals and
#: attestations against genuine cards; equivocate; flood; pile-on; garbage; silent
BYZANTINE_BEHAVIOURS: Final = (
    "forge", "replay", "false", "equivocate", "flood", "pile-on", "garbage", "silent",
)  # fmt: skip
MAX_MEMBERS: Final = 64
T = TypeVar("T")


def member_name(i: int) -> str:
    """Name of member ``i`` in a scenario (``m00``, ``m01``, ...), as in the roster."""
    return f"m{i:02d}"


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    members: int = 4
    f: int = 1
    nodes_per_member: int = 1
    topology: str = "full"
    loss: float = 0.01
    duplicate: float = 0.01
    base_delay_ms: float = 5.0
    jitter_ms: float = 20.0
    tail: float = 0.0
    window_s: int = 300
    grace_s: int = 30
    tick_s: int = 30
    republish_s: int = 60

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(member_name(i) for i in range(self.members))


@dataclass(frozen=True, slots=True)
class DataSpec:
    source: str = "generator"
    # generator
    customers: int = 400
    terminals: int = 800
    days: int = 2
    start: str = "2024-04-01"
    seed: int | None = None
    compromised_terminals_per_day: int = 0
    compromised_customers_per_day: int = 1
    radius: float = 5.0
    attacks: tuple[Attack, ...] = ()
    # csv
    path: str | None = None
    partition: str = "terminal"
    first_day: int = 0
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class ReplaySpec:
    #: None: as fast as possible; k: k x real time (real-process mode only)
    speed: float | None = None
    #: virtual service time per transaction at a node (simulation mode)
    service_ms: float = 0.5
    #: records of the stream's uncommitted tail re-delivered after a crash
    redeliver: int = 20


@dataclass(frozen=True, slots=True)
class ScoringSpec:
    #: baseline (rules) | model (one file for every member) | trained (fitted per mode
    #: from the scenario's own history: see fraudnet.replay.trained)
    scorer: str = "baseline"
    model: str | None = None
    review_at: float = 0.5
    block_at: float = 0.9
    amount_limit: float = 220.0
    # trained: first training day (YYYY-MM-DD, UTC), period lengths, model
    train_start: str | None = None
    train_days: int = 7
    delay_days: int = 7
    candidate: str = "rf"
    feature_set: str = "all"
    #: network mode: every member decides with the consortium of all members' models
    model_exchange: bool = True
    #: training's stand-in for gossip delay (signal creation -> arrival elsewhere)
    propagation_s: float = 1.0
    jobs: int = 1


@dataclass(frozen=True, slots=True)
class SignalSpec:
    threshold: float = 0.8
    budget: float = 0.05
    burst: int = 5
    cooldown_s: int = 3600
    flush_ms: int = 100
    ttl_s: int = 86400
    #: local score from which a member attests ``risk`` on the card
    attest_threshold: float = 0.8


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: str
    at_s: float = 0.0
    until_s: float | None = None
    member: str | None = None
    behaviours: tuple[str, ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    extra_delay_ms: float = 0.0
    service_factor: float = 1.0
    skew_s: float = 0.0
    rate_per_s: float = 50.0


@dataclass(frozen=True, slots=True)
class Expectations:
    min_recall: float | None = None
    min_precision: float | None = None
    min_average_precision: float | None = None
    max_false_block_verdicts: int | None = None
    min_liveness: float | None = None
    min_attack_liveness: float | None = None
    ap_network_gt_isolated: bool | None = None
    min_gap_closed: float | None = None
    exactly_one_decision: bool | None = None
    max_honest_drop: float | None = None
    min_block_verdicts: int | None = None

    def active(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str = ""
    seed: int = 0
    modes: tuple[str, ...] = MODES
    network: NetworkSpec = field(default_factory=NetworkSpec)
    data: DataSpec = field(default_factory=DataSpec)
    replay: ReplaySpec = field(default_factory=ReplaySpec)
    scoring: ScoringSpec = field(default_factory=ScoringSpec)
    signals: SignalSpec = field(default_factory=SignalSpec)
    faults: tuple[FaultSpec, ...] = ()
    expect: Expectations = field(default_factory=Expectations)
    path: str = "<memory>"

    def without_attackers(self) -> Scenario:
        """The same scenario with Byzantine and sybil faults removed (the honest baseline)."""
        from dataclasses import replace

        kept = tuple(f for f in self.faults if f.kind not in ("byzantine", "sybil"))
        return replace(self, faults=kept, name=f"{self.name} (no attacker)")

    @property
    def byzantine(self) -> tuple[str, ...]:
        return tuple(f.member for f in self.faults if f.kind == "byzantine" and f.member)


# -- the strict reader ---------------------------------------------------------


class _Ctx:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def fail(self, key: str, msg: str) -> ConfigError:
        line = self._line(key)
        where = f"{self.path}:{line}" if line else self.path
        return ConfigError(f"{where}: {key}: {msg}")

    def _line(self, key: str) -> int | None:
        leaf = re.sub(r"\[\d+\]", "", key).split(".")[-1]
        pat = re.compile(rf"^\s*(\[+\s*)?{re.escape(leaf)}\s*[=\]]")
        for i, ln in enumerate(self.lines, 1):
            if pat.match(ln):
                return i
        return None


def _want(ctx: _Ctx, key: str, v: Any, typ: type[T] | tuple[type, ...], what: str) -> Any:
    types = typ if isinstance(typ, tuple) else (typ,)
    if isinstance(v, bool) and bool not in types:
        raise ctx.fail(key, f"expected {what}, got a boolean")
    if not isinstance(v, typ):
        raise ctx.fail(key, f"expected {what}, got {type(v).__name__} {v!r}")
    return v


def _num(ctx: _Ctx, key: str, v: Any, lo: float | None = None, hi: float | None = None) -> float:
    x = float(_want(ctx, key, v, (int, float), "a number"))
    if not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise ctx.fail(key, f"{x} out of range [{lo}, {hi}]")
    return x


def _int(ctx: _Ctx, key: str, v: Any, lo: int | None = None, hi: int | None = None) -> int:
    x = int(_want(ctx, key, v, int, "an integer"))
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise ctx.fail(key, f"{x} out of range [{lo}, {hi}]")
    return x


def _str(ctx: _Ctx, key: str, v: Any, choices: tuple[str, ...] | None = None) -> str:
    s = str(_want(ctx, key, v, str, "a string"))
    if choices is not None and s not in choices:
        raise ctx.fail(key, f"{s!r} is not one of {', '.join(choices)}")
    return s


def _date(ctx: _Ctx, key: str, v: Any) -> str:
    s = _str(ctx, key, v)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        raise ctx.fail(key, f"{s!r}: expected YYYY-MM-DD")
    try:
        date.fromisoformat(s)
    except ValueError:
        raise ctx.fail(key, f"{s!r} is not a calendar date") from None
    return s


def _bool(ctx: _Ctx, key: str, v: Any) -> bool:
    return bool(_want(ctx, key, v, bool, "true or false"))


def _table(ctx: _Ctx, key: str, v: Any) -> dict[str, Any]:
    return dict(_want(ctx, key, v, dict, "a table"))


def _fields(
    ctx: _Ctx, prefix: str, raw: dict[str, Any], spec: dict[str, Callable[[str, Any], Any]]
) -> dict[str, Any]:
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise ctx.fail(f"{prefix}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(spec))})")
    return {k: spec[k](f"{prefix}.{k}", v) for k, v in raw.items()}


def _network(ctx: _Ctx, raw: dict[str, Any]) -> NetworkSpec:
    def n(lo: float, hi: float | None = None) -> Callable[[str, Any], float]:
        return lambda k, v: _num(ctx, k, v, lo, hi)

    def i(lo: int, hi: int | None = None) -> Callable[[str, Any], int]:
        return lambda k, v: _int(ctx, k, v, lo, hi)

    kw = _fields(ctx, "network", raw, {
        "members": i(1, MAX_MEMBERS), "f": i(0, 21), "nodes_per_member": i(1, 1),
        "topology": lambda k, v: _str(ctx, k, v, ("full",)),
        "loss": n(0, 1), "duplicate": n(0, 1), "tail": n(0, 1),
        "base_delay_ms": n(0, 60_000), "jitter_ms": n(0, 60_000),
        "window_s": i(1, 86400), "grace_s": i(0, 86400), "tick_s": i(1, 86400),
        "republish_s": i(1, 86400),
    })  # fmt: skip
    spec = NetworkSpec(**kw)
    if spec.members < 3 * spec.f + 1 and "members" in raw:
        raise ctx.fail("network.f", f"f={spec.f} needs at least 3f+1={3 * spec.f + 1} members")
    if spec.grace_s > spec.window_s:
        raise ctx.fail("network.grace_s", "must not exceed window_s")
    return spec


def _attack(ctx: _Ctx, key: str, raw: Any) -> Attack:
    t = _table(ctx, key, raw)
    kw = _fields(ctx, key, t, {
        "kind": lambda k, v: _str(ctx, k, v, tuple(ATTACK_SCENARIO)),
        "day": lambda k, v: _int(ctx, k, v, 0, 3650),
        "count": lambda k, v: _int(ctx, k, v, 1, 100_000),
        "members": lambda k, v: _int(ctx, k, v, 1, MAX_MEMBERS),
        "duration_s": lambda k, v: _int(ctx, k, v, 1, 86400 * 30),
        "tx_per_card": lambda k, v: _int(ctx, k, v, 1, 1000),
        "at_s": lambda k, v: _int(ctx, k, v, 0, 86399),
    })  # fmt: skip
    if "kind" not in kw or "day" not in kw:
        raise ctx.fail(key, "an attack needs kind and day")
    return Attack(**kw)


def _data(ctx: _Ctx, raw: dict[str, Any]) -> DataSpec:
    spec: dict[str, Callable[[str, Any], Any]] = {
        "source": lambda k, v: _str(ctx, k, v, ("generator", "csv")),
        "customers": lambda k, v: _int(ctx, k, v, 1, 10_000_000),
        "terminals": lambda k, v: _int(ctx, k, v, 1, 10_000_000),
        "days": lambda k, v: _int(ctx, k, v, 1, 3650),
        "start": lambda k, v: _str(ctx, k, v),
        "seed": lambda k, v: _int(ctx, k, v, 0),
        "compromised_terminals_per_day": lambda k, v: _int(ctx, k, v, 0, 100_000),
        "compromised_customers_per_day": lambda k, v: _int(ctx, k, v, 0, 100_000),
        "radius": lambda k, v: _num(ctx, k, v, 0.1, 200),
        "attacks": lambda k, v: tuple(
            _attack(ctx, f"{k}[{j}]", a) for j, a in enumerate(_want(ctx, k, v, list, "a list"))
        ),
        "path": lambda k, v: _str(ctx, k, v),
        "partition": lambda k, v: _str(ctx, k, v, ("terminal", "customer")),
        "first_day": lambda k, v: _int(ctx, k, v, 0, 3650),
        "limit": lambda k, v: _int(ctx, k, v, 1),
    }
    kw = _fields(ctx, "data", raw, spec)
    d = DataSpec(**kw)
    if d.source == "generator":
        bad = [k for k in ("path", "partition", "limit") if k in raw]
        if bad:
            raise ctx.fail(f"data.{bad[0]}", 'only for source = "csv"')
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d.start):
            raise ctx.fail("data.start", f"{d.start!r}: expected YYYY-MM-DD")
        if d.first_day >= d.days:
            raise ctx.fail("data.first_day", f"{d.first_day}: no day of {d.days} left to replay")
    return d


def _fault(ctx: _Ctx, key: str, raw: Any, members: tuple[str, ...]) -> FaultSpec:
    t = _table(ctx, key, raw)

    def member(k: str, v: Any) -> str:
        s = _str(ctx, k, v)
        if s not in members:
            raise ctx.fail(k, f"{s!r} is not a member (members: {', '.join(members)})")
        return s

    def behaviours(k: str, v: Any) -> tuple[str, ...]:
        items = _want(ctx, k, v, list, "a list of strings")
        return tuple(_str(ctx, f"{k}[{j}]", b, BYZANTINE_BEHAVIOURS) for j, b in enumerate(items))

    def groups(k: str, v: Any) -> tuple[tuple[str, ...], ...]:
        gs = _want(ctx, k, v, list, "a list of lists of members")
        return tuple(
            tuple(member(f"{k}[{j}]", m) for m in _want(ctx, f"{k}[{j}]", g, list, "a list"))
            for j, g in enumerate(gs)
        )

    kw = _fields(ctx, key, t, {
        "kind": lambda k, v: _str(ctx, k, v, FAULT_KINDS),
        "at_s": lambda k, v: _num(ctx, k, v, 0), "until_s": lambda k, v: _num(ctx, k, v, 0),
        "member": member, "behaviours": behaviours, "groups": groups,
        "extra_delay_ms": lambda k, v: _num(ctx, k, v, 0, 3_600_000),
        "service_factor": lambda k, v: _num(ctx, k, v, 1, 10_000),
        "skew_s": lambda k, v: _num(ctx, k, v, -86400, 86400),
        "rate_per_s": lambda k, v: _num(ctx, k, v, 0.001, 100_000),
    })  # fmt: skip
    if "kind" not in kw:
        raise ctx.fail(key, "a fault needs a kind")
    fs = FaultSpec(**kw)
    needs_member = ("byzantine", "crash", "slow", "clock_skew")
    if fs.kind in needs_member and fs.member is None:
        raise ctx.fail(f"{key}.member", f"a {fs.kind} fault names its member")
    if fs.kind in ("partition", "crash") and fs.until_s is None:
        raise ctx.fail(f"{key}.until_s", f"a {fs.kind} fault needs until_s (heal/restart time)")
    if fs.until_s is not None and fs.until_s <= fs.at_s:
        raise ctx.fail(f"{key}.until_s", "must be after at_s")
    if fs.kind == "partition" and len(fs.groups) < 2:
        raise ctx.fail(f"{key}.groups", "a partition needs at least two groups")
    return fs


def _expect(ctx: _Ctx, raw: dict[str, Any]) -> Expectations:
    def frac(k: str, v: Any) -> float:
        return _num(ctx, k, v, 0, 1)

    kw = _fields(ctx, "expect", raw, {
        "min_recall": frac, "min_precision": frac, "min_average_precision": frac,
        "max_false_block_verdicts": lambda k, v: _int(ctx, k, v, 0),
        "min_liveness": frac, "min_attack_liveness": frac, "min_gap_closed": frac,
        "ap_network_gt_isolated": lambda k, v: _bool(ctx, k, v),
        "exactly_one_decision": lambda k, v: _bool(ctx, k, v),
        "max_honest_drop": frac,
        "min_block_verdicts": lambda k, v: _int(ctx, k, v, 0),
    })  # fmt: skip
    return Expectations(**kw)


def parse_scenario(text: str, path: str = "<memory>") -> Scenario:
    """Parse scenario TOML ``text`` (``path`` is used in error messages)."""
    ctx = _Ctx(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    top = _fields(ctx, "", doc, {
        "scenario": lambda k, v: _table(ctx, "scenario", v),
        "network": lambda k, v: _table(ctx, "network", v),
        "data": lambda k, v: _table(ctx, "data", v),
        "replay": lambda k, v: _table(ctx, "replay", v),
        "scoring": lambda k, v: _table(ctx, "scoring", v),
        "signals": lambda k, v: _table(ctx, "signals", v),
        "faults": lambda k, v: _want(ctx, "faults", v, list, "an array of tables"),
        "expect": lambda k, v: _table(ctx, "expect", v),
    })  # fmt: skip
    head = _fields(ctx, "scenario", top.get("scenario", {}), {
        "name": lambda k, v: _str(ctx, k, v),
        "description": lambda k, v: _str(ctx, k, v),
        "seed": lambda k, v: _int(ctx, k, v, 0),
        "modes": lambda k, v: tuple(
            _str(ctx, f"{k}[{j}]", m, MODES)
            for j, m in enumerate(_want(ctx, k, v, list, "a list of modes"))
        ),
    })  # fmt: skip
    if "name" not in head:
        raise ctx.fail("scenario.name", "missing (every scenario has a name)")
    network = _network(ctx, top.get("network", {}))
    replay_raw = top.get("replay", {})
    rp = _fields(ctx, "replay", replay_raw, {
        "speed": lambda k, v: None if v == "max" else _num(ctx, k, v, 0.001, 1e6),
        "service_ms": lambda k, v: _num(ctx, k, v, 0, 60_000),
        "redeliver": lambda k, v: _int(ctx, k, v, 0, 100_000),
    })  # fmt: skip
    sc = _fields(ctx, "scoring", top.get("scoring", {}), {
        "scorer": lambda k, v: _str(ctx, k, v, ("baseline", "model", "trained")),
        "model": lambda k, v: _str(ctx, k, v),
        "train_start": lambda k, v: _date(ctx, k, v),
        "train_days": lambda k, v: _int(ctx, k, v, 1, 365),
        "delay_days": lambda k, v: _int(ctx, k, v, 0, 365),
        "candidate": lambda k, v: _str(ctx, k, v),
        "feature_set": lambda k, v: _str(ctx, k, v),
        "model_exchange": lambda k, v: _bool(ctx, k, v),
        "propagation_s": lambda k, v: _num(ctx, k, v, 0, 3600),
        "jobs": lambda k, v: _int(ctx, k, v, 1, 256),
        "review_at": lambda k, v: _num(ctx, k, v, 0, 1),
        "block_at": lambda k, v: _num(ctx, k, v, 0, 1),
        "amount_limit": lambda k, v: _num(ctx, k, v, 0),
    })  # fmt: skip
    scoring = ScoringSpec(**sc)
    if scoring.scorer == "model" and scoring.model is None:
        raise ctx.fail("scoring.model", 'scorer = "model" needs the model file\'s path')
    if scoring.scorer == "trained" and scoring.train_start is None:
        raise ctx.fail("scoring.train_start", 'scorer = "trained" needs train_start (YYYY-MM-DD)')
    trained_only = ("train_start", "train_days", "delay_days", "candidate", "feature_set",
                    "model_exchange", "propagation_s", "jobs")  # fmt: skip
    stray = [k for k in trained_only if k in sc and scoring.scorer != "trained"]
    if stray:
        raise ctx.fail(f"scoring.{stray[0]}", 'only for scorer = "trained"')
    if scoring.review_at > scoring.block_at:
        raise ctx.fail("scoring.review_at", "must not exceed block_at")
    sg = _fields(ctx, "signals", top.get("signals", {}), {
        "threshold": lambda k, v: _num(ctx, k, v, 0, 1),
        "budget": lambda k, v: _num(ctx, k, v, 0, 1),
        "burst": lambda k, v: _int(ctx, k, v, 0),
        "cooldown_s": lambda k, v: _int(ctx, k, v, 0),
        "flush_ms": lambda k, v: _int(ctx, k, v, 1),
        "ttl_s": lambda k, v: _int(ctx, k, v, 1),
        "attest_threshold": lambda k, v: _num(ctx, k, v, 0, 1),
    })  # fmt: skip
    faults = tuple(
        _fault(ctx, f"faults[{j}]", f, network.names) for j, f in enumerate(top.get("faults", []))
    )
    return Scenario(
        name=head["name"], description=head.get("description", ""), seed=head.get("seed", 0),
        modes=head.get("modes", MODES), network=network, data=_data(ctx, top.get("data", {})),
        replay=ReplaySpec(**rp), scoring=scoring, signals=SignalSpec(**sg), faults=faults,
        expect=_expect(ctx, top.get("expect", {})), path=path,
    )  # fmt: skip


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`ConfigError` names file, key and line."""
    p = Path(path)
    try:
        if p.stat().st_size > 1 << 20:
            raise ConfigError(f"{p}: scenario file larger than 1 MiB")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: scenario file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read scenario file ({e})") from None
    return parse_scenario(text, str(p))
