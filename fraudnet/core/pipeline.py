"""NodeCore: the sans-IO heart of a node.

Adapters feed it values and ``now``; it returns values. It never touches a
socket, a file or the clock.

Flow for every received transaction (stream or API alike)::

    raw record --admit_one--> TxRecord ------------------+
                   |                                      |
                   +--> DeadLetter (invalid)              v
                                       de-dup (adapter) -> decide_many -> Decision

Invariant (checked by tests and reported by ``fraudnet demo``)::

    received == decided + dead_lettered + duplicates

where ``duplicates`` are records whose transaction id already has a
decision (they get no second decision; the first one stands).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fraudnet.errors import TransactionError

from .records import Decision, Pseudonymiser, TxRecord, columns, to_record
from .scoring.base import Scorer, Thresholds

if TYPE_CHECKING:
    from .features.network import NetworkFeatureSource
    from .policy.holder import PolicyEngine
from .transaction import DEFAULT_FIELDS, FieldMap, Normaliser, Transaction, parse_record

__all__ = ["Counters", "DeadLetter", "NetworkRefs", "NodeCore", "scrub"]

#: (transaction, now_us) -> ((key epoch, card pseudonym, terminal pseudonym), ...) for
#: every network key epoch currently accepted (see fraudnet.core.signals.keyring)
NetworkRefs = Callable[[Transaction, int], tuple[tuple[int, bytes, bytes], ...]]
#: (record, now_us) -> (verdict level, window, expires_at_us) or None
VerdictLookup = Callable[[TxRecord, int], "tuple[str, int | None, int | None] | None"]
#: verdict level -> the policy language's ``verdict`` value (0 none, 1 suspicious, 2 fraud)
_VERDICT_LEVEL = {"advisory": 0, "step-up": 1, "block": 2}

_PAN_RUN = re.compile(r"(?<!\d)\d(?:[ -]?\d){11,18}(?!\d)")
MAX_DEADLETTER_PAYLOAD = 2048


def scrub(text: str) -> str:
    """Mask every run of 12-19 digits (a possible card number) in ``text``.

    >>> scrub('{"card": "4111111111111111", "amount": 5}')
    '{"card": "################", "amount": 5}'
    """
    return _PAN_RUN.sub(lambda m: "#" * len(m.group(0)), text)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be decided, and why. ``payload`` is scrubbed of card numbers."""

    source: str
    location: str
    reason: str
    field: str | None
    payload: str
    at_us: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "location": self.location,
            "reason": self.reason,
            "field": self.field,
            "payload": self.payload,
            "at_us": self.at_us,
        }


@dataclass(slots=True)
class Counters:
    received: int = 0
    decided: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def reconciles(self) -> bool:
        return self.received == self.decided + self.dead_lettered + self.duplicates

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "decided": self.decided,
            "dead_lettered": self.dead_lettered,
            "duplicates": self.duplicates,
            "outcomes": {k: self.outcomes.get(k, 0) for k in ("allow", "review", "block")},
        }


