"""``fraudnet roster``: create, change and verify the signed membership roster, on files.

Ceremony::

    fraudnet roster init --network N --f 1 --member ID ORG KEY ... --out genesis.draft
    fraudnet roster sign genesis.draft --node-dir DIR --member ID     # every founder
    fraudnet roster apply genesis.draft --chain roster.chain          # prints the anchor
    fraudnet roster propose --chain roster.chain --genesis HASH --remove ID --out p.draft
    fraudnet roster sign p.draft --node-dir DIR --member ID           # 2f+1 members
    fraudnet roster apply p.draft --chain roster.chain --genesis HASH
    fraudnet roster verify --chain roster.chain --genesis HASH

``KEY`` is a 64-hex Ed25519 public key or a node directory (its ``node.key``).
``sign`` records each vote in ``DIR/roster-votes.json`` and refuses to sign a
second, different proposal for the same roster version (that would be an
equivocation).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from fraudnet.adapters.storage.keys import load_node_key
from fraudnet.core import crypto
from fraudnet.core.consensus import (
    AddMember,
    Change,
    Member,
    Proposal,
    RemoveMember,
    Roster,
    RosterChain,
    RotateKey,
    SetF,
    SetPeers,
    apply_proposal,
    open_genesis,
    sign_genesis,
    sign_vote,
)
from fraudnet.core.consensus.chain import _sigs_from_wire, _sigs_to_wire
from fraudnet.core.consensus.codec import pack, unpack_canonical, want_bytes, want_list
from fraudnet.core.consensus.roster import ZERO_HASH
from fraudnet.errors import ConfigError, ConsensusError, InputError, IntegrityError, KeyFileError

_DRAFT: str = "fraudnet-roster-draft"


def _now_us() -> int:
    return time.time_ns() // 1000


def _pubkey(src: str) -> bytes:
    p = Path(src)
    if p.is_dir():
        return crypto.public_bytes(load_node_key(p))
    try:
        raw = bytes.fromhex(src)
    except ValueError:
        raise ConfigError(f"key {src!r}: neither a node directory nor 64 hex characters") from None
    if len(raw) != crypto.PUBLIC_KEY_LEN:
        raise ConfigError(f"key {src!r}: expected 32 bytes, found {len(raw)}")
    return raw


def _anchor(h: str) -> bytes:
    try:
        raw = bytes.fromhex(h)
    except ValueError:
        raise ConfigError(f"--genesis {h!r}: not hex") from None
    if len(raw) != 32:
        raise ConfigError("--genesis: expected a 64-hex-character SHA-256 hash")
    return raw


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read {what} ({e.strerror})") from None


def _write_new(path: Path, data: bytes, *, replace: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        if path.exists() and not replace:
            raise InputError(f"{path}: already exists; refusing to overwrite")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror})") from None


def load_chain(path: Path, genesis: str | None) -> RosterChain:
    """Read and verify a chain file (against ``genesis``, else its own genesis hash)."""
    data = _read(path, "roster chain")
    try:
        if genesis is None:
            w = want_list(unpack_canonical(data, "roster chain", 1 << 24), "roster chain", n=5)
            anchor = Roster.decode(want_bytes(w[2], "genesis")).hash
        else:
            anchor = _anchor(genesis)
        return RosterChain.decode(data, anchor)
    except ConsensusError as e:
        raise IntegrityError(f"{path}: {e}") from None


def _read_draft(path: Path) -> tuple[str, bytes, dict[str, bytes]]:
    try:
        w = want_list(unpack_canonical(_read(path, "draft"), "draft", 1 << 20), "draft", n=5)
        if w[0] != _DRAFT or w[1] != 1 or w[2] not in ("genesis", "proposal"):
            raise ConsensusError("malformed", "not a roster draft")
        return w[2], want_bytes(w[3], "draft body"), _sigs_from_wire(w[4], "draft signatures")
    except ConsensusError as e:
        raise InputError(f"{path}: {e}") from None


def _write_draft(
    path: Path, kind: str, raw: bytes, sigs: dict[str, bytes], *, replace: bool
) -> None:
    _write_new(path, pack([_DRAFT, 1, kind, raw, _sigs_to_wire(sigs)]), replace=replace)


def _member(spec: tuple[str, str, str], peers: dict[str, list[str]], at: int) -> Member:
    mid, org, key = spec
    try:
        return Member(mid, org, _pubkey(key), tuple(peers.get(mid, ())), at)
    except ConsensusError as e:
        raise ConfigError(f"member {mid!r}: {e}") from None


def _peers(pairs: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for mid, peer in pairs:
        out.setdefault(mid, []).append(peer)
    return out


def _describe(r: Roster) -> dict[str, Any]:
    return {
        "network": r.network, "version": r.version, "hash": r.hash.hex(),
        "prev_hash": r.prev_hash.hex(), "f": r.f, "n": r.n, "key_epoch": r.key_epoch,
        "members": [
            {"id": m.member_id, "org": m.org, "key": m.public_key.hex(),
             "peers": list(m.peer_ids), "joined_at_us": m.joined_at_us}
            for m in r.members
        ],
    }  # fmt: skip


@click.group()
def cli() -> None:
    """Create, change and verify the signed membership roster."""


@cli.command()
@click.option("--network", required=True, help="Network name (ASCII).")
@click.option("--f", "f", type=int, required=True, help="Fault bound (n >= 3f+1).")
@click.option("--member", "members", type=(str, str, str), multiple=True, required=True,
              metavar="ID ORG KEY", help="Founding member (KEY: node dir or hex).")  # fmt: skip
@click.option("--peer", "peers", type=(str, str), multiple=True, metavar="ID PEER_ID")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def init(network: str, f: int, members: tuple[tuple[str, str, str], ...],
         peers: tuple[tuple[str, str], ...], out: Path) -> None:  # fmt: skip
    """Write an unsigned genesis draft for the founding members to sign."""
    at = _now_us()
    ms = sorted((_member(m, _peers(peers), at) for m in members), key=lambda m: m.member_id)
    try:
        roster = Roster(network, 0, ZERO_HASH, f, 0, tuple(ms), at)
    except ConsensusError as e:
        raise ConfigError(f"genesis: {e}") from None
    _write_draft(out, "genesis", roster.encode(), {}, replace=False)
    click.echo(f"genesis draft {out}: {roster.n} members, f={f}, hash {roster.hash.hex()}")


@cli.command()
@click.option("--chain", type=click.Path(path_type=Path), required=True)
@click.option("--genesis", required=True, help="Trusted genesis hash (hex).")
@click.option("--add", "adds", type=(str, str, str), multiple=True, metavar="ID ORG KEY")
@click.option("--peer", "peers", type=(str, str), multiple=True, metavar="ID PEER_ID")
@click.option("--remove", "removes", multiple=True, metavar="ID")
@click.option("--rotate", "rotates", type=(str, str), multiple=True, metavar="ID KEY")
@click.option("--set-f", "set_f", type=int, default=None)
@click.option("--note", default="")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def propose(chain: Path, genesis: str, adds: tuple[tuple[str, str, str], ...],
            peers: tuple[tuple[str, str], ...], removes: tuple[str, ...],
            rotates: tuple[tuple[str, str], ...], set_f: int | None, note: str,
            out: Path) -> None:  # fmt: skip
    """Write a proposal changing the chain's latest version."""
    tip = load_chain(chain, genesis).tip
    at = _now_us()
    pmap = _peers(peers)
    changes: list[Change] = [AddMember(_member(a, pmap, at)) for a in adds]
    changes += [RemoveMember(m) for m in removes]
    changes += [RotateKey(m, _pubkey(k)) for m, k in rotates]
    changes += [SetPeers(m, tuple(p)) for m, p in pmap.items() if m not in {a[0] for a in adds}]
    if set_f is not None:
        changes.append(SetF(set_f))
    if not changes:
        raise ConfigError(
            "propose: give at least one of --add, --remove, --rotate, --set-f, --peer"
        )
    p = Proposal(tip.network, tip.version, tip.hash, tuple(changes), at, note)
    try:
        new = apply_proposal(tip, p)
    except ConsensusError as e:
        raise ConfigError(f"proposal: {e}") from None
    _write_draft(out, "proposal", p.encode(), {}, replace=False)
    click.echo(f"proposal {out}: v{tip.version} -> v{new.version}, needs {tip.quorum} votes")


