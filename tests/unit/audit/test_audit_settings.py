"""[audit] settings: validated, defaults durable, errors name the key."""

from __future__ import annotations

import pytest

from fraudnet.adapters.storage.audit_settings import audit_policy_from
from fraudnet.errors import ConfigError


def test_defaults_are_durable() -> None:
    p = audit_policy_from(None, "node.toml")
    assert p.fsync is True and p.checkpoint_interval_us == 1_000_000


def test_values_are_converted() -> None:
    p = audit_policy_from({"fsync": False, "checkpoint_interval_s": 0.5, "max_segment_mb": 1,
                           "online_segments": 2, "retention_days": 30}, "n.toml")  # fmt: skip
    assert (p.fsync, p.checkpoint_interval_us, p.max_segment_bytes, p.online_segments) == (
        False, 500_000, 1024 * 1024, 2,
    )  # fmt: skip
    assert p.retention_us == 30 * 86_400 * 1_000_000


@pytest.mark.parametrize(
    ("table", "key"),
    [({"fsync": "no"}, "fsync"), ({"fsnyc": True}, "fsnyc"), ({"online_segments": 0}, "online"),
     ({"checkpoint_interval_s": "1"}, "checkpoint_interval_s"), ({"max_segment_mb": 0.001}, "max")],
)  # fmt: skip
def test_bad_values_name_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key) as e:
        audit_policy_from(table, "/n/node.toml")
    assert "/n/node.toml" in str(e.value)
