"""``fraudnet audit``: inspect, verify and prove an audit log.

``LOG`` is a node directory or its ``audit/`` directory. Integrity failures
raise :class:`~fraudnet.errors.AuditError`/``IntegrityError`` (exit code 5);
``verify`` exits 0 only when the log is intact.

Trust: by default the public key in the log's manifest is used. Whoever can
rewrite the log can rewrite that too, so auditors pin the node's key with
``--key HEX`` (or a file holding it).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from fraudnet.adapters.storage.audit_files import (
    LeafHashes,
    find_checkpoint,
    iter_payloads,
    read_manifest,
    resolve_log_dir,
    verify_log,
)
from fraudnet.core import crypto
from fraudnet.core.audit.checkpoint import Checkpoint, open_checkpoint
from fraudnet.core.audit.framing import parse_record_payload
from fraudnet.core.audit.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from fraudnet.core.audit.schema import KINDS, decode_body
from fraudnet.errors import AuditError, InputError, IntegrityError

from .audit_report import render_html, summarise
from .audit_witness import export, witness_check

INCLUSION = "fraudnet-audit-inclusion/v1"
CONSISTENCY = "fraudnet-audit-consistency/v1"
CHECKPOINT = "fraudnet-audit-checkpoint/v1"
MAX_PROOF_FILE = 1 << 20

LOG_ARG = click.argument("log", type=click.Path(exists=True, file_okay=False, path_type=Path))
KEY_OPT = click.option("--key", "key", default=None, help="Pinned node public key (hex or file).")


def _key(value: str | None) -> bytes | None:
    if value is None:
        return None
    text = value
    p = Path(value)
    if p.is_file():
        text = p.read_text("utf-8", "replace").strip()
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise InputError(f"--key: {value!r} is neither 64 hex characters nor such a file") from None
    if len(raw) != crypto.PUBLIC_KEY_LEN:
        raise InputError(f"--key: expected a 32-byte Ed25519 public key, got {len(raw)} bytes")
    return raw


def _time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{name}: {value!r} is not ISO 8601 or µs since the epoch") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)


def _emit(doc: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(doc, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, "utf-8")
        click.echo(f"wrote {out}", err=True)


def _load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_PROOF_FILE:
            raise InputError(f"{path}: larger than {MAX_PROOF_FILE} bytes; not a {what}")
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a readable {what} ({e})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: not a {what}")
    return doc


def _hex(doc: dict[str, Any], key: str, where: Path) -> bytes:
    try:
        return bytes.fromhex(str(doc[key]))
    except (KeyError, ValueError):
        raise InputError(f"{where}: field {key!r} missing or not hex") from None


@click.group()
def cli() -> None:
    """Inspect, verify and prove a node's tamper-evident audit log."""


@cli.command()
@LOG_ARG
@KEY_OPT
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--witnesses", "witness_paths", multiple=True, is_eager=False,
              type=click.Path(exists=True, path_type=Path),
              help="Witness store (node dir, its witness/ dir or a .jsonl export); repeatable. "
                   "Several may follow one flag: --witnesses A B C.")  # fmt: skip
