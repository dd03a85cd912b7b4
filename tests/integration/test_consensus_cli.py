"""The roster and verdict commands, run as subprocesses on files (no network, no node)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fraudnet.adapters.storage.keys import generate_node_files, load_node_key
from fraudnet.adapters.storage.verdicts import append_certificate
from fraudnet.core.consensus import (
    Attestation,
    RosterChain,
    VerdictPolicy,
    derive_verdict,
    sign_attestation,
)

REPO = Path(__file__).resolve().parents[2]
IDS = ["bank-a", "bank-b", "bank-c", "bank-d"]


def fn(*args: object, ok: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [sys.executable, "-m", "fraudnet.cli.main", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if ok:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("roster")
    dirs = {}
    for m in IDS:
        dirs[m] = d / m
        dirs[m].mkdir()
        generate_node_files(dirs[m])
    draft, chain = d / "genesis.draft", d / "roster.chain"
    members = [x for m in IDS for x in ("--member", m, f"Org {m}", dirs[m])]
    fn("roster", "init", "--network", "testnet", "--f", 1, *members, "--out", draft)
    p = fn("roster", "apply", draft, "--chain", chain, ok=False)
    assert p.returncode == 5 and "lacks a valid signature" in p.stderr
    for m in IDS:
        fn("roster", "sign", draft, "--node-dir", dirs[m], "--member", m)
    anchor = fn("roster", "apply", draft, "--chain", chain).stdout.split()[-1]
    return {"dir": d, "dirs": dirs, "chain": chain, "anchor": anchor}


def test_genesis_show_and_verify(world: dict[str, object]) -> None:
    chain, anchor = world["chain"], world["anchor"]
    out = fn("roster", "verify", "--chain", chain, "--genesis", anchor).stdout
    assert out.startswith("ok: 1 versions")
    assert "n=4 f=1 quorum=3" in fn("roster", "show", "--chain", chain, "--genesis", anchor).stdout
    bad = fn("roster", "verify", "--chain", chain, "--genesis", "00" * 32, ok=False)
    assert bad.returncode == 5 and "not the anchor" in bad.stderr


def test_proposal_needs_quorum_and_no_double_vote(world: dict[str, object]) -> None:
    d, dirs, chain, anchor = world["dir"], world["dirs"], world["chain"], world["anchor"]
    assert isinstance(d, Path) and isinstance(dirs, dict)
    prop, other = d / "p.draft", d / "other.draft"
    fn("roster", "propose", "--chain", chain, "--genesis", anchor, "--peer", "bank-a", "12D3KooA",
       "--out", prop)  # fmt: skip
    fn("roster", "propose", "--chain", chain, "--genesis", anchor, "--set-f", 0, "--out", other)
    for m in IDS[:2]:
        fn("roster", "sign", prop, "--node-dir", dirs[m], "--member", m)
    p = fn("roster", "apply", prop, "--chain", chain, "--genesis", anchor, ok=False)
    assert p.returncode == 5 and "needs 3 (2f+1)" in p.stderr
    dbl = fn("roster", "sign", other, "--node-dir", dirs["bank-a"], "--member", "bank-a", ok=False)
    assert dbl.returncode == 3 and "equivocation" in dbl.stderr
    fn("roster", "sign", prop, "--node-dir", dirs["bank-c"], "--member", "bank-c")
    assert "roster v1" in fn("roster", "apply", prop, "--chain", chain, "--genesis", anchor).stdout
    assert "12D3KooA" in fn("roster", "show", "--chain", chain, "--json").stdout


def test_verdict_verify_and_show_offline(world: dict[str, object]) -> None:
    d, dirs, chain_path, anchor = world["dir"], world["dirs"], world["chain"], world["anchor"]
    assert isinstance(d, Path) and isinstance(dirs, dict) and isinstance(chain_path, Path)
    chain = RosterChain.decode(chain_path.read_bytes(), bytes.fromhex(str(anchor)))
    policy = VerdictPolicy()
    card, now = b"\xab" * 32, 1_700_000_000_000_000
    atts = [
        sign_attestation(
            Attestation("testnet", m, "card", card, 0, policy.window_of(now), 1, "risk", 9),
            load_node_key(dirs[m]),
        )
        for m in IDS[:3]
    ]
    cert = derive_verdict("card", card, atts, chain, (), now, policy).certificate()
    assert cert is not None and cert.level == "block"
    cf = d / "block.cert"
    cf.write_bytes(cert.encode())
    out = fn("verdict", "verify", cf, "--genesis", anchor, "--rosters", chain_path, "--at-us", now)
    assert out.stdout.startswith("ok: block card " + card.hex()) and "live" in out.stdout
    tampered = bytearray(cert.encode())
    tampered[-5] ^= 0xFF
    cf.write_bytes(bytes(tampered))
    bad = fn("verdict", "verify", cf, "--genesis", anchor, "--rosters", chain_path, ok=False)
    assert bad.returncode == 5 and "does not verify" in bad.stderr
    store = d / "verdicts.fnv"
    append_certificate(store, cert)
    shown = fn("verdict", "show", card.hex(), "--store", store, "--genesis", anchor,
               "--rosters", chain_path).stdout  # fmt: skip
    assert shown.startswith("ok: block") and "bank-a,bank-b,bank-c" in shown
    assert "no verdicts" in fn("verdict", "show", "cd" * 32, "--store", store).stdout
    store.write_bytes(store.read_bytes()[:-4])
    torn = fn("verdict", "show", card.hex(), "--store", store, ok=False)
    assert torn.returncode == 5 and "truncated record" in torn.stderr
