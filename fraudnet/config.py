"""Node configuration: validated once, frozen afterwards.

Precedence (lowest first): built-in defaults < ``node.toml`` < ``FRAUDNET_*``
environment variables < command-line flags. An environment variable names
a section and a key, e.g. ``FRAUDNET_BROKER_URL=kafka://10.0.0.5:9092`` sets
``[broker] url``; ``FRAUDNET_API_LISTEN`` sets ``[api] listen``.

Every error names the file (or variable) and the ``section.key``.
Sections other code owns (``[p2p]``, ``[policy]`` ...) are kept as raw
tables in :attr:`Settings.extra` and validated by their owners.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from fraudnet.errors import ConfigError

__all__ = [
    "ApiSettings",
    "BrokerSettings",
    "CurrencySettings",
    "IngestSettings",
    "NodeSettings",
    "ScoringSettings",
    "Settings",
    "load_settings",
    "render_default_toml",
]

CONFIG_FILE = "node.toml"
#: sections owned by other modules, passed through unvalidated here
EXTERNAL_SECTIONS = ("p2p", "signals", "policy", "audit", "consensus")


@dataclass(frozen=True)
class NodeSettings:
    #: human-readable node name; also the Faust app id suffix
    name: str = "node"
    #: member (organisation) id this node belongs to
    member: str = "member"
    #: log level: debug, info, warning, error
    log_level: str = "info"
    #: every this many seconds hand freed heap memory back to the kernel (glibc
    #: malloc_trim in a worker thread; keeps RSS following live memory, see
    #: docs/operations.md); 0 = never
    heap_trim_s: float = 60.0  # memtrace.TRIM_INTERVAL_S


#: effective ``[broker] fetch_max_wait_ms`` when it is 0 (auto): ``fraudnet bench hop``
#: measured 1.6 / 2.6 / 5.7 / 10.7 ms p50 per hop on the embedded broker at 1 / 2 / 5 / 10
EMBEDDED_FETCH_WAIT_MS = 1
REAL_FETCH_WAIT_MS = 100
#: effective ``[broker] idle_fetch_max_wait_ms`` on the embedded broker when 0 (auto)
EMBEDDED_IDLE_FETCH_WAIT_MS = 5


@dataclass(frozen=True)
class BrokerSettings:
    #: "" = embedded broker (librdkafka mock cluster, in memory); or kafka://host:port[,host:port]
    url: str = ""
    #: prefix of every topic name
    topic_prefix: str = "fraudnet"
    #: partitions of the internal topics the node shards cards over (tx-batch); 0 = auto:
    #: 1 on the embedded broker (one worker: one internal message per ingest batch instead
    #: of one per shard, ADR 0504), 4 on a real cluster (workers to spread them over)
    partitions: int = 0
    #: how long the broker may hold an empty fetch (Faust hard-codes 1500 ms; ADR 0001);
    #: 0 = auto: EMBEDDED_FETCH_WAIT_MS on the embedded broker, which holds an empty fetch
    #: for the full wait even when data arrives meanwhile (so the wait is added to every
    #: hop), REAL_FETCH_WAIT_MS on a real cluster, whose long poll returns on new data
    fetch_max_wait_ms: int = 0
    #: the Faust consumer's fetch wait once its topics have been idle for a while (about
    #: 50 empty fetches in a row), until a fetch returns data again: polling an idle
    #: embedded broker every millisecond cost the event loop a quarter core of GIL time
    #: (POST /v1/decide p50 7.6 -> 5.2 ms at 1,000 req/s, ADR 0505). 0 = auto:
    #: EMBEDDED_IDLE_FETCH_WAIT_MS on the embedded broker, the fetch wait on a real cluster
    idle_fetch_max_wait_ms: int = 0
    #: embedded broker only: delete the records of the node's transaction hand-off topics
    #: (tx-in, tx-batch) once the node's consumer groups have committed past them. The
    #: embedded broker walks a partition's log from its oldest message set on every
    #: fetch, so a log kept full to its ~5 MiB cap slows every hop (ADR 0506). Topics
    #: others read (decisions, dead letters, tx-api, labels) are kept as before.
    trim_consumed: bool = True

    def topic_partitions(self) -> int:
        """Internal partitions the node shards cards over (see ``partitions``)."""
        if self.partitions:
            return self.partitions
        return 1 if self.url == "" else 4

    def snapshot_shards(self) -> int:
        """Feature-state snapshot files: one per partition when set, else 4 (a snapshot
        tick pauses the loop for one shard, so one shard of everything would be 4x)."""
        return self.partitions or 4

    def fetch_wait_ms(self) -> int:
        """The effective fetch wait for this broker (see ``fetch_max_wait_ms``)."""
        if self.fetch_max_wait_ms:
            return self.fetch_max_wait_ms
        return EMBEDDED_FETCH_WAIT_MS if self.url == "" else REAL_FETCH_WAIT_MS

    def idle_fetch_wait_ms(self) -> int:
        """The effective idle fetch wait (see ``idle_fetch_max_wait_ms``), never below
        the fetch wait."""
        idle = self.idle_fetch_max_wait_ms
        if not idle:
            idle = EMBEDDED_IDLE_FETCH_WAIT_MS if self.url == "" else self.fetch_wait_ms()
        return max(idle, self.fetch_wait_ms())


@dataclass(frozen=True)
class ApiSettings:
    #: host:port of the HTTP API (decide, ingest, labels, health, metrics)
    listen: str = "127.0.0.1:8470"
    #: requests in flight above which the API answers 503 + Retry-After
    max_inflight: int = 256
    #: TLS certificate and key files (PEM); both empty = plain HTTP
    tls_cert: str = ""
    tls_key: str = ""
    #: require the bearer token on /metrics too
    metrics_auth: bool = False


@dataclass(frozen=True)
class IngestSettings:
    #: value format on the ingest topic: json or msgpack
    format: str = "json"
    #: re-batching: flush after this many transactions ...
    batch_max: int = 500
    #: ... or this long after the first one arrived
    linger_ms: float = 2.0
    #: backpressure: internal batches produced but not yet decided
    max_inflight_batches: int = 32
    #: consume, validate and pseudonymise in a second process supervised by the node
    #: (uses a second core; ignored with [p2p]: see docs/adr/0502-ingest-in-a-second-process.md)
    process: bool = False
    #: field mapping (our field -> source column); see fraudnet.core.transaction.FieldMap
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CurrencySettings:
    reporting: str = "EUR"
    #: currency assumed when a source has no currency field
    default: str = "EUR"
    #: value of one major unit in the reporting currency, e.g. {USD = 0.92}
    rates: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DedupSettings:
    #: transaction ids are remembered this long after their decision: a re-send within it
    #: gets the first decision, a later one is decided again (docs/operations.md)
    retention_days: float = 7.0
    #: how often older ids are deleted (in chunks, off the event loop)
    prune_interval_s: float = 600.0


@dataclass(frozen=True)
class ScoringSettings:
    review_at: float = 0.5
    block_at: float = 0.9
    #: path of a trained model file; "" = the built-in baseline rules
    model: str = ""


@dataclass(frozen=True)
class Settings:
    node_dir: Path
    node: NodeSettings = field(default_factory=NodeSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    currency: CurrencySettings = field(default_factory=CurrencySettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def embedded_broker(self) -> bool:
        return self.broker.url == ""


_SECTIONS: dict[str, type[Any]] = {
    "node": NodeSettings,
    "broker": BrokerSettings,
    "api": ApiSettings,
    "ingest": IngestSettings,
    "dedup": DedupSettings,
    "currency": CurrencySettings,
    "scoring": ScoringSettings,
}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is dict:
        if isinstance(value, dict):
            _, vt = typing.get_args(tp)
            if vt is Any:
                return dict(value)
            return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    elif isinstance(tp, types.UnionType):
        return value
    tname = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where}: expected {tname}, got {value!r}")


def _build(cls: type[Any], table: Mapping[str, Any], where: str) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in table.items()}
    return cls(**kwargs)


def _validate(s: Settings) -> None:
    def bad(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{key}: {msg}")

    if s.broker.url and not s.broker.url.startswith("kafka://"):
        raise bad(
            "broker.url", f"must be empty (embedded) or kafka://host:port, got {s.broker.url!r}"
        )
    if not 0 <= s.broker.partitions <= 1024:
        raise bad("broker.partitions", "must be 0 (auto) or 1..1024")
    if not 0 <= s.broker.fetch_max_wait_ms <= 1500:
        raise bad("broker.fetch_max_wait_ms", "must be 0 (auto) or 1..1500")
    if not 0 <= s.broker.idle_fetch_max_wait_ms <= 1500:
        raise bad("broker.idle_fetch_max_wait_ms", "must be 0 (auto) or 1..1500")
    host, _, port = s.api.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise bad("api.listen", f"expected host:port, got {s.api.listen!r}")
    if bool(s.api.tls_cert) != bool(s.api.tls_key):
        raise bad("api.tls_cert", "tls_cert and tls_key must be given together")
    if s.api.max_inflight < 1:
        raise bad("api.max_inflight", "must be >= 1")
    if s.ingest.format not in ("json", "msgpack"):
        raise bad("ingest.format", "must be json or msgpack")
    if not 1 <= s.ingest.batch_max <= 10_000:
        raise bad("ingest.batch_max", "must be 1..10000")
    if not 0 <= s.ingest.linger_ms <= 1000:
        raise bad("ingest.linger_ms", "must be 0..1000")
    if s.ingest.max_inflight_batches < 1:
        raise bad("ingest.max_inflight_batches", "must be >= 1")
    # below an hour only for tests and soaks (a re-send after it is decided again)
    if not 60 / 86_400 <= s.dedup.retention_days <= 3650:
        raise bad("dedup.retention_days", "must be 0.000694 (one minute)..3650")
    if not 1 <= s.dedup.prune_interval_s <= 86_400:
        raise bad("dedup.prune_interval_s", "must be 1..86400")
    if not (s.node.heap_trim_s == 0 or 1 <= s.node.heap_trim_s <= 86_400):
        raise bad("node.heap_trim_s", "must be 0 (off) or 1..86400")
    if s.node.log_level not in ("debug", "info", "warning", "error"):
        raise bad("node.log_level", "must be debug, info, warning or error")
    for cur, rate in s.currency.rates.items():
        if len(cur) != 3 or not cur.isupper() or not rate > 0:
            raise bad(f"currency.rates.{cur}", "expected an ISO 4217 code and a positive rate")
    from fraudnet.core.scoring.base import Thresholds
    from fraudnet.core.transaction import FieldMap

    Thresholds(s.scoring.review_at, s.scoring.block_at)
    FieldMap.from_mapping(s.ingest.fields, where="ingest.fields")


def load_settings(
    node_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Load ``node_dir/node.toml`` (optional), then environment, then ``overrides``."""
    env = os.environ if env is None else env
    path = node_dir / CONFIG_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read ({e})") from None
    unknown = sorted(set(data) - set(_SECTIONS) - set(EXTERNAL_SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}")
    tables: dict[str, dict[str, Any]] = {k: dict(v) for k, v in data.items() if isinstance(v, dict)}
    for k, v in data.items():
        if not isinstance(v, dict):
            raise ConfigError(f"{path}: {k} must be a table ([{k}])")
    for var, value in env.items():
        if not var.startswith("FRAUDNET_") or var in ("FRAUDNET_FDH_DIR", "FRAUDNET_HOME"):
            continue
        rest = var[len("FRAUDNET_") :].lower()
        section, _, key = rest.partition("_")
        if section in _SECTIONS and key:
            tables.setdefault(section, {})[key] = value
    for section, kv in (overrides or {}).items():
        for k, v in kv.items():
            if v is not None:
                tables.setdefault(section, {})[k] = v
    built = {
        name: _build(cls, tables.get(name, {}), f"{path}: [{name}]")
        for name, cls in _SECTIONS.items()
    }
    extra = {k: tables[k] for k in EXTERNAL_SECTIONS if k in tables}
    settings = Settings(node_dir=node_dir, extra=extra, **built)
    try:
        _validate(settings)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return settings


def render_default_toml(name: str, member: str, api_listen: str) -> str:
    """The commented ``node.toml`` that ``fraudnet node init`` writes."""
    return f"""\
# fraudnet node configuration.
# Precedence: defaults < this file < FRAUDNET_<SECTION>_<KEY> environment < command-line flags.

[node]
name = "{name}"
member = "{member}"           # the member (organisation) this node belongs to
log_level = "info"             # debug | info | warning | error

[broker]
url = ""                       # "" = embedded in-memory broker; "kafka://host:9092" = real
topic_prefix = "fraudnet"
partitions = 0                 # 0 = auto: 1 on the embedded broker, 4 on a real cluster
fetch_max_wait_ms = 0          # 0 = auto: 1 ms embedded, 100 ms real cluster (ADR 0001)
idle_fetch_max_wait_ms = 0     # ... once idle (Faust consumer); 0 = auto: 5 ms embedded (ADR 0505)
trim_consumed = true           # embedded: delete input records once consumed (ADR 0506)

[api]
listen = "{api_listen}"
max_inflight = 256             # above this many requests in flight: 503 + Retry-After
tls_cert = ""                  # PEM files; both set = HTTPS
tls_key = ""
metrics_auth = false           # require the bearer token on /metrics

[ingest]
format = "json"                # value format on the ingest topic: json | msgpack
batch_max = 500                # re-batch up to this many transactions per internal message
linger_ms = 2.0                # ... or flush this long after the first one
max_inflight_batches = 32      # backpressure bound between ingest and decisions
process = false                # true = ingest in a second, supervised process (2nd core)

[ingest.fields]
# Map our field names to your export's column names, e.g.:
# tx_id = "TRANSACTION_ID"
# timestamp = "TX_DATETIME"

[dedup]
retention_days = 7.0           # a re-sent transaction id within this gets its first decision
prune_interval_s = 600.0       # older ids are deleted this often

[currency]
reporting = "EUR"
default = "EUR"

[currency.rates]
# USD = 0.92

[scoring]
review_at = 0.5
block_at = 0.9
model = ""                     # path of a trained model; "" = built-in baseline rules
"""
