"""Feature schema (names, order, reason codes) and window geometry.

The schema is versioned. Version 1 has 31 columns in four groups; version
2 appends two ``analyst`` columns (the card's amount against its history
14-30 days back, and its recent count of amounts above twice that level:
a compromise in the last two weeks inflates the 30-day mean, not this one).

* ``handbook`` -- the 15 baseline features of the Fraud Detection Handbook
  (amount, weekend, night; card count/mean amount over 1/7/30 days including
  the current transaction; terminal count/fraud share over 1/7/30 days ending
  ``delay`` before the transaction).
* ``analyst`` -- velocity over 1 h, amount against the card's own 30-day
  history (ratio to mean, z-score, ratio to maximum), time since the card's
  previous transaction, distinct terminals per card and distinct cards per
  terminal over 24 h, terminal volume over 24 h, days since the terminal's
  last *known* (delay-respecting) fraud, and the card's recent count of
  amounts above twice its usual level.
* ``network`` -- what other members signalled (issue 4): per card and per
  terminal, distinct other members flagging, maximum network score, seconds
  since the first network flag, over live (unexpired) signals. The kernels
  write the neutral row (no evidence); a model that reads these columns gets
  them filled from the node's received evidence at decision time
  (:mod:`fraudnet.core.features.network`, ADR 0110). ``default_model_features``
  leaves them out: only a model trained with network evidence may read them.

Columns are only ever *appended* (a new schema version adds names at the
end and never reorders or retypes); a model names the columns it uses
(``feature_names`` in its metadata), so a model trained on version 1 keeps
working on a later version.

Every column maps to a short stable reason code; several columns may share
a code (e.g. the three card-velocity windows).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

from fraudnet.errors import ConfigError

__all__ = [
    "DAY_S",
    "FEATURES",
    "FEATURE_NAMES",
    "HOUR_S",
    "SCHEMA_VERSION",
    "FeatureConfig",
    "FeatureSpec",
    "default_model_features",
    "feature_index",
]

SCHEMA_VERSION: Final = 2
HOUR_S: Final = 3600.0
DAY_S: Final = 86400.0
#: cap (seconds) for "time since" features when there is no previous event
SINCE_CAP_S: Final = 45 * DAY_S


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    group: str
    reason: str
    doc: str


FEATURES: Final[tuple[FeatureSpec, ...]] = (
    FeatureSpec("TX_AMOUNT", "handbook", "AMOUNT_HIGH", "transaction amount"),
    FeatureSpec("TX_DURING_WEEKEND", "handbook", "TIME_OF_WEEK", "1 on Saturday/Sunday"),
    FeatureSpec("TX_DURING_NIGHT", "handbook", "TIME_OF_DAY", "1 when hour <= 6"),
    FeatureSpec("CARD_NB_TX_1DAY", "handbook", "CARD_VELOCITY", "card tx in (t-1d, t]"),
    FeatureSpec("CARD_AVG_AMOUNT_1DAY", "handbook", "CARD_AMOUNT_PATTERN", "mean amount"),
    FeatureSpec("CARD_NB_TX_7DAY", "handbook", "CARD_VELOCITY", "card tx in (t-7d, t]"),
    FeatureSpec("CARD_AVG_AMOUNT_7DAY", "handbook", "CARD_AMOUNT_PATTERN", "mean amount"),
    FeatureSpec("CARD_NB_TX_30DAY", "handbook", "CARD_VELOCITY", "card tx in (t-30d, t]"),
    FeatureSpec("CARD_AVG_AMOUNT_30DAY", "handbook", "CARD_AMOUNT_PATTERN", "mean amount"),
    FeatureSpec("TERM_NB_TX_1DAY_DELAY", "handbook", "TERMINAL_VOLUME", "terminal tx"),
    FeatureSpec("TERM_RISK_1DAY_DELAY", "handbook", "TERMINAL_FRAUD_HISTORY", "fraud share"),
    FeatureSpec("TERM_NB_TX_7DAY_DELAY", "handbook", "TERMINAL_VOLUME", "terminal tx"),
    FeatureSpec("TERM_RISK_7DAY_DELAY", "handbook", "TERMINAL_FRAUD_HISTORY", "fraud share"),
    FeatureSpec("TERM_NB_TX_30DAY_DELAY", "handbook", "TERMINAL_VOLUME", "terminal tx"),
    FeatureSpec("TERM_RISK_30DAY_DELAY", "handbook", "TERMINAL_FRAUD_HISTORY", "fraud share"),
    FeatureSpec("CARD_NB_TX_1HOUR", "analyst", "CARD_VELOCITY_BURST", "card tx in (t-1h, t]"),
    FeatureSpec(
        "CARD_AMOUNT_RATIO_30DAY", "analyst", "CARD_AMOUNT_VS_HISTORY",
        "amount / mean amount of the card's previous tx in 30d (1 when none)",
    ),
    FeatureSpec(
        "CARD_AMOUNT_ZSCORE_30DAY", "analyst", "CARD_AMOUNT_VS_HISTORY",
        "(amount - mean) / max(std, 1) of previous tx in 30d (0 when none)",
    ),
    FeatureSpec(
        "CARD_AMOUNT_RATIO_MAX_30DAY", "analyst", "CARD_AMOUNT_ABOVE_MAX",
        "amount / max amount of previous tx in 30d (1 when none)",
    ),
    FeatureSpec(
        "CARD_SECS_SINCE_PREV", "analyst", "CARD_TIME_SINCE_PREVIOUS",
        "seconds since the card's previous tx (capped at 45 days)",
    ),
    FeatureSpec(
        "CARD_DISTINCT_TERMINALS_1DAY", "analyst", "CARD_MANY_TERMINALS",
        "distinct terminals of the card in (t-1d, t]",
    ),
    FeatureSpec(
        "TERM_DISTINCT_CARDS_1DAY", "analyst", "TERMINAL_MANY_CARDS",
        "distinct cards at the terminal over ~24h (time buckets)",
    ),
    FeatureSpec("TERM_NB_TX_1DAY", "analyst", "TERMINAL_VOLUME_SPIKE", "terminal tx over ~24h"),
    FeatureSpec(
        "TERM_DAYS_SINCE_KNOWN_FRAUD", "analyst", "TERMINAL_RECENT_FRAUD",
        "days since the newest fraud known (delay-respecting) at the terminal (cap 45)",
    ),
    FeatureSpec(
        "CARD_NB_HIGH_AMOUNT_14DAY", "analyst", "CARD_AMOUNT_VS_HISTORY",
        "card tx in (t-14d, t] above twice the mean of its previous 30-day tx",
    ),
    FeatureSpec(
        "NET_CARD_MEMBERS_FLAGGING", "network", "NETWORK_CARD_FLAGGED",
        "distinct other members with a live signal on the card (0 when none)",
    ),
    FeatureSpec(
        "NET_CARD_MAX_SCORE", "network", "NETWORK_CARD_FLAGGED",
        "highest live network score on the card, in [0, 1] (0 when none)",
    ),
    FeatureSpec(
        "NET_CARD_SECS_SINCE_FIRST_FLAG", "network", "NETWORK_CARD_FLAGGED",
        "seconds since the card's earliest live signal was observed (cap 45 days when none)",
    ),
    FeatureSpec(
        "NET_TERM_MEMBERS_FLAGGING", "network", "NETWORK_TERMINAL_FLAGGED",
        "distinct other members with a live signal on the terminal (0 when none)",
    ),
    FeatureSpec(
        "NET_TERM_MAX_SCORE", "network", "NETWORK_TERMINAL_FLAGGED",
        "highest live network score on the terminal, in [0, 1] (0 when none)",
    ),
    FeatureSpec(
        "NET_TERM_SECS_SINCE_FIRST_FLAG", "network", "NETWORK_TERMINAL_FLAGGED",
        "seconds since the terminal's earliest live signal (cap 45 days when none)",
    ),
    # ---- schema v2 ----
    FeatureSpec(
        "CARD_AMOUNT_RATIO_OLD_HISTORY", "analyst", "CARD_AMOUNT_VS_HISTORY",
        "amount / mean amount of the card's tx in (t-30d, t-14d] (1 when none)",
    ),
    FeatureSpec(
        "CARD_NB_ABOVE_OLD_2X_14DAY", "analyst", "CARD_AMOUNT_VS_HISTORY",
        "card tx in (t-14d, t] above twice the mean of its tx in (t-30d, t-14d]",
    ),
)  # fmt: skip

FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES)
N_FEATURES: Final = len(FEATURES)
_INDEX: Final = {name: i for i, name in enumerate(FEATURE_NAMES)}


def feature_index(names: tuple[str, ...] | list[str]) -> list[int]:
    """Column indices of ``names`` in the schema; :class:`ConfigError` on an unknown name."""
    out = []
    for n in names:
        if n not in _INDEX:
            raise ConfigError(f"feature schema v{SCHEMA_VERSION}: unknown feature {n!r}")
        out.append(_INDEX[n])
    return out


def default_model_features(groups: tuple[str, ...] = ("handbook", "analyst")) -> tuple[str, ...]:
    """Names of the columns a model uses by default (everything but the network group)."""
    return tuple(f.name for f in FEATURES if f.group in groups)


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Geometry and bounds of the feature state (validated on construction).

    * ``delay_days`` -- a label is used only once the labelled transaction is
      this old (event time).
    * ``card_ring`` -- events kept per card (a multiple of ``card_terminals``).
      Card windows are exact while a card makes at most this many
      transactions in the window; older events move to per-day overflow
      buckets, and a window then misses at most the overflowed events of
      its edge day (see docs/features.md).
    * ``card_terminals`` -- terminal fingerprints kept per card (its last
      events): distinct terminals per card and the terminal distinct-card
      count look this far back.
    * ``bucket_s`` -- width of a terminal's real-time (24 h) buckets.
    * ``label_bucket_s`` -- width of a terminal's labelled (delayed) buckets.
      Terminal counts are approximate: a window is replaced by whole
      buckets, so a count is off by at most the events of the two edge
      buckets (see docs/features.md).
    * ``max_cards`` / ``max_terminals`` -- entity bounds; when full, entities
      idle longer than ``retention_days`` are evicted, then the least
      recently seen (see :class:`~fraudnet.core.features.state.FeatureState`).
    * ``tz_offset_s`` -- local time offset for weekend/night flags.
    """

    delay_days: float = 7.0
    card_ring: int = 48
    bucket_s: float = HOUR_S
    max_cards: int = 1 << 20
    max_terminals: int = 1 << 18
    retention_days: float = 45.0
    tz_offset_s: float = 0.0
    card_terminals: int = 16
    label_bucket_s: float = 12 * HOUR_S

    def __post_init__(self) -> None:
        def bad(what: str) -> ConfigError:
            return ConfigError(f"feature config: {what}")

        if not 0.0 <= self.delay_days <= 60.0:
            raise bad(f"delay_days={self.delay_days} must be in [0, 60]")
        if not 4 <= self.card_terminals <= 256:
            raise bad(f"card_terminals={self.card_terminals} must be in [4, 256]")
        if not 4 <= self.card_ring <= 4096 or self.card_ring % self.card_terminals:
            raise bad(
                f"card_ring={self.card_ring} must be in [4, 4096] and a multiple of "
                f"card_terminals={self.card_terminals}"
            )
        if not 60.0 <= self.bucket_s <= DAY_S or DAY_S % self.bucket_s != 0:
            raise bad(f"bucket_s={self.bucket_s} must divide a day and be >= 60")
        if not 600.0 <= self.label_bucket_s <= DAY_S or DAY_S % self.label_bucket_s != 0:
            raise bad(f"label_bucket_s={self.label_bucket_s} must divide a day and be >= 600")
        if not 16 <= self.max_cards <= 1 << 28:
            raise bad(f"max_cards={self.max_cards} must be in [16, 2^28]")
        if not 16 <= self.max_terminals <= 1 << 26:
            raise bad(f"max_terminals={self.max_terminals} must be in [16, 2^26]")
        if self.retention_days < 31.0 + self.delay_days:
            raise bad(f"retention_days={self.retention_days} must cover 30 days + delay")
        if not -14 * HOUR_S <= self.tz_offset_s <= 14 * HOUR_S:
            raise bad(f"tz_offset_s={self.tz_offset_s} out of range")

    @property
    def label_buckets(self) -> int:
        """Length of a terminal's labelled-bucket ring: 30 days + delay + 2 buckets."""
        return round((30 * DAY_S + self.delay_days * DAY_S) / self.label_bucket_s) + 2

    @property
    def rt_buckets(self) -> int:
        """Length of a terminal's real-time ring (24 h + 2 buckets)."""
        return round(DAY_S / self.bucket_s) + 2

    def bytes_per_card(self) -> int:
        """Memory per card slot: key, ring (uint32 time + float32 amount), uint32 terminal
        fingerprints, 32 overflow days (uint16 count + 3 float32), scalars, 2 hash entries."""
        return (8 + self.card_ring * 8 + self.card_terminals * 4 + 32 * (2 + 12)
                + 4 + 4 + 4 + 8 + 1 + 2 * 12)  # fmt: skip

    def bytes_per_terminal(self) -> int:
        """Memory per terminal slot: int32 pairs per labelled and real-time bucket, two
        heads, last-seen, key and two hash-table entries."""
        return 8 * (self.label_buckets + self.rt_buckets) + 8 + 8 + 8 + 8 + 2 * 12

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> FeatureConfig:
        if not isinstance(obj, dict):
            raise ConfigError("feature config: expected an object")
        known = set(cls.__dataclass_fields__)
        unknown = set(obj) - known
        if unknown:
            raise ConfigError(f"feature config: unknown keys {sorted(unknown)}")
        try:
            kw: dict[str, Any] = {
                k: (int(v) if k in _INT_KEYS else float(v)) for k, v in obj.items()
            }
            return cls(**kw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"feature config: {e}") from None


_INT_KEYS: Final = frozenset({"card_ring", "max_cards", "max_terminals", "card_terminals"})