@click.argument("more_witnesses", nargs=-1, type=click.Path(exists=True, path_type=Path))
def verify(
    log: Path, key: str | None, as_json: bool, witness_paths: tuple[Path, ...],
    more_witnesses: tuple[Path, ...],
) -> None:  # fmt: skip
    """Recompute every hash and check every checkpoint; exit 0 only if intact.

    With ``--witnesses``, also check the log against the checkpoints its peers
    cosigned: a rewritten (re-signed) log, a log shorter than what witnesses
    saw, and two different histories shown to different peers (split view)
    are reported, and the exit code is non-zero.
    """
    d = resolve_log_dir(log)
    pinned = _key(key)
    if more_witnesses and not witness_paths:
        raise InputError(f"unexpected argument {str(more_witnesses[0])!r} (give --witnesses first)")
    r = verify_log(d, pinned)
    cp = r.last_checkpoint
    wrep = None
    if witness_paths:
        wrep = witness_check(d, pinned, (*witness_paths, *more_witnesses), r.records)
    if as_json:
        doc = {
            "ok": r.ok, "records": r.records, "segments": r.segments,
            "checkpoints": r.checkpoints, "expired": r.expired,
            "key_pinned": pinned is not None,
            "last_checkpoint": cp.as_json() if cp else None,
            "damage": None if r.damage is None else {
                "kind": r.damage.kind, "record": r.damage.record,
                "where": r.damage.where, "detail": r.damage.detail,
            },
            "notes": r.notes,
        }  # fmt: skip
        if wrep is not None:
            doc["witnesses"] = {
                "ok": wrep.ok, "checked": wrep.checked, "witness_keys": list(wrep.witnesses),
                "findings": [{"kind": f.kind, "tree_size": f.tree_size, "detail": f.detail}
                             for f in wrep.findings],
                "split_views": [sv.to_json() for sv in wrep.split_views],
            }  # fmt: skip
        click.echo(json.dumps(doc, indent=2))
    else:
        for n in r.notes:
            click.echo(f"note: {n}")
        if pinned is None:
            click.echo("note: key not pinned (--key); using the key in the log's manifest")
    if r.damage is not None:
        raise AuditError(f"{d}: {r.damage}")
    if wrep is not None:
        if not as_json:
            for f in wrep.findings:
                click.echo(f"witness: {f}")
        if not wrep.ok:
            first = next(f for f in wrep.findings if f.kind != "expired")
            raise AuditError(f"{d}: witnesses disagree with the log: {first}")
        if wrep.checked == 0:
            raise AuditError(f"{d}: no cosigned checkpoint of this log's key in the witness stores")
        if not as_json:
            click.echo(f"witnesses: {wrep.checked} cosigned checkpoints from "
                       f"{len(wrep.witnesses)} witnesses match the log")  # fmt: skip
    if not as_json:
        where = f"size {cp.tree_size} root {cp.root.hex()}" if cp else "none"
        click.echo(
            f"OK: {r.records} records in {r.segments} segments, {r.checkpoints} checkpoint "
            f"signatures verified; latest checkpoint {where}"
        )
        covered = cp.tree_size if cp else 0
        if covered < r.records:
            click.echo(f"note: records {covered}..{r.records - 1} are not yet checkpointed")


