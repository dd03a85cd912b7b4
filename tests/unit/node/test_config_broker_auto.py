"""[broker] fetch_max_wait_ms, idle_fetch_max_wait_ms and partitions: 0 means auto, by
broker kind (ADR 0504, 0505)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudnet.config import (
    EMBEDDED_FETCH_WAIT_MS,
    EMBEDDED_IDLE_FETCH_WAIT_MS,
    REAL_FETCH_WAIT_MS,
    BrokerSettings,
    load_settings,
    render_default_toml,
)
from fraudnet.errors import ConfigError


def test_auto_values_follow_the_broker_kind() -> None:
    embedded, real = BrokerSettings(), BrokerSettings(url="kafka://k1:9092")
    assert embedded.fetch_wait_ms() == EMBEDDED_FETCH_WAIT_MS == 1
    assert real.fetch_wait_ms() == REAL_FETCH_WAIT_MS == 100
    # one worker on the embedded broker: one internal partition; snapshots keep 4 shards
    assert (embedded.topic_partitions(), embedded.snapshot_shards()) == (1, 4)
    assert (real.topic_partitions(), real.snapshot_shards()) == (4, 4)
    # an idle consumer backs off on the embedded broker only (a real long poll wakes on data)
    assert embedded.idle_fetch_wait_ms() == EMBEDDED_IDLE_FETCH_WAIT_MS == 5
    assert real.idle_fetch_wait_ms() == real.fetch_wait_ms()


def test_explicit_values_win() -> None:
    b = BrokerSettings(partitions=12, fetch_max_wait_ms=20)
    assert (b.topic_partitions(), b.snapshot_shards(), b.fetch_wait_ms()) == (12, 12, 20)
    assert b.idle_fetch_wait_ms() == 20  # never below the fetch wait
    assert BrokerSettings(idle_fetch_max_wait_ms=40).idle_fetch_wait_ms() == 40


@pytest.mark.parametrize(("key", "value"), [("partitions", -1), ("fetch_max_wait_ms", -5),
                                            ("fetch_max_wait_ms", 1501),
                                            ("idle_fetch_max_wait_ms", -1),
                                            ("idle_fetch_max_wait_ms", 1501)])  # fmt: skip
def test_out_of_range_values_are_config_errors(tmp_path: Path, key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"broker.{key}"):
        load_settings(tmp_path, env={}, overrides={"broker": {key: value}})


def test_a_new_node_toml_uses_auto() -> None:
    text = render_default_toml("n", "m", "127.0.0.1:8470")
    assert "partitions = 0 " in text and "fetch_max_wait_ms = 0 " in text
    assert "idle_fetch_max_wait_ms = 0 " in text
