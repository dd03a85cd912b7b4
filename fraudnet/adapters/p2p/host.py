"""The trio side: a py-libp2p host with GossipSub, run inside the p2p thread.

Everything here runs on the trio thread only; :mod:`.service` is the bridge.

Wire: TCP, ``/noise`` (the only security protocol offered), ``/yamux/1.0.0``
with ``/mplex/6.7.0`` as fallback, GossipSub ``/meshsub/1.2.0`` and
``/meshsub/1.1.0`` with StrictSign. Defaults of py-libp2p 0.8 changed here:

* heartbeat 120 s -> ``heartbeat_ms`` (0.7 s); adaptive gossip off (it would
  reset the heartbeat to 30-60 s);
* spam limit 10 msg/s per peer per topic -> members x (1000 / flush interval) x 2,
  since one forwarding peer relays every member's envelopes; our own per-member
  quota (validator step 10) is the real limit;
* eclipse protection needs 3 distinct IPs in the mesh -> off: membership is
  closed (only configured member peer ids may connect), so there is no open
  Sybil surface for it to guard, and nodes on one machine use 127.0.0.x;
* message ids are content addressed (SHA-256 of the envelope): py-libp2p's
  seqno restarts at ``time()`` on restart and would collide in seen-caches;
* the subscription queue (32 messages) is bypassed: accepted envelopes are
  handed to the bridge from the topic validator, the queue is only drained;
* peer scoring (P4 invalid messages, author responsibility, a graylist gate
  before validation) is configured by :mod:`.scoring`.

Only configured member peer ids may connect: ``Swarm.add_conn`` is gated, so
a connection of an outsider is closed after the Noise handshake (which proves
the peer id) and before pubsub ever learns of it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import multiaddr
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p import create_yamux_muxer_option, new_host
from libp2p.crypto.ed25519 import Ed25519PrivateKey as Lp2pPrivateKey
from libp2p.crypto.ed25519 import Ed25519PublicKey as Lp2pPublicKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub, get_content_addressed_msg_id
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from fraudnet.core.signals import Outcome, Validator

from .scoring import AUTHOR_FAULTS, ROSTER_VIEW, GatedPubsub, ScoreWatch, score_params
from .settings import P2PSettings

__all__ = ["BAN_MAX_S", "BAN_S", "HostRuntime", "TopicValidatorFn", "libp2p_keypair", "peer_id_of"]

#: first ban of a graylisted member, doubling per repeat up to BAN_MAX_S (seconds)
BAN_S = 60.0
BAN_MAX_S = 3600.0

#: a registered topic's validator: (origin peer id in base58, message bytes) -> outcome
TopicValidatorFn = Callable[[str, bytes], Outcome]

log = logging.getLogger("fraudnet.p2p")


def libp2p_keypair(key: Ed25519PrivateKey) -> KeyPair:
    """The node's Ed25519 key as a py-libp2p key pair (same identity)."""
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    priv = Lp2pPrivateKey.from_bytes(seed)
    return KeyPair(priv, priv.get_public_key())


def peer_id_of(public_key: bytes) -> ID:
    """The libp2p peer id of a 32-byte Ed25519 public key."""
    return ID.from_pubkey(Lp2pPublicKey.from_bytes(public_key))


