"""A deterministic simulated network on a virtual clock.

:class:`SimNet` runs *actors* -- anything with ``start(now)``,
``on_message(src, topic, data, now)`` and ``on_timer(token, now)`` that return
lists of :class:`Send`, :class:`Broadcast` and :class:`Timer` -- over links
with seeded loss, delay (base + exponential jitter), duplication and
partitions. Every random draw comes from one ``random.Random(seed)``, and
events with equal times are ordered by insertion, so one seed gives one
history, bit for bit. Nothing sleeps: time jumps from event to event.

The harness knows nothing about consensus: whole node cores (features,
model, signals, consensus) can be wrapped as actors, and scenario files can
drive them through :meth:`SimNet.schedule`.

Faults besides the link model (all seeded or scheduled, so still one history
per seed):

* :meth:`SimNet.crash` -- a node is down during ``[at_us, restart_us)``:
  messages and timers addressed to it are lost, scheduled calls (work the
  durable stream holds for it, e.g. transactions) are deferred to
  ``restart_us``; the actor's optional ``on_crash(now)`` / ``on_restart(now)``
  hooks drop and rebuild its volatile state.
* :meth:`SimNet.slow` -- every message from or to a node is delayed by an
  extra amount during an interval (a slow or overloaded node).

:class:`NetStats` also counts messages and bytes per node (``per_node``).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Actor",
    "Broadcast",
    "LinkModel",
    "NetStats",
    "NodeStats",
    "Outage",
    "Partition",
    "Send",
    "SimNet",
    "Slowdown",
    "Timer",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``data`` on ``topic`` to one node."""

    dst: str
    topic: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``data`` on ``topic`` to every other node (one link draw per recipient)."""

    topic: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Timer:
    """Call the actor's ``on_timer(token, now)`` at virtual time ``at_us``."""

    at_us: int
    token: Any = None


Action = Send | Broadcast | Timer


