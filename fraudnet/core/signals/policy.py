"""What a node may share: threshold on local-only risk, and the signal budget.

Rules (issue 4, item 4):

1. A signal is offered only for a risk computed from the node's *local*
   evidence (features and model without network inputs): the caller passes
   that score. Members' signals must stay independent, or one false flag
   would echo through the network.
2. Only scores at or above ``threshold`` are signalled.
3. Budget: over the node's lifetime (and in every snapshot/restore cycle),
   ``signals_sent <= budget * transactions_seen + burst``.
4. An entity is re-signalled only after ``cooldown_us``, or sooner if its
   score rose by at least ``rescore_delta`` since its last signal.
5. A signal carries no per-transaction amount or timestamp: ``observed_at``
   is the decision time rounded down to ``time_granularity_us`` and the
   evidence counts are coarse (powers of two).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fraudnet.errors import ConfigError

from .codec import Signal, coarse_count

__all__ = ["SignalPolicy"]


@dataclass(slots=True)
class SignalPolicy:
    threshold: float = 0.8
    budget: float = 0.05
    burst: int = 5
    ttl_us: int = 24 * 3600 * 1_000_000
    cooldown_us: int = 3600 * 1_000_000
    rescore_delta: float = 0.1
    time_granularity_us: int = 60 * 1_000_000
    max_tracked: int = 500_000
    transactions_seen: int = 0
    signals_sent: int = 0
    _last: dict[tuple[str, bytes], tuple[int, float]] = field(default_factory=dict)
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "policy_below_threshold": 0,
            "policy_over_budget": 0,
            "policy_cooldown": 0,
            "policy_signalled": 0,
        }
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"signal policy: threshold {self.threshold} not in [0, 1]")
        if not 0.0 <= self.budget <= 1.0:
            raise ConfigError(f"signal policy: budget {self.budget} not in [0, 1]")
        if self.ttl_us <= 0 or self.time_granularity_us <= 0 or self.burst < 0:
            raise ConfigError("signal policy: ttl, granularity must be > 0 and burst >= 0")

    def note_transactions(self, n: int) -> None:
        """Count ``n`` locally decided transactions (they earn budget)."""
        self.transactions_seen += n

    def budget_left(self) -> int:
        return int(self.budget * self.transactions_seen) + self.burst - self.signals_sent

    def offer(
        self,
        kind: str,
        pseudonym: bytes,
        local_score: float,
        now_us: int,
        *,
        reasons: tuple[str, ...] = (),
        n_tx: int = 0,
        n_alerts: int = 0,
    ) -> Signal | None:
        """The signal to send for this entity now, or None (rules 1-5)."""
        if local_score < self.threshold:
            self.counters["policy_below_threshold"] += 1
            return None
        k = (kind, pseudonym)
        prev = self._last.get(k)
        if prev is not None:
            at, score = prev
            if now_us - at < self.cooldown_us and local_score < score + self.rescore_delta:
                self.counters["policy_cooldown"] += 1
                return None
        if self.budget_left() <= 0:
            self.counters["policy_over_budget"] += 1
            return None
        observed = now_us - now_us % self.time_granularity_us
        sig = Signal(
            kind=kind,
            pseudonym=pseudonym,
            score_milli=max(0, min(1000, round(local_score * 1000))),
            reasons=tuple(reasons[:4]),
            observed_at_us=observed,
            expires_at_us=observed + self.ttl_us,
            evidence=(coarse_count(n_tx), coarse_count(n_alerts)),
        )
        if prev is None and len(self._last) >= self.max_tracked:
            del self._last[next(iter(self._last))]
        self._last.pop(k, None)
        self._last[k] = (now_us, local_score)
        self.signals_sent += 1
        self.counters["policy_signalled"] += 1
        return sig

    def snapshot(self) -> dict[str, Any]:
        return {"v": 1, "tx": self.transactions_seen, "sent": self.signals_sent}

    def restore(self, snap: Any) -> None:
        if not (isinstance(snap, dict) and snap.get("v") == 1):
            raise ValueError("signal policy state: not a version-1 snapshot")
        tx, sent = snap.get("tx"), snap.get("sent")
        if not (isinstance(tx, int) and isinstance(sent, int) and tx >= 0 and sent >= 0):
            raise ValueError("signal policy state: 'tx' and 'sent' must be counts")
        self.transactions_seen, self.signals_sent = tx, sent
