"""The ``[audit]`` section of ``node.toml``: durability, checkpoints, rotation, retention.

=========================  ===========  ================================================
key                        default      meaning
=========================  ===========  ================================================
``fsync``                  ``true``     ``fdatasync`` every group commit before any
                                        decision in it is answered or published
``checkpoint_interval_s``  ``1.0``      sign a checkpoint at most this often
``max_segment_mb``         ``256``      rotate segments at this size
``online_segments``        ``3``        segments kept in the log directory
``retention_days``         ``365``      archived segments older than this are deleted
=========================  ===========  ================================================

``fsync = false`` is an explicit, opt-in trade (ADR 0503): a decision is then
answered once its record is written to the operating system (it survives a
crash or SIGKILL of the node process, not a power loss or kernel crash),
which removes the disk's flush latency (a few ms, see ADR 0500) from
``POST /v1/decide``. The node logs a warning and records ``audit_fsync`` in
its ``node_start`` audit record, so the setting is itself audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fraudnet.errors import ConfigError

from .audit_log import AuditPolicy

__all__ = ["audit_policy_from"]

_KEYS = ("fsync", "checkpoint_interval_s", "max_segment_mb", "online_segments", "retention_days")


def _num(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    v = table.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"{where}: [audit] {key} must be a number, got {v!r}")
    return float(v)


def audit_policy_from(table: Mapping[str, Any] | None, where: str) -> AuditPolicy:
    """Validate an ``[audit]`` table (``None``: defaults); errors name ``where`` and the key."""
    table = dict(table or {})
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: [audit] unknown key(s) {unknown}; known: {list(_KEYS)}")
    fsync = table.get("fsync", True)
    if not isinstance(fsync, bool):
        raise ConfigError(f"{where}: [audit] fsync must be true or false, got {fsync!r}")
    ckp = _num(table, "checkpoint_interval_s", 1.0, where)
    seg = _num(table, "max_segment_mb", 256, where)
    online = table.get("online_segments", 3)
    if isinstance(online, bool) or not isinstance(online, int):
        raise ConfigError(f"{where}: [audit] online_segments must be an integer, got {online!r}")
    days = _num(table, "retention_days", 365, where)
    try:
        return AuditPolicy(
            fsync=fsync,
            checkpoint_interval_us=int(ckp * 1_000_000),
            max_segment_bytes=int(seg * 1024 * 1024),
            online_segments=online,
            retention_us=int(days * 86_400 * 1_000_000),
        )
    except ConfigError as e:
        raise ConfigError(f"{where}: [{e}]") from None
