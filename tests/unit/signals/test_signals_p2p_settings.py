from __future__ import annotations

from pathlib import Path

import pytest

from fraudnet.adapters.p2p.settings import P2PSettings
from fraudnet.errors import ConfigError

OK = {
    "listen": "/ip4/127.0.0.2/tcp/4001",
    "network_id": "pilot",
    "members": {"bank-a": "11" * 32, "bank-b": "22" * 32},
    "network_key_file": "network.key",
    "peers": ["/ip4/127.0.0.3/tcp/4001/p2p/12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"],
}


def test_valid_mapping_builds_frozen_settings() -> None:
    s = P2PSettings.from_mapping(OK, "node.toml", base_dir=Path("/n"))
    assert s.flush_interval_ms == 100 and s.network_key_file == Path("/n/network.key")
    assert s.topic == "fraudnet/pilot/signals/1"
    assert s.members["bank-a"] == b"\x11" * 32


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"listen": "/ip4/127.0.0.2/udp/1"}, "p2p.listen"),
        ({"members": {"bank-a": "zz"}}, "p2p.members.bank-a"),
        ({"members": {"a": "11" * 32, "b": "11" * 32}}, "p2p.members"),
        ({"peers": ["/ip4/1.2.3.4/tcp/1"]}, "p2p.peers[0]"),
        ({"flush_interval_ms": 0}, "p2p.flush_interval_ms"),
        ({"flush_interval_ms": "100"}, "p2p.flush_interval_ms"),
        ({"bogus": 1}, "p2p.bogus"),
        ({"network_id": "bad id"}, "p2p.network_id"),
    ],
)
def test_bad_settings_name_the_key(patch: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"node.toml: {key.replace('[', '.').replace(']', '.')}"):
        P2PSettings.from_mapping({**OK, **patch}, "node.toml")


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match=r"p2p\.members: is required"):
        P2PSettings.from_mapping({k: v for k, v in OK.items() if k != "members"}, "node.toml")