class HostRuntime:
    """Owns the libp2p objects; all methods run on the trio thread."""

    def __init__(
        self,
        settings: P2PSettings,
        key: Ed25519PrivateKey,
        validator: Validator,
        counters: dict[str, int],
        on_accept: Callable[[Any], None],
        clock: Callable[[], float] = time.time,
        *,
        is_allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.validator = validator
        self.counters = counters
        self.on_accept = on_accept
        self.clock = clock
        self.keypair = libp2p_keypair(key)
        self.my_id = ID.from_pubkey(self.keypair.public_key)
        self.allowed = {peer_id_of(pk) for pk in settings.members.values()}
        self._is_allowed = is_allowed
        #: topic -> validator(origin peer id (base58), data) for the extra topics
        self.extra_topics: dict[str, TopicValidatorFn] = {}
        self.pubsub: Pubsub | None = None
        self.host: Any = None
        self.address = ""
        self._ignore_pending = False
        self._rng = random.Random(int.from_bytes(self.my_id.to_bytes()[-8:], "big"))
        #: peer -> (trio time the ban ends, number of bans so far); see watch_scores
        self.bans: dict[ID, tuple[float, int]] = {}
        self.watch = ScoreWatch(
            {peer_id_of(pk): name for name, pk in settings.members.items()}, clock
        )

    # -- construction ---------------------------------------------------
    def build(self) -> tuple[Any, Pubsub, GossipSub]:
        s = self.settings
        noise = NoiseTransport(self.keypair, noise_privkey=create_x25519_key_pair().private_key)
        host = new_host(
            key_pair=self.keypair,
            sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_opt=create_yamux_muxer_option(),
            listen_addrs=[multiaddr.Multiaddr(s.listen)],
        )
        swarm: Any = host.get_network()
        original_add_conn = swarm.add_conn

        async def gated_add_conn(muxed_conn: Any, direction: str = "unknown") -> Any:
            if not self.allows(muxed_conn.peer_id):
                self.counters["p2p_conn_refused_not_member"] += 1
                await muxed_conn.close()
                raise SwarmException("peer is not a configured member")
            if self.is_banned(muxed_conn.peer_id):
                self.counters["p2p_conn_refused_banned"] += 1
                await muxed_conn.close()
                raise SwarmException("peer is banned after being graylisted")
            return await original_add_conn(muxed_conn, direction)

        swarm.add_conn = gated_add_conn
        per_node = max(1.0, 1000.0 / s.flush_interval_ms)
        direct = []
        if s.direct:
            direct = [info_from_p2p_addr(multiaddr.Multiaddr(p)) for p in s.peers]
            direct = [i for i in direct if i.peer_id != self.my_id and self.allows(i.peer_id)]
        gossipsub = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
            direct_peers=direct,
            direct_connect_interval=3600,  # our redial task keeps the connections
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=s.heartbeat_ms / 1000.0,  # type: ignore[arg-type]  # float works
            heartbeat_initial_delay=0.1,
            adaptive_gossip_enabled=False,
            spam_protection_enabled=True,
            max_messages_per_topic_per_second=max(200.0, 2.0 * per_node * max(2, len(s.members))),
            eclipse_protection_enabled=False,
            min_mesh_diversity_ips=1,
            score_params=score_params(s.heartbeat_ms / 1000.0),
        )
        assert gossipsub.scorer is not None
        scorer = gossipsub.scorer
        original_invalid = scorer.on_invalid_message

        def on_invalid(peer: ID, topic: str) -> None:
            # IGNORE must not penalise the forwarder (GossipSub v1.1): the validator
            # sets the flag just before py-libp2p calls this, with no await between.
            if self._ignore_pending:
                self._ignore_pending = False
                return
            original_invalid(peer, topic)

        scorer.on_invalid_message = on_invalid  # type: ignore[method-assign]
        pubsub = GatedPubsub(
            host,
            gossipsub,
            counters=self.counters,
            strict_signing=True,
            msg_id_constructor=get_content_addressed_msg_id,
            allowed_topics={s.topic, *self.extra_topics},
            max_inbound_rpc_size=256 * 1024,
            # no validation cache: a cached failure is re-raised without calling our
            # validator, so py-libp2p would penalise every relay of a copy of an
            # IGNOREd message (the IGNORE flag is set only by a real validation), and
            # accepted messages are deduplicated by the seen-cache anyway
            validation_cache_ttl=0,
        )
        pubsub.penalise = original_invalid  # a bad libp2p signature is always a REJECT
        pubsub.set_topic_validator(s.topic, self._validate, False)
        for topic, fn in self.extra_topics.items():
            pubsub.set_topic_validator(topic, self._make_validator(topic, fn), False)
        self.host, self.pubsub = host, pubsub
        return host, pubsub, gossipsub

    # -- validation (called by py-libp2p; must never raise) --------------
    def _validate(self, forwarder: ID, msg: Any) -> bool:
        self._ignore_pending = False
        try:
            if forwarder == self.my_id:
                return True  # our own publish: signed by us just now
            now_us = int(self.clock() * 1_000_000)
            self.counters["p2p_validations"] += 1
            verdict = self.validator.validate(bytes(msg.data), now_us)
            if verdict.outcome is Outcome.ACCEPT:
                self.counters["p2p_received_envelopes"] += 1
                self.on_accept(verdict.payload)
                return True
            authored = bytes(msg.from_id) == forwarder.to_bytes()
            if verdict.outcome is Outcome.REJECT and verdict.reason in ROSTER_VIEW and not authored:
                # a relay with a newer roster forwards this honestly: IGNORE, see .scoring
                self.counters["p2p_relay_excused"] += 1
                self._ignore_pending = True
                return False
            if verdict.outcome is Outcome.IGNORE:
                if verdict.reason in AUTHOR_FAULTS and authored:
                    # the forwarder authored it: its own stale/replayed/future/over-quota
                    # envelope is its fault, so REJECT (penalise) -- see .scoring
                    self.counters["p2p_author_penalised"] += 1
                    self.counters["p2p_rejects_forwarded"] += 1
                    return False
                self._ignore_pending = True
            else:
                self.counters["p2p_rejects_forwarded"] += 1
            return False
        except Exception:
            self.counters["p2p_validator_errors"] += 1
            log.exception("signal validator failed")
            return False

    def _make_validator(self, topic: str, fn: TopicValidatorFn) -> Callable[[ID, Any], bool]:
        def validate(forwarder: ID, msg: Any) -> bool:
            self._ignore_pending = False
            try:
                if forwarder == self.my_id:
                    return True  # our own publish
                origin = ID(bytes(msg.from_id)).to_base58()
                if not self.allows_base58(origin):
                    self.counters["p2p_rejects_forwarded"] += 1
                    return False
                outcome = fn(origin, bytes(msg.data))
                if outcome is Outcome.ACCEPT:
                    return True
                if outcome is Outcome.IGNORE:
                    self._ignore_pending = True
                else:
                    self.counters["p2p_rejects_forwarded"] += 1
                return False
            except Exception:
                self.counters["p2p_validator_errors"] += 1
                log.exception("validator of topic %s failed", topic)
                return False

        return validate

    def allows(self, peer: ID) -> bool:
        """May ``peer`` connect (roster gate when configured, else the members table)?"""
        if self._is_allowed is not None:
            return self._is_allowed(peer.to_base58())
        return peer in self.allowed

    def allows_base58(self, peer: str) -> bool:
        if self._is_allowed is not None:
            return self._is_allowed(peer)
        try:
            return ID.from_base58(peer) in self.allowed
        except Exception:
            return False

    # -- background tasks -----------------------------------------------
    async def drain(self, subscription: Any) -> None:
        """Empty the subscription queue (delivery already happened in the validator)."""
        while True:
            await subscription.get()

    async def redial(self) -> None:
        """Keep a connection to every configured peer; back off exponentially on failure."""
        s = self.settings
        infos = [info_from_p2p_addr(multiaddr.Multiaddr(p)) for p in s.peers]
        infos = [i for i in infos if i.peer_id != self.my_id and self.allows(i.peer_id)]
        backoff = {i.peer_id: s.redial_min_ms / 1000.0 for i in infos}
        next_try = {i.peer_id: 0.0 for i in infos}
        while True:
            now = trio.current_time()
            for info in infos:
                pid = info.peer_id
                if self.host.get_network().get_connections(pid):
                    backoff[pid] = s.redial_min_ms / 1000.0
                    continue
                if now < next_try[pid] or self.is_banned(pid):
                    continue
                self.counters["p2p_dials"] += 1
                ok = False
                with trio.move_on_after(5.0):
                    try:
                        await self.host.connect(info)
                        ok = True
                    except Exception as e:
                        log.debug("dial %s failed: %s", pid, e)
                if ok:
                    self.counters["p2p_dials_ok"] += 1
                    backoff[pid] = s.redial_min_ms / 1000.0
                else:
                    self.counters["p2p_dials_failed"] += 1
                    delay = backoff[pid] * (0.8 + 0.4 * self._rng.random())
                    next_try[pid] = trio.current_time() + delay
                    backoff[pid] = min(s.redial_max_ms / 1000.0, backoff[pid] * 2)
            await trio.sleep(0.1)

    async def watch_scores(self, gossipsub: GossipSub) -> None:
        """Once per heartbeat: snapshot scores; ban and disconnect newly graylisted peers.

        Dropping a graylisted peer's messages before validation still leaves
        py-libp2p's per-message receive cost (~1 ms: framing, protobuf, the
        signed peer record). So a graylisted peer is also disconnected and
        refused (after its Noise handshake) for ``BAN_S * 2**(bans-1)`` seconds,
        at most ``BAN_MAX_S``; nobody redials it meanwhile. Disconnecting resets
        its py-libp2p score, so after a ban it starts again from 0.
        """
        names = {name: pid for pid, name in self.watch.names.items()}
        while True:
            await trio.sleep(self.settings.heartbeat_ms / 1000.0)
            if gossipsub.scorer is None:
                continue
            before = self.watch.graylisted
            self.watch.update(gossipsub.scorer, self.settings.topic)
            for name in self.watch.graylisted - before:
                pid = names[name]
                _, n = self.bans.get(pid, (0.0, 0))
                length = min(BAN_MAX_S, BAN_S * 2**n)
                self.bans[pid] = (trio.current_time() + length, n + 1)
                self.counters["p2p_peers_banned"] += 1
                log.warning(
                    "member %s graylisted: disconnected and banned for %.0f s", name, length
                )
                with trio.move_on_after(5.0):
                    try:
                        await self.host.get_network().close_peer(pid)
                    except Exception as e:  # already gone
                        log.debug("closing %s: %s", pid, e)

    def is_banned(self, peer: ID) -> bool:
        ban = self.bans.get(peer)
        return ban is not None and trio.current_time() < ban[0]

    def connected_peers(self) -> int:
        if self.host is None:
            return 0
        net = self.host.get_network()
        return sum(1 for pid in list(net.connections) if pid != self.my_id and self.allows(pid))

    def mesh_size(self, gossipsub: GossipSub) -> int:
        return len(gossipsub.mesh.get(self.settings.topic, ()))