@cli.command()
@LOG_ARG
@click.option("--tx", "tx_id", default=None, help="Only this transaction id.")
@click.option("--entity", default=None, help="Only records naming this pseudonym (hex prefix).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS), help="Repeatable.")
@click.option("--since", default=None, help="ISO 8601 time or µs since the epoch (inclusive).")
@click.option("--until", default=None, help="ISO 8601 time or µs since the epoch (exclusive).")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table")
@click.option("--limit", type=click.IntRange(min=1), default=None)
def show(
    log: Path, tx_id: str | None, entity: str | None, kinds: tuple[str, ...],
    since: str | None, until: str | None, fmt: str, limit: int | None,
) -> None:  # fmt: skip
    """List records, filtered (not a verification: run 'verify' for that)."""
    d = resolve_log_dir(log)
    t0, t1 = _time(since, "--since"), _time(until, "--until")
    ent = entity.lower() if entity else None
    shown = 0
    if fmt == "table":
        click.echo(
            f"{'seq':>8}  {'time (UTC)':26}  {'kind':16} {'outcome':8} {'resource':24} actor"
        )
    for seq, payload in iter_payloads(d):
        try:
            rec = decode_body(parse_record_payload(payload)[2])
        except InputError as e:
            raise AuditError(f"{d}: record {seq}: {e}") from None
        if kinds and rec.kind not in kinds:
            continue
        if (t0 is not None and rec.at_us < t0) or (t1 is not None and rec.at_us >= t1):
            continue
        if (
            tx_id is not None
            and rec.details.get("tx_id") != tx_id
            and rec.resource != f"tx:{tx_id}"
        ):
            continue
        doc = rec.as_json()
        if ent is not None and not _mentions(doc, ent):
            continue
        if fmt == "jsonl":
            click.echo(json.dumps({"seq": seq, **doc}, separators=(",", ":")))
        else:
            at = datetime.fromtimestamp(rec.at_us / 1e6, UTC).isoformat(timespec="microseconds")
            click.echo(f"{seq:>8}  {at[:26]:26}  {rec.kind:16} {rec.outcome[:8]:8} "
                       f"{rec.resource[:24]:24} {rec.actor}")  # fmt: skip
        shown += 1
        if limit is not None and shown >= limit:
            break


def _mentions(doc: dict[str, Any], ent: str) -> bool:
    if ent in doc["resource"].lower() or ent in doc["origin"].lower():
        return True
    return any(isinstance(v, str) and v.lower().startswith(ent) for v in doc["details"].values())


@cli.command()
@LOG_ARG
@click.option("--record", "index", type=click.IntRange(min=0), required=True)
@click.option("--size", type=click.IntRange(min=1), default=None, help="Checkpoint tree size.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def prove(log: Path, index: int, size: int | None, out: Path | None) -> None:
    """Print an inclusion proof of record N against a signed checkpoint."""
    d = resolve_log_dir(log)
    m = read_manifest(d)
    signed, cp = find_checkpoint(d, size)
    if index >= cp.tree_size:
        raise InputError(
            f"--record {index}: the checkpoint covers records 0..{cp.tree_size - 1}; "
            "wait for the next checkpoint or pass --size"
        )
    leaves = LeafHashes(d, cp.tree_size)
    if leaves.range_hash(0, cp.tree_size) != cp.root:
        raise AuditError(f"{d}: records do not match checkpoint {cp.tree_size}; run verify")
    payload = next((p for s, p in iter_payloads(d, index) if s == index), None)
    if payload is None:
        raise InputError(f"--record {index}: not present in {d}")
    doc = {
        "type": INCLUSION, "network_id": m.network_id, "public_key": m.public_key.hex(),
        "record": index, "tree_size": cp.tree_size, "record_payload": payload.hex(),
        "leaf_hash": leaf_hash(payload).hex(),
        "path": [h.hex() for h in inclusion_proof(index, cp.tree_size, leaves.range_hash)],
        "checkpoint": signed.hex(),
    }  # fmt: skip
    _emit(doc, out)


def _open_cp(signed: bytes, pub: bytes, net: str, where: Path) -> Checkpoint:
    try:
        return open_checkpoint(signed, pub, net)
    except IntegrityError as e:
        raise IntegrityError(f"{where}: {e}") from None


@cli.command("check-proof")
@click.argument("proof", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@KEY_OPT
def check_proof(proof: Path, key: str | None) -> None:
    """Verify an inclusion proof file against its signed checkpoint alone."""
    doc = _load_json(proof, "proof")
    if doc.get("type") != INCLUSION:
        raise InputError(f"{proof}: not a {INCLUSION} document")
    pub = _key(key) or _hex(doc, "public_key", proof)
    net = str(doc.get("network_id", ""))
    cp = _open_cp(_hex(doc, "checkpoint", proof), pub, net, proof)
    payload = _hex(doc, "record_payload", proof)
    try:
        index, size = int(doc["record"]), int(doc["tree_size"])
        path = [bytes.fromhex(h) for h in doc["path"]]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{proof}: record, tree_size or path malformed") from None
    seq = parse_record_payload(payload)[0]
    if size != cp.tree_size or seq != index:
        raise IntegrityError(f"{proof}: record/tree size disagree with the payload or checkpoint")
    if not verify_inclusion(leaf_hash(payload), index, size, path, cp.root):
        raise IntegrityError(f"{proof}: record {index} is NOT included under the checkpoint root")
    rec = decode_body(parse_record_payload(payload)[2])
    if key is None:
        click.echo("note: key not pinned (--key); trusting the key named in the proof")
    click.echo(
        f"OK: record {index} ({rec.kind} {rec.resource} {rec.outcome}) is in the log of "
        f"{crypto.key_id(pub)} at tree size {size} (root {cp.root.hex()})"
    )


def _checkpoint_arg(d: Path, value: str, pub: bytes, net: str) -> tuple[bytes, Checkpoint]:
    p = Path(value)
    if p.is_file():
        doc = _load_json(p, "checkpoint")
        signed = _hex(doc, "checkpoint" if "checkpoint" in doc else "signed", p)
        return signed, _open_cp(signed, pub, net, p)
    if not value.isdigit():
        raise InputError(f"{value!r}: neither a tree size nor a checkpoint file")
    return find_checkpoint(d, int(value))


@cli.command()
@LOG_ARG
@click.argument("old")
@click.argument("new")
@KEY_OPT
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def consistency(log: Path, old: str, new: str, key: str | None, out: Path | None) -> None:
    """Prove checkpoint NEW extends OLD (each a tree size or a saved checkpoint file)."""
    d = resolve_log_dir(log)
    m = read_manifest(d)
    pub = _key(key) or m.public_key
    s_old, c_old = _checkpoint_arg(d, old, pub, m.network_id)
    s_new, c_new = _checkpoint_arg(d, new, pub, m.network_id)
    if c_old.tree_size > c_new.tree_size:
        raise InputError(f"OLD ({c_old.tree_size}) is larger than NEW ({c_new.tree_size})")
    leaves = LeafHashes(d, c_new.tree_size)
    proof = consistency_proof(c_old.tree_size, c_new.tree_size, leaves.range_hash)
    if not verify_consistency(c_old.tree_size, c_new.tree_size, c_old.root, c_new.root, proof):
        raise IntegrityError(
            f"{d}: checkpoint {c_new.tree_size} does NOT extend checkpoint {c_old.tree_size} "
            "(history was rewritten or the checkpoints are from different histories)"
        )
    doc = {
        "type": CONSISTENCY, "network_id": m.network_id, "public_key": pub.hex(),
        "old": c_old.as_json() | {"checkpoint": s_old.hex()},
        "new": c_new.as_json() | {"checkpoint": s_new.hex()},
        "proof": [h.hex() for h in proof], "verified": True,
    }  # fmt: skip
    _emit(doc, out)


@cli.command()
@LOG_ARG
@click.option("--size", type=click.IntRange(min=0), default=None)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def checkpoint(log: Path, size: int | None, out: Path | None) -> None:
    """Print a signed checkpoint (default: the latest) to keep outside the node."""
    d = resolve_log_dir(log)
    m = read_manifest(d)
    signed, cp = find_checkpoint(d, size)
    doc = {
        "type": CHECKPOINT,
        "network_id": m.network_id,
        **cp.as_json(),
        "checkpoint": signed.hex(),
    }
    _emit(doc, out)


@cli.command()
@LOG_ARG
@click.option("--json", "as_json", is_flag=True)
def stats(log: Path, as_json: bool) -> None:
    """Record counts by kind, outcomes, latency percentiles, segments."""
    d = resolve_log_dir(log)
    j = summarise(d).as_json()
    if as_json:
        click.echo(json.dumps(j, indent=2))
        return
    for k, v in j.items():
        if isinstance(v, dict):
            inner = ", ".join(f"{a}={b}" for a, b in v.items())
            click.echo(f"{k}: {inner}")
        else:
            click.echo(f"{k}: {v}")


@cli.command()
@LOG_ARG
@click.option("--html", "out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def report(log: Path, out: Path) -> None:
    """Write an HTML page: timeline, outcome counts, latency percentiles."""
    d = resolve_log_dir(log)
    s = summarise(d, keep_events=True)
    try:
        out.write_text(render_html(s, f"fraudnet audit report: {d}"), "utf-8")
    except OSError as e:
        raise InputError(f"{out}: cannot write ({e.strerror})") from None
    click.echo(f"wrote {out} ({s.records} records)", err=sys.stderr.isatty())


cli.add_command(export)
