from __future__ import annotations

import os
from pathlib import Path

import pytest

from fraudnet.adapters.storage.keys import (
    generate_node_files,
    load_api_token,
    load_local_secret,
    load_node_key,
)
from fraudnet.config import load_settings, render_default_toml
from fraudnet.errors import ConfigError, KeyFileError


def test_defaults_file_env_flags_precedence(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text(render_default_toml("n", "m", "127.0.0.1:9000"))
    s = load_settings(tmp_path, env={})
    assert s.api.listen == "127.0.0.1:9000" and s.embedded_broker
    s = load_settings(tmp_path, env={"FRAUDNET_API_LISTEN": "127.0.0.1:9001"})
    assert s.api.listen == "127.0.0.1:9001"
    s = load_settings(
        tmp_path,
        env={"FRAUDNET_API_LISTEN": "127.0.0.1:9001", "FRAUDNET_INGEST_BATCH_MAX": "50"},
        overrides={"api": {"listen": "127.0.0.1:9002"}},
    )
    assert s.api.listen == "127.0.0.1:9002" and s.ingest.batch_max == 50


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("[api]\nlisten = 5\n", "[api].listen: expected str"),
        ("[api]\nlisten = 'nohostport'\n", "api.listen"),
        ("[broker]\nurl = 'redis://x'\n", "broker.url"),
        ("[nosuch]\nx = 1\n", "unknown section"),
        ("[scoring]\nreview_at = 0.9\nblock_at = 0.5\n", "thresholds"),
        ("[ingest]\nbogus = 1\n", "unknown key(s) ['bogus']"),
        ("[ingest.fields]\ntxid = 'A'\n", "ingest.fields"),
        ("[api\n", "node.toml"),
        ("[node]\nheap_trim_s = 0.5\n", "node.heap_trim_s"),
    ],
)
def test_bad_config_names_what_and_where(tmp_path: Path, toml: str, fragment: str) -> None:
    (tmp_path / "node.toml").write_text(toml)
    with pytest.raises(ConfigError) as ei:
        load_settings(tmp_path, env={})
    assert fragment in str(ei.value)
    assert "node.toml" in str(ei.value)


def test_key_files_are_private_and_checked(tmp_path: Path) -> None:
    generate_node_files(tmp_path)
    for name in ("node.key", "local.secret", "api.token"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    load_node_key(tmp_path)
    assert len(load_local_secret(tmp_path)) == 32
    assert len(load_api_token(tmp_path)) >= 16
    os.chmod(tmp_path / "node.key", 0o644)
    with pytest.raises(KeyFileError, match="too open"):
        load_node_key(tmp_path)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_node_files(tmp_path)


def test_corrupt_key_file(tmp_path: Path) -> None:
    generate_node_files(tmp_path)
    (tmp_path / "local.secret").write_text("zz")
    with pytest.raises(KeyFileError, match="hex"):
        load_local_secret(tmp_path)


def test_ingest_process_key(tmp_path: Path) -> None:
    from fraudnet.adapters.node import ingest_process_wanted

    (tmp_path / "node.toml").write_text("[ingest]\nprocess = true\n")
    s = load_settings(tmp_path, env={})
    assert s.ingest.process is True and ingest_process_wanted(s)
    assert load_settings(tmp_path, env={"FRAUDNET_INGEST_PROCESS": "false"}).ingest.process is False
    (tmp_path / "node.toml").write_text("[ingest]\nprocess = 'yes'\n")
    with pytest.raises(ConfigError, match=r"\[ingest\]\.process: expected bool"):
        load_settings(tmp_path, env={})
    (tmp_path / "node.toml").write_text("[ingest]\nprocess = true\n[p2p]\nlisten = '127.0.0.1:0'\n")
    assert not ingest_process_wanted(load_settings(tmp_path, env={}))


def test_heap_trim_can_be_turned_off(tmp_path: Path) -> None:
    assert load_settings(tmp_path, env={}).node.heap_trim_s == 60.0
    (tmp_path / "node.toml").write_text("[node]\nheap_trim_s = 0\n")
    assert load_settings(tmp_path, env={}).node.heap_trim_s == 0.0
