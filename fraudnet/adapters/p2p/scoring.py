"""GossipSub peer scoring of the signals network: parameters, the graylist gate, accounting.

Theory of operation (the protocol side is in ``docs/protocol.md``, "Peer scoring"):

* Only P4 (invalid messages) is used. Every message a peer forwards that our
  validator REJECTs adds 1 to that peer's invalid-message counter on the topic;
  the topic score is ``-P4_WEIGHT * min(counter, P4_CAP)`` and the counter decays
  by half every :data:`P4_HALF_LIFE_S` (applied per heartbeat). IGNORE outcomes
  never count (GossipSub v1.1: an honest relay may forward something merely
  stale or duplicate).
* **Author responsibility.** When the forwarding peer is also the libp2p
  originator of the message (``from_id == forwarder``), the peer authored it,
  and an honest author never publishes a replayed, stale, future-dated or
  over-quota envelope of its own (it flushes at most ``1000 / flush_interval_ms``
  envelopes a second, which settings keep under the per-member quota). Those
  IGNORE reasons are therefore escalated to REJECT for the author only
  (:data:`AUTHOR_FAULTS`, counter ``p2p_author_penalised``); relays keep IGNORE.
* **Relays and the roster view.** ``unknown_signer`` and ``bad_signature`` depend
  on which roster version this node has adopted: a relay that adopted a newer one
  (a member added, a key rotated) forwards such envelopes honestly. They penalise
  only the author; a relay gets IGNORE (``p2p_relay_excused``). StrictSign makes
  the author unforgeable (``from`` signs the message), so a hostile peer's own
  envelopes are always its own fault.
* **Graylist.** A peer whose score is below :data:`GRAYLIST_THRESHOLD` is
  graylisted: :class:`GatedPubsub` drops every message it forwards *before*
  validation -- before the libp2p signature check and our validator -- and
  counts it (``p2p_dropped_graylisted``). ``publish_threshold`` equals the
  graylist threshold so py-libp2p's own gate agrees, and we neither gossip to
  (``GOSSIP_THRESHOLD``) nor publish to a peer below them.
* **Ban.** Dropping still costs py-libp2p's receive path (~1 ms a message), so
  :meth:`fraudnet.adapters.p2p.host.HostRuntime.watch_scores` also disconnects a
  newly graylisted member and refuses it for 60 s, doubling per repeat up to 1 h
  (``p2p_peers_banned``, ``p2p_conn_refused_banned``).
* With weight 10 the 9th REJECT graylists a peer (score -90 < -80). A steady
  flooder still connected (e.g. a relay the ban does not cover) decays from 9 to 8
  invalid messages in ``log2(9/8) * 60 s`` ~ 10 s, when one more of its messages
  is validated and re-graylists it: about one validation per 10 s whatever its
  rate. A banned flooder costs 9 validations per ban (its score restarts at 0).

Everything here runs on the trio thread except :meth:`ScoreWatch.snapshot`
readers, which only read a dict replaced atomically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.pubsub.validators import signature_validator

__all__ = [
    "AUTHOR_FAULTS",
    "GOSSIP_THRESHOLD",
    "GRAYLIST_THRESHOLD",
    "P4_CAP",
    "P4_HALF_LIFE_S",
    "P4_WEIGHT",
    "ROSTER_VIEW",
    "GatedPubsub",
    "ScoreWatch",
    "score_params",
]

P4_WEIGHT: Final = 10.0
P4_CAP: Final = 100.0
P4_HALF_LIFE_S: Final = 60.0
GOSSIP_THRESHOLD: Final = -40.0
GRAYLIST_THRESHOLD: Final = -80.0
#: validator IGNORE reasons that are the *author's* fault (escalated to REJECT for it)
AUTHOR_FAULTS: Final = frozenset({"replay", "expired", "clock_skew", "rate_limited"})
#: REJECT reasons that depend on this node's view of the roster: a relay whose roster is
#: newer (a member added, a key rotated) forwards such envelopes honestly, so only their
#: author is penalised; a relay gets IGNORE
ROSTER_VIEW: Final = frozenset({"unknown_signer", "bad_signature"})


def score_params(heartbeat_s: float) -> ScoreParams:
    """The signals network's peer-score parameters for a heartbeat of ``heartbeat_s``."""
    decay = 0.5 ** (heartbeat_s / P4_HALF_LIFE_S)
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=P4_WEIGHT, cap=P4_CAP, decay=decay),
        publish_threshold=GRAYLIST_THRESHOLD,
        gossip_threshold=GOSSIP_THRESHOLD,
        graylist_threshold=GRAYLIST_THRESHOLD,
    )


class GatedPubsub(Pubsub):
    """``Pubsub`` that drops (and counts) messages forwarded by graylisted peers first,
    and penalises a forwarder whose message fails the libp2p StrictSign check.

    py-libp2p drops a badly signed message silently, so a peer could otherwise make
    us verify signatures forever without ever being scored; an honest relay checked
    the signature before forwarding, so a bad one is the forwarder's fault. Valid
    messages are verified twice (here and upstream): one Ed25519 check more.
    """

    def __init__(
        self,
        *args: Any,
        counters: dict[str, int],
        penalise: Callable[[ID, str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._fn_counters = counters
        self.penalise = penalise

    async def push_msg(self, msg_forwarder: ID, msg: Any) -> None:
        scorer = getattr(self.router, "scorer", None)
        if msg_forwarder != self.host.get_id():
            topics = list(msg.topicIDs)
            if scorer is not None and scorer.is_graylisted(msg_forwarder, topics):
                self._fn_counters["p2p_dropped_graylisted"] += 1
                return
            if self.strict_signing and not signature_validator(msg):
                self._fn_counters["p2p_bad_message_signature"] += 1
                if self.penalise is not None:
                    for topic in topics:
                        self.penalise(msg_forwarder, topic)
                return
        await super().push_msg(msg_forwarder, msg)


class ScoreWatch:
    """Per-heartbeat snapshot of the members' scores and when each was first graylisted."""

    def __init__(self, names: Mapping[ID, str], clock: Callable[[], float] = time.time) -> None:
        self.names = dict(names)
        self._clock = clock
        self.scores: dict[str, float] = {}
        self.first_graylisted: dict[str, float] = {}
        #: the lowest score each member reached (how deep a graylisting went)
        self.lowest: dict[str, float] = {}
        self.graylisted: frozenset[str] = frozenset()

    def update(self, scorer: Any, topic: str) -> None:
        """Recompute on the trio thread; readers see whole dicts (atomic assignment)."""
        scores = {name: float(scorer.score(pid, [topic])) for pid, name in self.names.items()}
        gray = frozenset(n for n, s in scores.items() if s < GRAYLIST_THRESHOLD)
        now = self._clock()
        for n in gray - self.graylisted:
            self.first_graylisted.setdefault(n, now)
        for n, v in scores.items():
            if v < self.lowest.get(n, 0.0):
                self.lowest[n] = v
        self.scores, self.graylisted = scores, gray

    def snapshot(self) -> dict[str, float]:
        return dict(self.scores)
