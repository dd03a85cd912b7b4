"""The receive-side validation pipeline for signal envelopes (sans-IO).

Checks run cheapest first; the first failing check decides the outcome:

====  ======================  ========  ==========================================
step  check                   outcome   reason label
====  ======================  ========  ==========================================
1     size cap                REJECT    ``oversized``
2     envelope decode         REJECT    ``malformed``
3     version                 IGNORE    ``unsupported_version`` (newer peers)
3     network id              REJECT    ``wrong_network``
3     type tag                REJECT    ``wrong_type``
4     signer known            REJECT    ``unknown_signer``
5     signature               REJECT    ``bad_signature``
6     payload decode          REJECT    ``malformed_payload`` / ``header_mismatch``
6     key epoch               IGNORE    ``unknown_epoch``
7     clock-skew window       IGNORE    ``clock_skew`` (created in the future)
8     expiry                  IGNORE    ``expired`` (too old, or every signal expired)
9     sequence / replay       IGNORE    ``replay``
10    per-member rate quota   IGNORE    ``rate_limited``
====  ======================  ========  ==========================================

Outcomes follow GossipSub v1.1: REJECT means the message is invalid and the
forwarding peer is penalised; IGNORE drops it silently (honest forwarders can
relay a message that is merely stale, duplicate or over quota at this node).

Invariants:

1. State (replay window, quotas) changes only on ACCEPT, so a rejected or
   ignored message can never poison the replay cache or use up a quota.
2. A payload is decoded only after its bytes verified under the signer's key.
3. For every signer, an accepted ``seq`` was never accepted before, and is
   greater than ``highest - replay_window``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fraudnet.errors import SignalRejected

from .codec import SignalPayload, decode_envelope, decode_payload
from .envelope import verify_envelope

__all__ = ["REASONS", "Outcome", "ValidationConfig", "Validator", "Verdict"]


class Outcome(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"


#: every reason label the pipeline can produce (metrics are pre-registered at 0)
REASONS: tuple[tuple[Outcome, str], ...] = (
    (Outcome.REJECT, "oversized"),
    (Outcome.REJECT, "malformed"),
    (Outcome.IGNORE, "unsupported_version"),
    (Outcome.REJECT, "wrong_network"),
    (Outcome.REJECT, "wrong_type"),
    (Outcome.REJECT, "unknown_signer"),
    (Outcome.REJECT, "bad_signature"),
    (Outcome.REJECT, "malformed_payload"),
    (Outcome.REJECT, "header_mismatch"),
    (Outcome.IGNORE, "unknown_epoch"),
    (Outcome.IGNORE, "clock_skew"),
    (Outcome.IGNORE, "expired"),
    (Outcome.IGNORE, "replay"),
    (Outcome.IGNORE, "rate_limited"),
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of one message; ``payload`` is set (and expiry-filtered) only on ACCEPT."""

    outcome: Outcome
    reason: str
    payload: SignalPayload | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ValidationConfig:
    """Limits of the pipeline. Times in microseconds.

    ``max_skew_us``: how far in the future ``created_at`` may be.
    ``max_age_us``: how old an envelope may be when it arrives.
    ``replay_window``: how many sequence numbers below the highest are still
    accepted out of order. ``rate_per_s``/``burst``: per-member token bucket
    in envelopes.
    """

    max_skew_us: int = 2_000_000
    max_age_us: int = 60_000_000
    replay_window: int = 4096
    rate_per_s: float = 20.0
    burst: float = 40.0


class _Window:
    """Per-signer anti-replay window: highest seq and the seen seqs within the window."""

    __slots__ = ("highest", "seen")

    def __init__(self, highest: int = -1, seen: set[int] | None = None) -> None:
        self.highest = highest
        self.seen = seen if seen is not None else set()


