"""Quorum verdicts between real node processes (n=4, f=1) on 127.0.0.x, and a sybil kept out."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from fraudnet.adapters.p2p.files import load_network_keyring
from fraudnet.adapters.storage.verdicts import read_certificates
from fraudnet.core.consensus import Certificate
from fraudnet.replay.generator import luhn_complete
from fraudnet.testing import init_network, network_anchor, run_cli, running_nodes, wait_for

pytestmark = pytest.mark.integration


def _metric(api: str, name: str) -> float:
    for line in requests.get(f"{api}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _decide(ep: dict, tx_id: str, card: str, amount: str) -> None:
    r = requests.post(f"{ep['api']}/v1/decide", headers={"Authorization": f"Bearer {ep['token']}"},
                      timeout=10, json={"tx_id": tx_id, "timestamp": int(time.time()), "card": card,
                                        "terminal_id": "T1", "amount": amount})  # fmt: skip
    assert r.status_code == 200, r.text


def _certs(d: Path) -> list[Certificate]:
    store = d / "state" / "verdicts.store"
    if not store.exists():
        return []
    try:
        return read_certificates(store)
    except Exception:  # a record being appended right now: poll again
        return []


def _levels(d: Path, entity: bytes) -> set[str]:
    return {c.level for c in _certs(d) if c.entity == entity}


def test_block_verdict_forms_at_every_node_and_a_sybil_is_kept_out(tmp_path: Path) -> None:
    # 5 node directories; the roster (n=4, f=1) is signed by the first 4: member-4 is a sybil
    # that runs with a roster it made up listing itself
    dirs = init_network(tmp_path, 5, roster_f=1)
    members, sybil = dirs[:4], dirs[4]
    _exclude_from_roster(tmp_path, members, sybil)
    anchor = network_anchor(tmp_path)
    ring = load_network_keyring(dirs[0] / "network.key", 3600)
    cards = [luhn_complete(f"49991111000{i:04d}") for i in range(3)]
    lone = luhn_complete("499922220000000")
    now = time.time_ns() // 1000

    def ps(card: str) -> bytes:
        return ring.pseudonyms("card", card, now)[0][1]

    with running_nodes([*members, sybil]) as all_eps:
        eps, s_ep = all_eps[:4], all_eps[4]
        wait_for(lambda: all(_metric(ep["api"], "fraudnet_p2p_connected_members") >= 3
                             for ep in eps), 60, "mesh of 4")  # fmt: skip
        wait_for(lambda: sum(_metric(ep["api"], "fraudnet_p2p_conn_refused_not_member_total")
                             for ep in eps) >= 1, 60, "sybil refused")  # fmt: skip
        # members 0, 1, 2 (= 2f+1) each see the fraudulent cards with a high local score
        for m in range(3):
            for i, card in enumerate(cards):
                _decide(eps[m], f"m{m}-c{i}", card, "300.00")
            for j in range(20):  # ordinary traffic keeps the signal budget meaningful
                _decide(eps[m], f"m{m}-ok{j}", luhn_complete(f"49993333{m:03d}{j:04d}"), "12.00")
        # one member flags `lone`; so does the sybil (twice): still advisory at most
        _decide(eps[3], "m3-lone", lone, "300.00")
        _decide(s_ep, "s-lone", lone, "300.00")
        _decide(s_ep, "s-c0", cards[0], "300.00")
        for d in members:
            for card in cards:
                wait_for(lambda d=d, card=card: "block" in _levels(d, ps(card)), 60,
                         f"block verdict at {d.name}")  # fmt: skip
        # the verdict changes decisions: member 3 saw nothing itself, yet a small payment
        # with a blocked card is declined there, citing the network verdict
        r = requests.post(f"{eps[3]['api']}/v1/decide", headers={"Authorization": f"Bearer {eps[3]['token']}"},
                          timeout=10, json={"tx_id": "m3-after", "timestamp": int(time.time()),
                                            "card": cards[0], "terminal_id": "T9", "amount": "9.99"})  # fmt: skip
        assert r.status_code == 200 and r.json()["outcome"] == "block", r.text
        assert "network_verdict_block" in r.json()["reasons"]
        assert _metric(eps[0]["api"], "fraudnet_consensus_verdicts_held") >= 3
        assert _metric(s_ep["api"], "fraudnet_consensus_attestations_signed_total") >= 2
        # (the sybil's own view may briefly list a half-closed dial; what matters is that the
        # members refuse it and accept nothing from it, checked here and below)
        assert _metric(eps[0]["api"], "fraudnet_p2p_topic_accepted_total") >= 6
    for d in members:
        assert _levels(d, ps(lone)) <= {"advisory"}
        for c in _certs(d):  # nothing the sybil signed is in any certificate
            assert all(m != "member-4" for m, _, _ in c.statements)
    # offline: no node running
    cert = next(c for c in _certs(members[3]) if c.level == "block")
    assert len({m for m, _, _ in cert.statements}) >= 3
    cert_file = tmp_path / "block.cert"
    cert_file.write_bytes(cert.encode())
    out = run_cli("verdict", "verify", str(cert_file), "--genesis", anchor,
                  "--rosters", str(tmp_path / "roster.chain"), "--json")  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["ok"] is True and doc["level"] == "block"
    shown = run_cli("verdict", "show", cert.entity.hex(), "--node-dir", str(members[1]),
                    "--genesis", anchor)  # fmt: skip
    assert "ok: block card" in shown.stdout
    # a tampered certificate does not verify
    bad = bytearray(cert.encode())
    bad[-5] ^= 1
    cert_file.write_bytes(bytes(bad))
    p = run_cli("verdict", "verify", str(cert_file), "--genesis", anchor,
                "--rosters", str(tmp_path / "roster.chain"), check=False)  # fmt: skip
    assert p.returncode != 0
    # every node's audit log has the verdict records, citing the certificate hash
    shown = run_cli("audit", "show", str(members[2]), "--kind", "verdict", "--format", "jsonl")
    recs = [json.loads(x) for x in shown.stdout.splitlines() if x.strip()]
    assert sum(r["action"] == "block" for r in recs) >= 3
    assert all(len(r["details"]["verdict_id"]) == 64 for r in recs if r["action"] == "block")
    assert run_cli("audit", "verify", str(members[2])).returncode == 0


def _exclude_from_roster(root: Path, members: list[Path], sybil: Path) -> None:
    """Rewrite the genesis without the sybil; the sybil keeps a roster claiming itself."""
    import tomllib

    from fraudnet.adapters.p2p.host import peer_id_of
    from fraudnet.adapters.storage.keys import load_node_key
    from fraudnet.core import crypto
    from fraudnet.testing import _write_genesis

    pids = [peer_id_of(crypto.public_bytes(load_node_key(d))).to_base58() for d in members]
    # the sybil runs with a 5-member roster it made up (its own genesis, not the network's)
    spids = [*pids, peer_id_of(crypto.public_bytes(load_node_key(sybil))).to_base58()]
    fake_root = root / "sybil-roster"
    fake_root.mkdir()
    fake = _write_genesis(fake_root, [*members, sybil], spids, "testnet", 1)
    text = (sybil / "node.toml").read_text()
    (sybil / "node.toml").write_text(
        text.replace(tomllib.loads(text)["consensus"]["genesis"], fake)
    )
    # the real network: 4 members (this rewrites the members' roster.chain files)
    anchor = _write_genesis(root, members, pids, "testnet", 1)
    for d in members:
        text = (d / "node.toml").read_text()
        (d / "node.toml").write_text(
            text.replace(tomllib.loads(text)["consensus"]["genesis"], anchor)
        )
