"""``fraudnet verdict``: check verdict certificates offline (no network, no node).

* ``verify CERT --genesis HASH --rosters FILE`` -- one certificate file.
* ``show ENTITY --store FILE`` -- the certificates a node stored for an entity
  pseudonym (hex), verified when ``--genesis`` and ``--rosters`` are given.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from fraudnet.adapters.storage.verdicts import read_certificates
from fraudnet.core.consensus import Certificate, CertificateCheck, VerdictPolicy, verify_certificate
from fraudnet.errors import ConfigError, ConsensusError, InputError, IntegrityError

from .roster import load_chain


def _policy(window_s: float, grace_s: float) -> VerdictPolicy:
    try:
        return VerdictPolicy(int(window_s * 1e6), int(grace_s * 1e6))
    except ConsensusError as e:
        raise ConfigError(f"--window-s/--grace-s: {e}") from None


def _line(c: CertificateCheck) -> str:
    state = {None: "", True: " EXPIRED", False: " live"}[c.expired]
    tip = "" if c.roster_is_tip else " (roster superseded since)"
    return (
        f"{c.level} {c.entity_kind} {c.entity.hex()} window {c.window} roster v{c.roster_version}"
        f"{tip} members {','.join(c.members)}{state}"
    )


@click.group()
def cli() -> None:
    """Check verdict certificates offline."""


@cli.command()
@click.argument("cert_file", type=click.Path(path_type=Path))
@click.option("--genesis", required=True, help="Trusted genesis hash (hex).")
@click.option("--rosters", type=click.Path(path_type=Path), required=True, help="Roster chain.")
@click.option("--at-us", type=int, default=None, help="Also report expiry at this time (µs).")
@click.option("--window-s", type=float, default=600.0, show_default=True)
@click.option("--grace-s", type=float, default=60.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def verify(cert_file: Path, genesis: str, rosters: Path, at_us: int | None, window_s: float,
           grace_s: float, as_json: bool) -> None:  # fmt: skip
    """Verify one certificate against the roster chain (exit 5 if it does not verify)."""
    chain = load_chain(rosters, genesis)
    try:
        data = cert_file.read_bytes()
    except OSError as e:
        raise InputError(f"{cert_file}: cannot read ({e.strerror})") from None
    try:
        check = verify_certificate(
            Certificate.decode(data), chain, policy=_policy(window_s, grace_s), now_us=at_us
        )
    except ConsensusError as e:
        raise IntegrityError(f"{cert_file}: certificate does not verify: {e}") from None
    if as_json:
        click.echo(json.dumps({
            "ok": True, "level": check.level, "entity_kind": check.entity_kind,
            "entity": check.entity.hex(), "window": check.window,
            "roster_version": check.roster_version, "roster_is_tip": check.roster_is_tip,
            "members": list(check.members), "expired": check.expired,
        }, sort_keys=True))  # fmt: skip
    else:
        click.echo(f"ok: {_line(check)}")


@cli.command()
@click.argument("entity")
@click.option("--store", type=click.Path(path_type=Path), default=None, help="Verdict store.")
@click.option("--node-dir", type=click.Path(path_type=Path), default=None,
              help="A node directory: its state/verdicts.store (and, with --genesis, "
                   "state/roster.chain or roster.chain).")  # fmt: skip
@click.option("--kind", default="card", show_default=True)
@click.option("--genesis", default=None, help="Trusted genesis hash (hex), to verify.")
@click.option("--rosters", type=click.Path(path_type=Path), default=None, help="Roster chain.")
@click.option("--at-us", type=int, default=None)
@click.option("--window-s", type=float, default=600.0, show_default=True)
@click.option("--grace-s", type=float, default=60.0, show_default=True)
def show(entity: str, store: Path | None, node_dir: Path | None, kind: str,
         genesis: str | None, rosters: Path | None, at_us: int | None, window_s: float,
         grace_s: float) -> None:  # fmt: skip
    """List (and verify) the stored certificates of an entity pseudonym (hex)."""
    if node_dir is not None and store is None:
        store = node_dir / "state" / "verdicts.store"
        if genesis is not None and rosters is None:
            adopted = node_dir / "state" / "roster.chain"
            rosters = adopted if adopted.exists() else node_dir / "roster.chain"
    elif (store is None) == (node_dir is None):
        raise ConfigError("give exactly one of --store FILE or --node-dir DIR")
    if store is None:  # unreachable; keeps the type checker honest
        raise ConfigError("no verdict store given")
    try:
        ent = bytes.fromhex(entity)
    except ValueError:
        raise ConfigError(f"entity {entity!r}: expected a hex pseudonym") from None
    if (genesis is None) != (rosters is None):
        raise ConfigError("give both --genesis and --rosters to verify, or neither")
    chain = load_chain(rosters, genesis) if rosters is not None else None
    certs = [c for c in read_certificates(store) if c.entity == ent and c.entity_kind == kind]
    if not certs:
        click.echo(f"no verdicts for {kind} {entity}")
        return
    policy = _policy(window_s, grace_s)
    for c in certs:
        if chain is None:
            members = ",".join(m for m, _, _ in c.statements)
            click.echo(f"{c.level} window {c.window} members {members} (not verified)")
            continue
        try:
            click.echo(f"ok: {_line(verify_certificate(c, chain, policy=policy, now_us=at_us))}")
        except ConsensusError as e:
            raise IntegrityError(f"{store}: certificate for window {c.window}: {e}") from None