class Actor(Protocol):
    def start(self, now_us: int) -> list[Action]: ...

    def on_message(self, src: str, topic: str, data: bytes, now_us: int) -> list[Action]: ...

    def on_timer(self, token: Any, now_us: int) -> list[Action]: ...


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Per-message link behaviour. Delays in microseconds."""

    loss: float = 0.0
    duplicate: float = 0.0
    base_delay_us: int = 5_000
    jitter_us: int = 20_000
    #: probability of a long-tail delay (a slow path), and its scale
    tail: float = 0.0
    tail_us: int = 300_000

    def __post_init__(self) -> None:
        for p in (self.loss, self.duplicate, self.tail):
            if not 0.0 <= p <= 1.0:
                raise ValueError("link probabilities must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class Partition:
    """During ``[start_us, end_us)`` messages between different groups are dropped."""

    start_us: int
    end_us: int
    groups: tuple[frozenset[str], ...]

    def cuts(self, a: str, b: str, now_us: int) -> bool:
        if not self.start_us <= now_us < self.end_us:
            return False
        ga = next((i for i, g in enumerate(self.groups) if a in g), -1)
        gb = next((i for i, g in enumerate(self.groups) if b in g), -1)
        return ga != gb


@dataclass(slots=True)
class NodeStats:
    sent: int = 0
    sent_bytes: int = 0
    received: int = 0
    received_bytes: int = 0


@dataclass(slots=True)
class NetStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    partitioned: int = 0
    bytes: int = 0
    #: messages lost because the destination was down (crashed)
    down: int = 0
    per_node: dict[str, NodeStats] = field(default_factory=dict)

    def node(self, name: str) -> NodeStats:
        st = self.per_node.get(name)
        if st is None:
            st = self.per_node[name] = NodeStats()
        return st


@dataclass(frozen=True, slots=True)
class Outage:
    """``node`` is down during ``[start_us, end_us)``."""

    node: str
    start_us: int
    end_us: int


@dataclass(frozen=True, slots=True)
class Slowdown:
    """Messages from or to ``node`` take ``extra_us`` longer during ``[start_us, end_us)``."""

    node: str
    start_us: int
    end_us: int
    extra_us: int


@dataclass(order=True, slots=True)
class _Event:
    at_us: int
    order: int
    kind: str = field(compare=False)
    node: str = field(compare=False)
    payload: Any = field(compare=False)


class SimNet:
    """Actors on a virtual clock over a lossy, seeded network (see module docstring)."""

    def __init__(
        self,
        seed: int,
        link: LinkModel | None = None,
        partitions: Sequence[Partition] = (),
    ) -> None:
        self.rng = random.Random(seed)
        self.link = link or LinkModel()
        self.partitions = list(partitions)
        self.now_us = 0
        self.stats = NetStats()
        self._actors: dict[str, Actor] = {}
        self._queue: list[_Event] = []
        self._order = 0
        self._outages: list[Outage] = []
        self._slow: list[Slowdown] = []

    def crash(self, node: str, at_us: int, restart_us: int) -> None:
        """Take ``node`` down during ``[at_us, restart_us)`` (see module docstring)."""
        if restart_us <= at_us:
            raise ValueError("restart must come after the crash")
        self._outages.append(Outage(node, at_us, restart_us))
        self._push(at_us, "crash", node, None)
        self._push(restart_us, "restart", node, None)

    def slow(self, node: str, start_us: int, end_us: int, extra_us: int) -> None:
        """Delay every message from or to ``node`` by ``extra_us`` during the interval."""
        self._slow.append(Slowdown(node, start_us, end_us, extra_us))

    def is_down(self, node: str, now_us: int) -> bool:
        return any(o.node == node and o.start_us <= now_us < o.end_us for o in self._outages)

    def _down_until(self, node: str, now_us: int) -> int | None:
        ends = [
            o.end_us for o in self._outages if o.node == node and o.start_us <= now_us < o.end_us
        ]
        return max(ends) if ends else None

    def _extra_delay(self, src: str, dst: str) -> int:
        now = self.now_us
        return sum(
            s.extra_us for s in self._slow if s.node in (src, dst) and s.start_us <= now < s.end_us
        )

    def add(self, name: str, actor: Actor) -> None:
        if name in self._actors:
            raise ValueError(f"duplicate node name {name!r}")
        self._actors[name] = actor

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self._actors)

    def actor(self, name: str) -> Actor:
        return self._actors[name]

    def _push(self, at_us: int, kind: str, node: str, payload: Any) -> None:
        self._order += 1
        heapq.heappush(self._queue, _Event(at_us, self._order, kind, node, payload))

    def schedule(self, at_us: int, node: str, fn: Callable[[int], list[Action]]) -> None:
        """Run ``fn(now)`` as if inside ``node`` at ``at_us`` (scenario injection)."""
        self._push(at_us, "call", node, fn)

    def _delay(self) -> int:
        lk = self.link
        d = lk.base_delay_us + int(self.rng.expovariate(1.0) * lk.jitter_us)
        if lk.tail and self.rng.random() < lk.tail:
            d += int(self.rng.expovariate(1.0) * lk.tail_us)
        return d

    def _transmit(self, src: str, dst: str, topic: str, data: bytes) -> None:
        self.stats.sent += 1
        self.stats.bytes += len(data)
        ns = self.stats.node(src)
        ns.sent += 1
        ns.sent_bytes += len(data)
        if any(p.cuts(src, dst, self.now_us) for p in self.partitions):
            self.stats.partitioned += 1
            return
        if self.link.loss and self.rng.random() < self.link.loss:
            self.stats.lost += 1
            return
        copies = 2 if self.link.duplicate and self.rng.random() < self.link.duplicate else 1
        self.stats.duplicated += copies - 1
        extra = self._extra_delay(src, dst) if self._slow else 0
        for _ in range(copies):
            self._push(self.now_us + self._delay() + extra, "msg", dst, (src, topic, data))

    def _apply(self, node: str, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Timer):
                self._push(max(a.at_us, self.now_us), "timer", node, a.token)
            elif isinstance(a, Send):
                if a.dst in self._actors and a.dst != node:
                    self._transmit(node, a.dst, a.topic, a.data)
            else:
                for dst in self._actors:
                    if dst != node:
                        self._transmit(node, dst, a.topic, a.data)

    def start(self) -> None:
        for name, actor in self._actors.items():
            self._apply(name, actor.start(self.now_us))

    def run_until(self, end_us: int, *, max_events: int = 50_000_000) -> int:
        """Process events up to ``end_us`` (bounded); returns the number processed."""
        n = 0
        while self._queue and self._queue[0].at_us <= end_us:
            if n >= max_events:
                raise RuntimeError(f"simulation exceeded {max_events} events")
            ev = heapq.heappop(self._queue)
            self.now_us = ev.at_us
            actor = self._actors[ev.node]
            n += 1
            if self._outages and ev.kind not in ("crash", "restart"):
                until = self._down_until(ev.node, self.now_us)
                if until is not None:
                    if ev.kind == "call":  # durable work waits for the restart
                        self._push(until, "call", ev.node, ev.payload)
                    elif ev.kind == "msg":
                        self.stats.down += 1
                    continue
            if ev.kind == "msg":
                src, topic, data = ev.payload
                self.stats.delivered += 1
                rs = self.stats.node(ev.node)
                rs.received += 1
                rs.received_bytes += len(data)
                out = actor.on_message(src, topic, data, self.now_us)
            elif ev.kind == "timer":
                out = actor.on_timer(ev.payload, self.now_us)
            elif ev.kind == "crash":
                hook = getattr(actor, "on_crash", None)
                out = hook(self.now_us) if hook is not None else []
            elif ev.kind == "restart":
                hook = getattr(actor, "on_restart", None)
                out = hook(self.now_us) if hook is not None else []
            else:
                out = ev.payload(self.now_us)
            self._apply(ev.node, out)
        self.now_us = max(self.now_us, end_us)
        return n
