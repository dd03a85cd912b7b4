"""The p2p thread and its narrow bridge to the node's asyncio side.

Theory of operation::

    asyncio (Faust node)                     p2p thread (trio.run)
    --------------------                     ---------------------
    publish_nowait(signals) --run_sync_soon--> SignalBatcher.offer   (bounded)
                                              flush task: one envelope / flush interval
                                              GossipSub publish
    publish_nowait(topic, data) -run_sync_soon-> raw channel (64) -> GossipSub publish
    on_signals(payload)  <--call_soon_threadsafe-- topic validator ACCEPT
    on_message(origin, data) <-call_soon_threadsafe- registered topic validator ACCEPT
                                              (bounded: inbound_queue in flight, shared)

Registered topics (:meth:`P2PService.register_topic`, before :meth:`start`):
the service bounds the size, applies a per-origin token bucket (over the
rate: IGNORE, not penalised), then runs the component's validator on the
trio thread (cheap, must not raise; ACCEPT / REJECT -- penalises the
forwarding peer -- / IGNORE per GossipSub v1.1) and hands accepted messages
to the component on the asyncio loop through the same bounded bridge.

Rules:

1. Into trio only through ``TrioToken.run_sync_soon``; back to asyncio only
   through ``loop.call_soon_threadsafe`` (or, with no loop, a direct call on
   the p2p thread for tests and benchmarks).
2. Queues are bounded. Outbound: the batcher holds ``outbound_pending``
   signals; when full, new signals are dropped (drop-newest,
   ``signals_batch_dropped``). Inbound: at most ``inbound_queue`` envelopes
   may wait for the asyncio loop; beyond that new ones are dropped
   (``p2p_inbound_dropped``). A stopped service drops and counts
   (``p2p_outbound_dropped_stopped``).
3. Bridge methods and callbacks never raise; failures are counted
   (``p2p_callback_errors``) and logged.
4. :meth:`P2PService.stop` persists state, cancels the trio run and joins the
   thread; no thread outlives the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import msgpack
import multiaddr
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p.tools.anyio_service import background_trio_service

from fraudnet.core import crypto
from fraudnet.core.signals import (
    NetworkKeyring,
    Outcome,
    Signal,
    SignalBatcher,
    SignalPayload,
    ValidationConfig,
    Validator,
    seal,
)
from fraudnet.errors import ConfigError, UnavailableError

from . import files
from .host import HostRuntime, TopicValidatorFn
from .settings import P2PSettings

__all__ = ["P2PService"]

log = logging.getLogger("fraudnet.p2p")
SEQ_BLOCK = 1000

_COUNTERS = (
    "p2p_published_envelopes",
    "p2p_published_signals",
    "p2p_publish_errors",
    "p2p_received_envelopes",
    "p2p_rejects_forwarded",
    "p2p_validator_errors",
    "p2p_inbound_dropped",
    "p2p_outbound_dropped_stopped",
    "p2p_callback_errors",
    "p2p_conn_refused_not_member",
    "p2p_dials",
    "p2p_dials_ok",
    "p2p_dials_failed",
    "p2p_state_writes",
    "p2p_raw_dropped",
    "p2p_topic_accepted",
    "p2p_topic_rejected",
    "p2p_topic_ignored",
    "p2p_topic_oversize",
    "p2p_topic_rate_limited",
    "p2p_validations",
    "p2p_dropped_graylisted",
    "p2p_author_penalised",
    "p2p_relay_excused",
    "p2p_bad_message_signature",
    "p2p_peers_banned",
    "p2p_conn_refused_banned",
)


@dataclass(slots=True)
class _Topic:
    name: str
    validate: TopicValidatorFn
    on_message: Callable[[str, bytes], None]
    max_bytes: int
    rate_per_s: float
    burst: float
    buckets: dict[str, tuple[float, float]]


class P2PService:
    """A libp2p GossipSub member in its own thread (see module docstring)."""

    def __init__(
        self,
        settings: P2PSettings,
        node_key: Ed25519PrivateKey,
        keyring: NetworkKeyring,
        on_signals: Callable[[SignalPayload], None],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Callable[[], float] = time.time,
        is_allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self._key = node_key
        self._on_signals = on_signals
        self._loop = loop
        self._clock = clock
        own = crypto.public_bytes(node_key)
        names = [n for n, pk in settings.members.items() if pk == own]
        if not names:
            raise ConfigError("p2p.members: this node's public key is not listed as a member")
        self.member_id = names[0]
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.validator = Validator(
            settings.network_id,
            settings.members,
            ValidationConfig(
                max_skew_us=settings.max_skew_ms * 1000,
                max_age_us=settings.max_age_ms * 1000,
                rate_per_s=settings.member_rate_per_s,
                burst=settings.member_burst,
            ),
            accepted_epochs=keyring.accepted_epochs,
        )
        self._state_dir = settings.state_dir
        next_seq = 0
        if self._state_dir is not None:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            next_seq = files.read_seq(self._state_dir)
            snap = files.read_replay_state(self._state_dir)
            if snap is not None:
                try:
                    self.validator.restore(snap)
                except ValueError as e:
                    path = self._state_dir / files.REPLAY_FILE
                    raise ConfigError(f"{path}: {e}") from None
        self._reserved = next_seq
        self.batcher = SignalBatcher(
            settings.network_id,
            self.member_id,
            next_seq=next_seq,
            flush_interval_us=settings.flush_interval_ms * 1000,
            max_pending=settings.outbound_pending,
        )
        self.runtime = HostRuntime(
            settings, node_key, self.validator, self.counters, self._accepted, clock,
            is_allowed=is_allowed,
        )  # fmt: skip
        self._topics: dict[str, _Topic] = {}
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._replay_dirty = False
        self.address = ""

    # -- lifecycle --------------------------------------------------------
    def start(self, timeout: float = 20.0) -> str:
        """Start the thread; return the full ``/ip4/.../tcp/.../p2p/...`` address."""
        if self._thread is not None:
            raise UnavailableError("p2p service already started")
        self._thread = threading.Thread(target=self._run, name="fraudnet-p2p", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise UnavailableError(
                f"p2p host did not start on {self.settings.listen}: {self._error or 'timeout'}"
            )
        return self.address

    def stop(self, timeout: float = 20.0) -> None:
        """Persist state, stop the host and join the thread (idempotent)."""
        thread = self._thread
        if thread is None:
            return
        token, cancel = self._token, self._cancel
        if token is not None and cancel is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(cancel.cancel)
        thread.join(timeout)
        if thread.is_alive():
            raise UnavailableError("p2p thread did not stop in time")
        self._thread = None

    def register_topic(
        self,
        topic: str,
        validate: TopicValidatorFn,
        on_message: Callable[[str, bytes], None],
        *,
        max_bytes: int = 64 * 1024,
        rate_per_s: float = 200.0,
        burst: float = 1000.0,
    ) -> None:
        """Carry ``topic`` too (call before :meth:`start`).

        ``validate(origin_peer_id, data)`` runs on the trio thread for every
        message not from this node, after the size bound and the per-origin
        token bucket (``rate_per_s``/``burst``; over: IGNORE); it must be cheap
        and never raise (an exception counts as REJECT). Accepted messages are
        forwarded by GossipSub and delivered as ``on_message(origin, data)`` on
        the asyncio loop (bounded by ``inbound_queue``; beyond it dropped and
        counted). Own publications are not delivered back.
        """
        if self._thread is not None:
            raise UnavailableError("register_topic after start()")
        if topic == self.settings.topic or topic in self._topics:
            raise ConfigError(f"p2p topic {topic!r} registered twice")
        t = _Topic(topic, validate, on_message, max_bytes, rate_per_s, burst, {})
        self._topics[topic] = t
        self.runtime.extra_topics[topic] = lambda origin, data: self._check_topic(t, origin, data)

    def _check_topic(self, t: _Topic, origin: str, data: bytes) -> Outcome:
        if len(data) > t.max_bytes:
            self.counters["p2p_topic_oversize"] += 1
            self.counters["p2p_topic_rejected"] += 1
            return Outcome.REJECT
        now = time.monotonic()
        tokens, last = t.buckets.get(origin, (t.burst, now))
        tokens = min(t.burst, tokens + (now - last) * t.rate_per_s)
        if tokens < 1.0:
            t.buckets[origin] = (tokens, now)
            self.counters["p2p_topic_rate_limited"] += 1
            self.counters["p2p_topic_ignored"] += 1
            return Outcome.IGNORE
        t.buckets[origin] = (tokens - 1.0, now)
        outcome = t.validate(origin, data)
        if outcome is Outcome.ACCEPT:
            self.counters["p2p_topic_accepted"] += 1
            self._bridge(t.on_message, origin, data)
        elif outcome is Outcome.IGNORE:
            self.counters["p2p_topic_ignored"] += 1
        else:
            self.counters["p2p_topic_rejected"] += 1
        return outcome

    # -- bridge: asyncio -> trio -----------------------------------------
    @overload
    def publish_nowait(self, signals: Sequence[Signal], /) -> bool: ...
    @overload
    def publish_nowait(self, topic: str, data: bytes, /) -> bool: ...
    def publish_nowait(self, what: Sequence[Signal] | str, data: bytes | None = None) -> bool:
        """Publish (thread-safe, never blocks or raises).

        ``publish_nowait(signals)`` hands signals to the batcher (one sealed
        envelope per flush interval); ``publish_nowait(topic, data)`` publishes
        ``data`` as it is on a registered topic (or the signals topic), through
        a bounded channel of 64 (full: dropped, ``p2p_raw_dropped``).
        """
        if isinstance(what, str):
            if what != self.settings.topic and what not in self._topics:
                self.counters["p2p_publish_errors"] += 1
                return False
            return self._raw_nowait(what, bytes(data or b""))
        signals = what
        token = self._token
        if token is None or not signals:
            self.counters["p2p_outbound_dropped_stopped"] += len(signals)
            return False
        try:
            token.run_sync_soon(self._offer, tuple(signals))
        except trio.RunFinishedError:
            self.counters["p2p_outbound_dropped_stopped"] += len(signals)
            return False
        return True

    def publish_bytes_nowait(self, data: bytes) -> bool:
        """Publish already-sealed envelope bytes on the signals topic as they are.

        For tests that must put hostile bytes on the wire. Bounded (64
        waiting); never raises.
        """
        return self._raw_nowait(self.settings.topic, bytes(data))

    def _raw_nowait(self, topic: str, data: bytes) -> bool:
        token = self._token
        if token is None:
            self.counters["p2p_outbound_dropped_stopped"] += 1
            return False
        try:
            token.run_sync_soon(self._raw_offer, (topic, data))
        except trio.RunFinishedError:
            self.counters["p2p_outbound_dropped_stopped"] += 1
            return False
        return True

    def _raw_offer(self, item: tuple[str, bytes]) -> None:
        try:
            self._raw_send.send_nowait(item)
        except trio.WouldBlock:
            self.counters["p2p_raw_dropped"] += 1

    async def _raw_loop(self, pubsub: Any) -> None:
        async for topic, data in self._raw_recv:
            try:
                await pubsub.publish(topic, data)
            except Exception as e:
                self.counters["p2p_publish_errors"] += 1
                log.warning("raw publish failed: %s", e)

    def _offer(self, signals: tuple[Signal, ...]) -> None:
        for s in signals:
            self.batcher.offer(s)

    # -- bridge: trio -> asyncio -----------------------------------------
    def _accepted(self, payload: SignalPayload) -> None:
        self._replay_dirty = True
        self._bridge(self._on_signals, payload)

    def _bridge(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is None:
            self._deliver(fn, args, False)
            return
        with self._inflight_lock:
            if self._inflight >= self.settings.inbound_queue:
                self.counters["p2p_inbound_dropped"] += 1
                return
            self._inflight += 1
        try:
            self._loop.call_soon_threadsafe(self._deliver, fn, args, True)
        except RuntimeError:  # loop closed
            with self._inflight_lock:
                self._inflight -= 1
            self.counters["p2p_inbound_dropped"] += 1

    def _deliver(self, fn: Callable[..., None], args: tuple[Any, ...], counted: bool) -> None:
        if counted:
            with self._inflight_lock:
                self._inflight -= 1
        try:
            fn(*args)
        except Exception:
            self.counters["p2p_callback_errors"] += 1
            log.exception("p2p delivery callback failed")

    def set_members(self, members: dict[str, bytes]) -> None:
        """Replace the signal validator's member table (e.g. a roster change was adopted).

        Thread-safe: the new table is handed to the trio thread (or set directly
        when the service is not running); never raises.
        """
        table = dict(members)

        def swap() -> None:
            self.validator.members = table

        token = self._token
        if token is None:
            swap()
            return
        try:
            token.run_sync_soon(swap)
        except trio.RunFinishedError:
            swap()

    @property
    def native_thread_id(self) -> int | None:
        """OS id of the p2p thread (for per-thread CPU accounting), None when stopped."""
        t = self._thread
        return None if t is None else t.native_id

    def peer_scores(self) -> dict[str, float]:
        """Member id -> GossipSub score at the last heartbeat (thread-safe read)."""
        return self.runtime.watch.snapshot()

    def graylisted_at(self) -> dict[str, float]:
        """Member id -> clock time it was first graylisted (thread-safe read)."""
        return dict(self.runtime.watch.first_graylisted)

    def highest_seq(self, signer: str) -> int:
        """Highest sequence number accepted from ``signer`` (-1 if none)."""
        return self.validator.highest_seq(signer)

    # -- metrics ------------------------------------------------------------
    def metrics(self) -> dict[str, int]:
        """All counters (name -> int) for Prometheus export."""
        out = dict(self.counters)
        out.update(self.validator.counters)
        out.update(self.batcher.counters)
        out["p2p_connected_members"] = self.runtime.connected_peers()
        out["p2p_graylisted_peers"] = len(self.runtime.watch.graylisted)
        out["p2p_next_seq"] = self.batcher.next_seq
        return out

    # -- the trio thread ----------------------------------------------------
    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # reported to start(); the thread must end quietly
            self._error = e
            log.error("p2p thread ended with an error: %r", e)
        finally:
            self._token = None
            self._ready.set()

    async def _main(self) -> None:
        host, pubsub, gossipsub = self.runtime.build()
        self._raw_send, self._raw_recv = trio.open_memory_channel[tuple[str, bytes]](64)
        s = self.settings
        try:
            with trio.CancelScope() as cancel:
                self._cancel = cancel
                async with (
                    host.run(listen_addrs=[multiaddr.Multiaddr(s.listen)]),
                    background_trio_service(pubsub),
                    background_trio_service(gossipsub),
                    trio.open_nursery() as nursery,
                ):
                    await pubsub.wait_until_ready()
                    sub = await pubsub.subscribe(s.topic)
                    for topic in self._topics:
                        nursery.start_soon(self.runtime.drain, await pubsub.subscribe(topic))
                    self.address = f"{s.listen}/p2p/{host.get_id().to_base58()}"
                    nursery.start_soon(self.runtime.drain, sub)
                    nursery.start_soon(self.runtime.redial)
                    nursery.start_soon(self._flush_loop, pubsub)
                    nursery.start_soon(self._persist_loop)
                    nursery.start_soon(self._raw_loop, pubsub)
                    nursery.start_soon(self.runtime.watch_scores, gossipsub)
                    self._token = trio.lowlevel.current_trio_token()
                    self._ready.set()
                    await trio.sleep_forever()
        finally:
            self._token = None
            self._persist(force=True)
            pubsub.seen_messages.stop()  # py-libp2p starts a cleanup thread per cache

    async def _flush_loop(self, pubsub: Any) -> None:
        interval = self.settings.flush_interval_ms / 1000.0
        while True:
            await trio.sleep(interval)
            now_us = int(self._clock() * 1_000_000)
            try:
                epoch = self.keyring.current(now_us).epoch
            except ConfigError:
                continue
            payload = self.batcher.poll(now_us, epoch)
            if payload is None:
                continue
            if payload.seq >= self._reserved:
                self._reserve(payload.seq + SEQ_BLOCK)
            data = seal(self._key, payload)
            try:
                await pubsub.publish(self.settings.topic, data)
            except Exception as e:
                self.counters["p2p_publish_errors"] += 1
                log.warning("publish failed: %s", e)
                continue
            self.counters["p2p_published_envelopes"] += 1
            self.counters["p2p_published_signals"] += len(payload.signals)

    def _reserve(self, upto: int) -> None:
        if self._state_dir is not None:
            files.write_seq(self._state_dir, upto)
        self._reserved = upto

    async def _persist_loop(self) -> None:
        while True:
            await trio.sleep(1.0)
            self._persist()

    def _persist(self, *, force: bool = False) -> None:
        if self._state_dir is None or not (self._replay_dirty or force):
            return
        try:
            data = msgpack.packb(self.validator.snapshot(), use_bin_type=True)
            files.atomic_write(Path(self._state_dir) / files.REPLAY_FILE, data)
            self._replay_dirty = False
            self.counters["p2p_state_writes"] += 1
        except OSError as e:
            log.error("cannot persist p2p replay state: %s", e)