class Validator:
    """Validates envelopes for one network; owns replay and quota state."""

    def __init__(
        self,
        network_id: str,
        members: Mapping[str, bytes],
        config: ValidationConfig | None = None,
        *,
        accepted_epochs: Any = None,
    ) -> None:
        """``members``: signer member id -> 32-byte Ed25519 public key.

        ``accepted_epochs``: callable ``now_us -> set of epochs`` (e.g.
        :meth:`NetworkKeyring.accepted_epochs`); ``None`` accepts any epoch.
        """
        self.network_id = network_id
        self.members = dict(members)
        self.config = config or ValidationConfig()
        self._accepted_epochs = accepted_epochs
        self._windows: dict[str, _Window] = {}
        self._tokens: dict[str, tuple[float, int]] = {}
        self.counters: dict[str, int] = {"signals_accepted": 0, "signals_envelopes_accepted": 0}
        for outcome, reason in REASONS:
            self.counters[f"signals_{outcome.value}_{reason}"] = 0

    # -- the pipeline ---------------------------------------------------
    def validate(self, data: bytes, now_us: int) -> Verdict:
        """Run the pipeline on received bytes; count and return the verdict. Never raises."""
        try:
            payload = self._check(data, now_us)
        except SignalRejected as e:
            outcome = Outcome.IGNORE if e.ignore else Outcome.REJECT
            self.counters[f"signals_{outcome.value}_{e.reason}"] += 1
            return Verdict(outcome, e.reason, None, e.detail)
        self.counters["signals_envelopes_accepted"] += 1
        self.counters["signals_accepted"] += len(payload.signals)
        return Verdict(Outcome.ACCEPT, "ok", payload)

    def _check(self, data: bytes, now_us: int) -> SignalPayload:
        cfg = self.config
        env = decode_envelope(data)  # 1-3: size, decode, version
        if env.network_id != self.network_id:
            raise SignalRejected("wrong_network", f"network {env.network_id!r}")
        if env.type != "signals":
            raise SignalRejected("wrong_type", f"type {env.type!r} on the signals topic")
        key = self.members.get(env.signer)
        if key is None:
            raise SignalRejected("unknown_signer", f"signer {env.signer!r}")
        if not verify_envelope(env, key):
            raise SignalRejected("bad_signature", f"signer {env.signer!r}")
        p = decode_payload(env.payload)
        if p.network_id != env.network_id or p.signer != env.signer:
            raise SignalRejected("header_mismatch", "payload network/signer differ from envelope")
        if self._accepted_epochs is not None and p.key_epoch not in self._accepted_epochs(now_us):
            raise SignalRejected("unknown_epoch", f"epoch {p.key_epoch}", ignore=True)
        if p.created_at_us > now_us + cfg.max_skew_us:
            raise SignalRejected(
                "clock_skew", f"created {p.created_at_us - now_us} µs ahead", ignore=True
            )
        if now_us - p.created_at_us > cfg.max_age_us:
            raise SignalRejected("expired", "envelope too old", ignore=True)
        live = tuple(s for s in p.signals if s.expires_at_us > now_us)
        if not live:
            raise SignalRejected("expired", "every signal has expired", ignore=True)
        win = self._windows.get(p.signer)
        if win is not None and (p.seq in win.seen or p.seq <= win.highest - cfg.replay_window):
            raise SignalRejected("replay", f"signer {p.signer!r} seq {p.seq}", ignore=True)
        tokens, last = self._tokens.get(p.signer, (cfg.burst, now_us))
        tokens = min(cfg.burst, tokens + max(0, now_us - last) * cfg.rate_per_s / 1e6)
        if tokens < 1.0:
            self._tokens[p.signer] = (tokens, now_us)
            raise SignalRejected("rate_limited", f"signer {p.signer!r}", ignore=True)
        # -- accepted: only now mutate state (invariant 1) --
        self._tokens[p.signer] = (tokens - 1.0, now_us)
        self._remember(p.signer, p.seq)
        if len(live) != len(p.signals):
            p = SignalPayload(p.network_id, p.signer, p.key_epoch, p.seq, p.created_at_us, live)
        return p

    def _remember(self, signer: str, seq: int) -> None:
        win = self._windows.setdefault(signer, _Window())
        win.seen.add(seq)
        if seq > win.highest:
            win.highest = seq
            floor = seq - self.config.replay_window
            if len(win.seen) > self.config.replay_window:
                win.seen = {s for s in win.seen if s > floor}

    # -- persistence ----------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Replay state as a msgpack-encodable value (persist it; restore at start)."""
        floor = {s: w.highest - self.config.replay_window for s, w in self._windows.items()}
        return {
            "v": 1,
            "windows": {
                s: [w.highest, sorted(x for x in w.seen if x > floor[s])]
                for s, w in self._windows.items()
            },
        }

    def restore(self, snap: Any) -> None:
        """Load a :meth:`snapshot`; :class:`ValueError` names the problem if malformed."""
        if not isinstance(snap, dict) or snap.get("v") != 1:
            raise ValueError("replay state: not a version-1 snapshot")
        windows = snap.get("windows")
        if not isinstance(windows, dict):
            raise ValueError("replay state: 'windows' must be a map")
        out: dict[str, _Window] = {}
        for signer, row in windows.items():
            if not (isinstance(signer, str) and isinstance(row, list) and len(row) == 2):
                raise ValueError(f"replay state: bad entry for {signer!r}")
            highest, seen = row
            if not (isinstance(highest, int) and isinstance(seen, list)):
                raise ValueError(f"replay state: bad entry for {signer!r}")
            if not all(isinstance(x, int) for x in seen):
                raise ValueError(f"replay state: bad seq list for {signer!r}")
            out[signer] = _Window(highest, set(seen))
        self._windows = out

    def highest_seq(self, signer: str) -> int:
        """Highest accepted sequence number of ``signer`` (-1 if none)."""
        w = self._windows.get(signer)
        return -1 if w is None else w.highest