class NodeCore:
    """Admission, scoring and decisions for one node (see module docstring)."""

    def __init__(
        self,
        scorer: Scorer,
        node_secret: bytes,
        *,
        thresholds: Thresholds | None = None,
        fields: FieldMap = DEFAULT_FIELDS,
        normaliser: Normaliser | None = None,
        network_refs: NetworkRefs | None = None,
        policy: PolicyEngine | None = None,
        verdicts: VerdictLookup | None = None,
    ) -> None:
        self.scorer = scorer
        #: the risk policy (rules, lists, segment thresholds); None = plain thresholds
        self.policy = policy
        #: live network verdict on a record's card: (level, window, expires_at_us) or None
        self.verdicts = verdicts
        #: called with (records, reasons, policy result, policy input) of each batch the
        #: policy decided (the node builds its review-queue items from it)
        self.on_policy_batch: Callable[..., None] | None = None
        #: computes network pseudonyms at ingest, while the raw identifiers exist
        self.network_refs = network_refs
        #: network columns and local-score sink for a model that reads network features
        #: (None, or a model without them: scored as before)
        self.network_features: NetworkFeatureSource | None = None
        self.thresholds = thresholds or Thresholds()
        self.fields = fields
        self.normaliser = normaliser or Normaliser()
        self._secret = node_secret
        self._pseudo = Pseudonymiser(node_secret)
        self.counters = Counters()

    def admit_one(
        self,
        raw: Mapping[str, Any] | Any,
        *,
        source: str,
        location: str,
        now_us: int,
        payload: str = "",
    ) -> TxRecord | DeadLetter:
        """Validate and pseudonymise one received record; count it as received."""
        self.counters.received += 1
        try:
            tx = parse_record(raw, self.fields, self.normaliser)
        except TransactionError as e:
            return self.dead_letter(
                e.located(source, location), payload=payload or repr(raw), now_us=now_us
            )
        rec = to_record(tx, self._pseudo)
        if self.network_refs is not None:
            rec = dataclasses.replace(rec, net_refs=self.network_refs(tx, now_us))
        return rec

    def dead_letter(self, err: TransactionError, *, payload: str, now_us: int) -> DeadLetter:
        """Build (and count) the dead-letter record for a received, undecidable record."""
        self.counters.dead_lettered += 1
        return DeadLetter(
            source=err.source,
            location=err.location,
            reason=err.reason,
            field=err.field,
            payload=scrub(payload[:MAX_DEADLETTER_PAYLOAD]),
            at_us=now_us,
        )

    def count_received_undecodable(self) -> None:
        """Count a received message that could not even be split into records."""
        self.counters.received += 1

    def note_duplicates(self, n: int) -> None:
        """Count ``n`` received records whose transaction ids were already decided."""
        self.counters.duplicates += n

    def decide_many(
        self, records: Sequence[TxRecord], arrivals_us: Sequence[int], now_us: int
    ) -> list[Decision]:
        """Score a de-duplicated batch (one kernel call) and decide each transaction.

        Order of a decision: the model's score; then the risk policy when one is
        installed (allow lists, block, step-up, review, segment thresholds; see
        docs/policy.md), else the plain thresholds; then a live network verdict
        on the card (block -> block, step-up -> at least review; never lowers an
        outcome), except for a transaction the policy explicitly allowed (an
        allow list or allow rule). Reason codes say which of these decided.
        """
        if not records:
            return []
        batch = columns(records)
        src = self.network_features
        if src is not None and getattr(self.scorer, "uses_network_features", False):
            # signals must come from the local score (network columns neutral), never this one
            result, local = self.scorer.score_network_many(  # type: ignore[attr-defined]  # ModelScorer
                batch, src.features_many(records, now_us)
            )
            src.note_local_scores(records, local)
        else:
            result = self.scorer.score_many(batch)
        model_id = self.scorer.model_id
        n = len(records)
        scores = [float(x) for x in result.scores]
        verdicts = (
            [self.verdicts(r, now_us) for r in records] if self.verdicts is not None else None
        )
        explicit_allow = [False] * n
        if self.policy is not None:
            import numpy as np

            from .policy.evaluate import ALLOW, outcome_of
            from .policy.inputs import PolicyInput

            levels = None
            if verdicts is not None:
                levels = np.array(
                    [_VERDICT_LEVEL.get(v[0], 0) if v else 0 for v in verdicts], dtype=np.float64
                )
            inp = PolicyInput.from_records(records, result.scores, verdicts=levels)
            ev = self.policy.evaluate_many([r.tx_id for r in records], inp, now_us / 1e6)
            live = ev.live
            reasons = live.reasons_many(result.reasons)
            outcomes = [outcome_of(int(c)) for c in live.codes]
            explicit_allow = [
                int(live.codes[i]) == ALLOW and int(live.decisive[i]) >= 0 for i in range(n)
            ]
            if self.on_policy_batch is not None:
                self.on_policy_batch(records, reasons, ev, inp)
        else:
            th = self.thresholds
            reasons = list(result.reasons)
            outcomes = [th.outcome(x) for x in scores]
        if verdicts is not None:
            from .consensus.effect import effect_of

            for i, v in enumerate(verdicts):
                if v is None or explicit_allow[i]:
                    continue
                level, window, expires = v
                eff = effect_of(
                    outcomes[i], scores[i], reasons[i], level,
                    window=window, expires_at_us=expires, now_us=now_us,
                )  # fmt: skip
                outcomes[i], scores[i], reasons[i] = eff.outcome, eff.score, eff.reasons
        out: list[Decision] = []
        for i, r in enumerate(records):
            self.counters.outcomes[outcomes[i]] += 1
            out.append(
                Decision(
                    tx_id=r.tx_id,
                    card_ref=r.card_ref,
                    outcome=outcomes[i],
                    score=scores[i],
                    reasons=reasons[i],
                    model_id=model_id,
                    ts_us=r.ts_us,
                    decided_at_us=now_us,
                    latency_us=max(0, now_us - arrivals_us[i]),
                    label=r.label,
                )
            )
        self.counters.decided += len(out)
        return out