def _record_vote(node_dir: Path, network: str, version: int, raw: bytes) -> None:
    path = node_dir / "roster-votes.json"
    try:
        votes = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable vote record ({e})") from None
    key = f"{network}/{version}"
    digest = crypto.key_id(raw)
    if votes.get(key, digest) != digest:
        raise ConfigError(
            f"already voted for another proposal on {key}; a second vote would be an equivocation"
        )
    votes[key] = digest
    _write_new(path, json.dumps(votes, sort_keys=True).encode(), replace=True)


@cli.command()
@click.argument("draft", type=click.Path(path_type=Path))
@click.option("--node-dir", type=click.Path(path_type=Path), required=True)
@click.option("--member", "member_id", required=True)
def sign(draft: Path, node_dir: Path, member_id: str) -> None:
    """Add this member's signature (genesis) or vote (proposal) to a draft."""
    kind, raw, sigs = _read_draft(draft)
    key = load_node_key(node_dir)
    if kind == "genesis":
        roster = Roster.decode(raw)
        m = roster.member(member_id)
        if m is None or m.public_key != crypto.public_bytes(key):
            raise KeyFileError(f"{node_dir}: key is not member {member_id!r}'s genesis key")
        sigs[member_id] = sign_genesis(roster, key)
    else:
        p = Proposal.decode(raw)
        _record_vote(node_dir, p.network, p.base_version, raw)
        sigs[member_id] = sign_vote(raw, key, p.network)
    _write_draft(draft, kind, raw, sigs, replace=True)
    click.echo(f"{draft}: signed by {member_id} ({len(sigs)} signatures)")


