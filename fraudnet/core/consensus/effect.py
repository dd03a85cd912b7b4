"""What a network verdict does to a node's decision (pure).

Until the model has network features, the node applies the verdict on a
transaction's card to the local decision after scoring (issue 6, item 5):

====================  ===============================================  ===========================
verdict level         outcome                                          reason code added
====================  ===============================================  ===========================
``block``             ``block``                                        ``network_verdict_block``
``step-up``           at least ``review`` (a local block stays)        ``network_verdict_step_up``
``advisory``          unchanged                                        (none)
``clear``/``none``    unchanged (a verdict never relaxes local risk)   (none)
====================  ===============================================  ===========================

Rules:

1. A verdict only ever raises an outcome (allow < review < block); it never
   lowers one, so a Byzantine minority that can at most obtain ``clear`` or
   ``advisory`` levels cannot make a node miss fraud it detected locally.
2. The ranking score is raised to at least the floor of the level
   (:data:`SCORE_FLOOR`), so alert queues and metrics such as average
   precision see the verdict too; the local score is kept in
   ``local_score`` of :class:`Effect` for the audit trail.
3. Only a verdict that is still live at the decision (``expires_at_us >
   now_us``) counts; the caller passes the level and its expiry.
4. Reason codes are the ones the node's consensus bridge cites
   (``fraudnet.adapters.consensus_bridge.VERDICT_REASONS``); ``Effect.window``
   names the verdict's window, so an auditor can fetch the certificate that
   justified the decision.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

from ..records import Decision, Outcome

__all__ = ["REASON_BLOCK", "REASON_STEP_UP", "SCORE_FLOOR", "Effect", "apply_verdict", "effect_of"]

REASON_BLOCK: Final = "network_verdict_block"
REASON_STEP_UP: Final = "network_verdict_step_up"
#: minimum ranking score a live verdict gives a transaction
SCORE_FLOOR: Final[dict[str, float]] = {"block": 0.95, "step-up": 0.7}
_RANK: Final[dict[str, int]] = {"allow": 0, "review": 1, "block": 2}


@dataclass(frozen=True, slots=True)
class Effect:
    """The decision after the verdict, and what changed."""

    outcome: Outcome
    score: float
    reasons: tuple[str, ...]
    local_score: float
    changed: bool
    window: int | None


def effect_of(
    outcome: Outcome,
    score: float,
    reasons: tuple[str, ...],
    level: str,
    *,
    window: int | None = None,
    expires_at_us: int | None = None,
    now_us: int | None = None,
) -> Effect:
    """Apply a verdict ``level`` to a local ``(outcome, score, reasons)`` (module rules).

    >>> e = effect_of("allow", 0.1, ("LOW_RISK",), "step-up", window=7)
    >>> (e.outcome, e.score, e.reasons, e.changed)
    ('review', 0.7, ('LOW_RISK', 'network_verdict_step_up'), True)
    >>> effect_of("block", 0.95, ("AMOUNT_ABOVE_LIMIT",), "clear").outcome
    'block'
    """
    live = expires_at_us is None or now_us is None or expires_at_us > now_us
    if not live or level not in SCORE_FLOOR:
        return Effect(outcome, score, reasons, score, False, None)
    target: Outcome = "block" if level == "block" else "review"
    code = REASON_BLOCK if level == "block" else REASON_STEP_UP
    new_outcome = target if _RANK[target] > _RANK[outcome] else outcome
    new_score = max(score, SCORE_FLOOR[level])
    new_reasons = reasons if code in reasons else (*reasons, code)
    changed = new_outcome != outcome or new_score != score
    return Effect(new_outcome, new_score, new_reasons, score, changed, window)


def apply_verdict(
    decision: Decision,
    level: str,
    *,
    window: int | None = None,
    expires_at_us: int | None = None,
    now_us: int | None = None,
) -> tuple[Decision, Effect]:
    """The decision with the verdict applied (a new :class:`Decision`), and the effect."""
    eff = effect_of(
        decision.outcome, decision.score, decision.reasons, level,
        window=window, expires_at_us=expires_at_us, now_us=now_us,
    )  # fmt: skip
    if not eff.changed and eff.reasons == decision.reasons:
        return decision, eff
    return (
        dataclasses.replace(decision, outcome=eff.outcome, score=eff.score, reasons=eff.reasons),
        eff,
    )
