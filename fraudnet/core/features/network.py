"""Network features: what other members signalled about a transaction's card and terminal.

Theory of operation. Accepted signals from *other* members are kept in a
bounded, clock-free :class:`~fraudnet.core.signals.evidence.NetworkEvidence`
(keyed by entity kind and canonical pseudonym; the node's own signals never
count). At scoring time, for each transaction and each of its two entities
(card, terminal), :func:`network_row` reads, at the transaction's ``now``:

* ``*_MEMBERS_FLAGGING`` -- distinct other members with a live signal on the
  entity (a signal is live until its ``expires_at``: the window is the
  signal's time to live, 24 h by default);
* ``*_MAX_SCORE`` -- the highest live score, in [0, 1];
* ``*_SECS_SINCE_FIRST_FLAG`` -- seconds since the earliest live signal's
  ``observed_at`` (capped at :data:`~.schema.SINCE_CAP_S`; the cap when none).

With no evidence the row is :data:`NEUTRAL` -- exactly the values the feature
kernels write into these columns, so a model trained on network features
scores a transaction nobody flagged as the kernels' row says, and a model
without network features never reads them.

Rules:

1. Time is a parameter: the caller passes ``now_us``; only signals added to
   the evidence before the call are visible (the caller adds a signal when it
   *arrives*, which is after it was created: no look-ahead).
2. Memory is bounded by the evidence's entity capacity; expired entries are
   dropped when read.
3. Only column positions of the ``network`` group of the schema are written.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from ..records import TxRecord
from ..signals.evidence import EntityEvidence, NetworkEvidence
from .schema import FEATURES, SINCE_CAP_S, feature_index

__all__ = [
    "NETWORK_NAMES",
    "NET_COLS",
    "NEUTRAL",
    "EvidenceFeatures",
    "NetworkFeatureSource",
    "entity_columns",
    "network_row",
    "network_rows_many",
    "uses_network",
]

#: the network group's column names, in schema order (card x 3, then terminal x 3)
NETWORK_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES if f.group == "network")
#: their positions in a schema feature row
NET_COLS: Final[npt.NDArray[np.int64]] = np.array(feature_index(NETWORK_NAMES), dtype=np.int64)
#: the row with no network evidence (what the feature kernels write)
NEUTRAL: Final[npt.NDArray[np.float64]] = np.array(
    [0.0, 0.0, SINCE_CAP_S, 0.0, 0.0, SINCE_CAP_S], dtype=np.float64
)
_NONE = (0.0, 0.0, SINCE_CAP_S)


def uses_network(feature_names: Sequence[str]) -> bool:
    """True if a model reading ``feature_names`` reads any network column."""
    return any(n in NETWORK_NAMES for n in feature_names)


def entity_columns(ev: EntityEvidence, now_us: int) -> tuple[float, float, float]:
    """(members flagging, max score, seconds since first flag) of one entity's evidence."""
    if ev.members == 0 or ev.first_flag_us is None:
        return _NONE
    since = min(max(0.0, (now_us - ev.first_flag_us) / 1e6), SINCE_CAP_S)
    return (float(ev.members), float(ev.max_score), since)


def network_row(
    evidence: NetworkEvidence, card: bytes | None, terminal: bytes | None, now_us: int
) -> tuple[float, float, float, float, float, float]:
    """The six network columns of one transaction (``None``: no pseudonym for it)."""
    c = _NONE if card is None else entity_columns(evidence.query("card", card, now_us), now_us)
    t = (
        _NONE
        if terminal is None
        else entity_columns(evidence.query("terminal", terminal, now_us), now_us)
    )
    return (c[0], c[1], c[2], t[0], t[1], t[2])


def network_rows_many(
    evidence: NetworkEvidence,
    cards: Sequence[bytes | None],
    terminals: Sequence[bytes | None],
    now_us: int,
) -> npt.NDArray[np.float64]:
    """``network_row`` of each transaction of a batch decided at ``now_us`` (n x 6)."""
    n = len(cards)
    out = np.empty((n, NEUTRAL.shape[0]), dtype=np.float64)
    for i in range(n):
        out[i] = network_row(evidence, cards[i], terminals[i], now_us)
    return out


class NetworkFeatureSource(Protocol):
    """What :class:`~fraudnet.core.pipeline.NodeCore` asks the network layer at decision time.

    ``features_many`` returns the network columns (n x 6, :data:`NETWORK_NAMES`
    order) of a batch from the evidence received so far; ``note_local_scores``
    hands back the batch's *local* scores (the model with :data:`NEUTRAL`
    network columns), the only scores a member may signal from.
    """

    def features_many(
        self, records: Sequence[TxRecord], now_us: int
    ) -> npt.NDArray[np.float64]: ...

    def note_local_scores(
        self, records: Sequence[TxRecord], scores: npt.NDArray[np.float64]
    ) -> None: ...


class EvidenceFeatures:
    """The node's :class:`NetworkFeatureSource`: network columns from its evidence.

    ``evidence`` returns the live :class:`NetworkEvidence` (None before the p2p
    service started: every row is :data:`NEUTRAL`); ``resolve(epoch, pseudonym)``
    maps a pseudonym to the canonical key the evidence is stored under (key
    rotation links, see :class:`~fraudnet.core.signals.keyring.PseudonymLinks`).
    A record is looked up by its first ``net_refs`` entry (the current epoch).

    Local scores handed back by the node are kept per transaction id until
    :meth:`pop_local_score` takes them (at most ``max_pending``; the oldest is
    dropped first, counted in ``local_dropped``).
    """

    def __init__(
        self,
        evidence: Callable[[], NetworkEvidence | None],
        resolve: Callable[[int, bytes], bytes] | None = None,
        *,
        max_pending: int = 1 << 16,
    ) -> None:
        self._evidence = evidence
        self._resolve = resolve
        self._local: OrderedDict[str, float] = OrderedDict()
        self.max_pending = max_pending
        self.local_dropped = 0

    def features_many(self, records: Sequence[TxRecord], now_us: int) -> npt.NDArray[np.float64]:
        ev = self._evidence()
        n = len(records)
        if ev is None or len(ev) == 0:
            return np.tile(NEUTRAL, (n, 1))
        res = self._resolve
        cards: list[bytes | None] = []
        terms: list[bytes | None] = []
        for r in records:
            if not r.net_refs:
                cards.append(None)
                terms.append(None)
                continue
            epoch, c, t = r.net_refs[0]
            cards.append(c if res is None else res(epoch, c))
            terms.append(t if res is None else res(epoch, t))
        return network_rows_many(ev, cards, terms, now_us)

    def note_local_scores(
        self, records: Sequence[TxRecord], scores: npt.NDArray[np.float64]
    ) -> None:
        local = self._local
        for r, s in zip(records, scores.tolist(), strict=True):
            local[r.tx_id] = float(s)
        while len(local) > self.max_pending:
            local.popitem(last=False)
            self.local_dropped += 1

    def pop_local_score(self, tx_id: str) -> float | None:
        """The local score noted for ``tx_id`` (once), or None if none was noted."""
        return self._local.pop(tx_id, None)