@cli.command()
@click.argument("draft", type=click.Path(path_type=Path))
@click.option("--chain", type=click.Path(path_type=Path), required=True)
@click.option("--genesis", default=None, help="Trusted genesis hash (needed for proposals).")
def apply(draft: Path, chain: Path, genesis: str | None) -> None:
    """Turn a fully signed draft into (the next version of) the chain file."""
    kind, raw, sigs = _read_draft(draft)
    try:
        if kind == "genesis":
            roster = open_genesis(raw, sigs)
            rc = RosterChain(raw, sigs, roster.hash)
            _write_new(chain, rc.encode())
            click.echo(f"genesis {roster.hash.hex()}")
            return
        if genesis is None:
            raise ConfigError("apply: --genesis HASH is required to extend a chain")
        rc = load_chain(chain, genesis)
        new = rc.extend(raw, sigs)
    except ConsensusError as e:
        raise IntegrityError(f"{draft}: {e}") from None
    _write_new(chain, rc.encode(), replace=True)
    click.echo(f"roster v{new.version} {new.hash.hex()} (key epoch {new.key_epoch})")


@cli.command()
@click.option("--chain", type=click.Path(path_type=Path), required=True)
@click.option("--genesis", default=None, help="Trusted genesis hash (else the file's own).")
@click.option("--json", "as_json", is_flag=True)
def show(chain: Path, genesis: str | None, as_json: bool) -> None:
    """Print the latest roster version."""
    tip = load_chain(chain, genesis).tip
    d = _describe(tip)
    if as_json:
        click.echo(json.dumps(d, sort_keys=True))
        return
    click.echo(f"network {tip.network} v{tip.version} hash {d['hash']}")
    click.echo(f"n={tip.n} f={tip.f} quorum={tip.quorum} key_epoch={tip.key_epoch}")
    for m in d["members"]:
        click.echo(f"  {m['id']:<16} {m['org']:<24} {m['key'][:16]}  {','.join(m['peers'])}")
    if genesis is None:
        click.echo("warning: anchor not checked (pass --genesis HASH)", err=True)


@cli.command()
@click.option("--chain", type=click.Path(path_type=Path), required=True)
@click.option("--genesis", required=True, help="Trusted genesis hash (hex).")
def verify(chain: Path, genesis: str) -> None:
    """Verify the whole chain from the trusted genesis hash."""
    rc = load_chain(chain, genesis)
    click.echo(f"ok: {len(rc.rosters)} versions, tip v{rc.tip.version} {rc.tip.hash.hex()}")
