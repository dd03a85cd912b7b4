"""``fraudnet policy``: check, diff, backtest and deploy policy bundles; edit their lists.

* ``check FILE`` -- validate (syntax, unknown fields, types, conditions) and
  print the bundle's id and SHA-256;
* ``diff OLD NEW`` -- what changed, by rule / segment / velocity / list entry;
* ``backtest FILE --data CSV [--live FILE]`` -- replay history through the
  feature engine and the policies (see :mod:`fraudnet.core.policy.backtest`);
* ``lists add|remove FILE --list ID ...`` -- add a raw identifier as its
  node-local pseudonym (the raw value is read from stdin or a hidden prompt,
  never stored, never printed);
* ``deploy FILE --node DIR [--shadow]`` -- validate, then atomically replace
  the node's ``policy/active.toml`` (or ``policy/shadow.toml``); the node
  reloads it (see docs/policy.md).
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np

from fraudnet.core.ids import key64, pseudonym
from fraudnet.core.policy import Policy, diff_bundles, load_bundle
from fraudnet.core.policy.inputs import CHANNEL_CODES, encode_bin, encode_letters
from fraudnet.core.policy.locate import Locator
from fraudnet.core.policy.model import PSEUDONYMISED_KINDS, Bundle
from fraudnet.core.records import REF_LEN
from fraudnet.errors import InputError, PolicyError

__all__ = ["cli"]

MAX_GENERATED_ROWS = 5_000_000


def read_bundle(path: Path) -> Bundle:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PolicyError(f"{path}: cannot read ({e.strerror or e})") from None
    return load_bundle(data, str(path))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.group()
def cli() -> None:
    """Risk policy bundles: check, diff, backtest, lists, deploy."""


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def check(file: Path, as_json: bool) -> None:
    """Validate FILE; print its id, hash and contents summary."""
    b = read_bundle(file)
    info = {
        "ok": True, "policy_id": b.policy_id, "sha256": b.sha256, "rules": len(b.rules),
        "segments": len(b.segments), "velocities": len(b.velocities), "lists": len(b.lists),
        "list_entries": sum(len(x.entries) for x in b.lists), "needs_features": b.needs_features(),
    }  # fmt: skip
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"{file}: ok  {b.policy_id}  sha256={b.sha256}")
    click.echo(f"  {info['rules']} rules, {info['segments']} segments, {info['velocities']} "
               f"velocities, {info['lists']} lists ({info['list_entries']} entries)")  # fmt: skip


@cli.command()
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def diff(old: Path, new: Path, as_json: bool) -> None:
    """What changed from OLD to NEW (by identity, not text)."""
    d = diff_bundles(read_bundle(old), read_bundle(new))
    if as_json:
        click.echo(json.dumps(d))
        return
    click.echo(f"--- {d['old']['policy_id']}\n+++ {d['new']['policy_id']}")
    for c in d["changes"] or (["(no changes)"] if d["identical"] else ["(formatting only)"]):
        click.echo(f"  {c}")
    for w in d["warnings"]:
        click.echo(f"  warning: {w}")


# ------------------------------------------------------------------ backtest
def _load_generated(path: Path, secret: bytes, rates: dict[str, float]) -> dict[str, Any]:
    """Records in fraudnet's default field names (``fraudnet generate``), CSV or JSON Lines."""
    from fraudnet.core.records import to_record
    from fraudnet.core.transaction import DEFAULT_FIELDS, Normaliser, parse_record
    from fraudnet.errors import TransactionError

    norm = Normaliser(rates=rates)
    cols: dict[str, list[Any]] = {k: [] for k in (
        "ts_s", "amount", "card_key", "terminal_key", "fraud", "mcc", "channel", "country",
        "currency", "bin", "merchant_key", "device_key")}  # fmt: skip
    try:
        f = path.open(encoding="utf-8", newline="")
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        rows: Any = (
            (json.loads(line) for line in f if line.strip())
            if path.suffix == ".jsonl" else csv.DictReader(f)
        )  # fmt: skip
        for i, raw in enumerate(rows, start=2 if path.suffix != ".jsonl" else 1):
            if i > MAX_GENERATED_ROWS:
                raise InputError(f"{path}: more than {MAX_GENERATED_ROWS} rows")
            try:
                tx = parse_record(raw, DEFAULT_FIELDS, norm)
            except TransactionError as e:
                raise e.located(str(path), f"line {i}") from None
            r = to_record(tx, secret)
            cols["ts_s"].append(r.ts_us / 1e6)
            cols["amount"].append(r.amount)
            cols["card_key"].append(key64(r.card_ref))
            cols["terminal_key"].append(key64(r.terminal_ref))
            cols["fraud"].append(1 if r.label == 1 else 0)
            cols["mcc"].append(-1 if r.mcc is None else r.mcc)
            cols["channel"].append(CHANNEL_CODES.get(r.channel or "", -1))
            cols["country"].append(encode_letters(r.country))
            cols["currency"].append(encode_letters(r.currency))
            cols["bin"].append(encode_bin(r.bin))
            cols["merchant_key"].append(key64(r.merchant_ref) if r.merchant_ref else 0)
            cols["device_key"].append(key64(r.device_ref) if r.device_ref else 0)
    if not cols["ts_s"]:
        raise InputError(f"{path}: no transactions")
    ts = np.array(cols["ts_s"], dtype=np.float64)
    order = np.argsort(ts, kind="stable")
    dtypes = {"ts_s": np.float64, "amount": np.float64, "card_key": np.uint64,
              "terminal_key": np.uint64, "fraud": np.int8, "merchant_key": np.uint64,
              "device_key": np.uint64}  # fmt: skip
    out = {k: np.array(v, dtype=dtypes.get(k, np.int64))[order] for k, v in cols.items()}
    return out


def _load_history(
    data: Path, preset: str, secret: bytes, rates: dict[str, float]
) -> dict[str, Any]:
    if preset == "auto":
        try:
            import gzip

            with gzip.open(data, "rt") if data.suffix == ".gz" else data.open() as f:
                head = f.readline()
        except OSError as e:
            raise InputError(f"{data}: cannot read ({e.strerror or e})") from None
        preset = "fdh" if "TX_DATETIME" in head else "generated"
    if preset == "fdh":
        from fraudnet.training.data import load_csv

        t = load_csv(data)
        return {"ts_s": t.ts_s, "amount": t.amount, "card_key": t.customer.astype(np.uint64),
                "terminal_key": t.terminal.astype(np.uint64), "fraud": t.fraud}  # fmt: skip
    return _load_generated(data, secret, rates)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _print_report(rep: dict[str, Any]) -> None:
    click.echo(f"{rep['data']}: {rep['transactions']:,} transactions, {rep['frauds']:,} frauds "
               f"({rep['fraud_amount']:,.2f} fraud amount), model: {rep['model']}")  # fmt: skip
    for p in rep["policies"]:
        o = p["overall"]
        click.echo(f"\n[{p['role']}] {p['policy_id']}  sha256={p['sha256'][:16]}")
        click.echo(f"  flagged {o['flagged']:,}  precision {_fmt(o['precision'])}  recall "
                   f"{_fmt(o['recall'])}  fraud caught {o['flagged_frauds']:,} "
                   f"({o['fraud_amount_caught']:,.2f}, "
                   f"share {_fmt(o['fraud_amount_caught_share'])})"
                   f"  block precision {_fmt(o['block_precision'])}")  # fmt: skip
        click.echo(f"  {'action':<10}{'tx':>12}{'frauds':>10}{'fraud amount':>16}")
        for a, s in p["by_action"].items():
            click.echo(f"  {a:<10}{s['transactions']:>12,}{s['frauds']:>10,}"
                       f"{s['fraud_amount']:>16,.2f}")  # fmt: skip
        rows = [("rule", r) for r in p["rules"]] + [("list", r) for r in p["lists"]] + [
            ("segment", r) for r in p["segments"]]  # fmt: skip
        click.echo(f"  {'source':<44}{'matched':>10}{'frauds':>9}{'precision':>10}"
                   f"{'fraud amount':>14}{'decided':>9}")  # fmt: skip
        for kind, r in rows:
            label = f"{kind} {r['id']}" + (
                f"@v{r['version']} ({r['action']})" if kind == "rule" else ""
            )
            click.echo(f"  {label[:44]:<44}{r['matched']:>10,}{r['matched_frauds']:>9,}"
                       f"{_fmt(r['precision']):>10}{r['fraud_amount_matched']:>14,.2f}"
                       f"{r['decided']:>9,}")  # fmt: skip


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="History: FDH CSV(.gz) or a file from 'fraudnet generate' (CSV/JSONL).",
)
@click.option(
    "--live",
    "live",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The live policy, reported next to the candidate.",
)
@click.option(
    "--preset", type=click.Choice(["auto", "fdh", "generated"]), default="auto", show_default=True
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Score with this model (score is 0 without one).",
)
@click.option(
    "--node",
    "node_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Use this node's local secret, so card/terminal list entries match.",
)
@click.option("--rate", "rates", multiple=True, help="Exchange rate CUR=X (generated data).")
@click.option("--json", "as_json", is_flag=True)
def backtest(file: Path, data: Path, live: Path | None, preset: str, model_path: Path | None,
             node_dir: Path | None, rates: tuple[str, ...], as_json: bool) -> None:  # fmt: skip
    """Replay history (event-time order) through the feature engine and FILE (and --live)."""
    from fraudnet.core.policy.backtest import backtest_many

    policies = [("candidate", Policy(read_bundle(file)))]
    if live is not None:
        policies.append(("live", Policy(read_bundle(live))))
    rate_map: dict[str, float] = {}
    for r in rates:
        cur, _, val = r.partition("=")
        try:
            rate_map[cur.strip().upper()] = float(val)
        except ValueError:
            raise PolicyError(f"--rate {r!r}: expected CUR=NUMBER") from None
    secret = secrets.token_bytes(32)
    if node_dir is not None:
        from fraudnet.adapters.storage.keys import load_local_secret

        secret = load_local_secret(node_dir)
    cols = _load_history(data, preset, secret, rate_map)
    model, model_id = None, "none (score = 0)"
    if model_path is not None:
        from fraudnet.training.modelio import load_model

        model, model_id = load_model(model_path)
    base = {k: cols[k] for k in ("ts_s", "amount", "card_key", "terminal_key", "fraud")}
    extra = {k: v for k, v in cols.items() if k not in base}
    stats = backtest_many(policies, **base, extra=extra, model=model)
    fraud = cols["fraud"] == 1
    rep = {
        "data": str(data), "transactions": int(fraud.shape[0]), "frauds": int(fraud.sum()),
        "fraud_amount": round(float(cols["amount"][fraud].sum()), 2), "model": model_id,
        "policies": [s.report() for s in stats],
    }  # fmt: skip
    if as_json:
        click.echo(json.dumps(rep))
    else:
        _print_report(rep)


# --------------------------------------------------------------------- lists
@cli.group()
def lists() -> None:
    """Add or remove list entries (raw identifiers are stored as pseudonyms only)."""


def _list_index(bundle: Bundle, list_id: str) -> int:
    for i, lst in enumerate(bundle.lists):
        if lst.id == list_id:
            return i
    raise PolicyError(f"{bundle.source}: no list {list_id!r}")


def _ident(bundle: Bundle, idx: int, node_dir: Path | None, value: str | None) -> tuple[str, str]:
    """(TOML key, stored identifier) for a raw value read from --value, stdin or a prompt."""
    kind = bundle.lists[idx].kind
    if value is None or value == "-":
        value = (sys.stdin.readline() if value == "-" else
                 click.prompt(f"{kind} identifier", hide_input=True)).strip()  # fmt: skip
    if not value:
        raise PolicyError("empty identifier")
    if kind not in PSEUDONYMISED_KINDS:
        return "value", value.upper() if kind == "country" else value
    if node_dir is None:
        raise PolicyError(f"{kind} entries are node-local pseudonyms: pass --node DIR")
    from fraudnet.adapters.storage.keys import load_local_secret

    ref = pseudonym(load_local_secret(node_dir), kind, value)[:REF_LEN]
    return "ref", ref.hex()


def _edit(file: Path, text: str) -> Bundle:
    """Validate the edited text, then replace the file atomically; returns the new bundle."""
    data = text.encode("utf-8")
    bundle = load_bundle(data, str(file))
    atomic_write(file, data)
    return bundle


@lists.command("add")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_id", required=True)
@click.option("--value", default=None, help="Identifier; '-' reads stdin; omitted: prompt.")
@click.option("--node", "node_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--expires", default=None, help="ISO 8601 date/time (UTC if no offset).")
@click.option("--note", default="")
def lists_add(file: Path, list_id: str, value: str | None, node_dir: Path | None,
              expires: str | None, note: str) -> None:  # fmt: skip
    """Add an entry to list LIST of bundle FILE."""
    bundle = read_bundle(file)
    idx = _list_index(bundle, list_id)
    key, ident = _ident(bundle, idx, node_dir, value)
    if any(e.ident == ident for e in bundle.lists[idx].entries):
        raise PolicyError(f"{file}: list {list_id!r} already holds this entry")
    lines = ["[[lists.entries]]", f"{key} = {json.dumps(ident)}"]
    if expires:
        try:
            dt = datetime.fromisoformat(expires)
        except ValueError:
            raise PolicyError(f"--expires {expires!r}: not an ISO 8601 date/time") from None
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
        lines.append(f"expires = {dt.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if note:
        lines.append(f"note = {json.dumps(note)}")
    text = file.read_text(encoding="utf-8")
    loc = Locator(text)
    block = loc._block([("lists", idx)])
    assert block is not None
    src = text.splitlines()
    end = block[1] - 1  # 0-based index of the first line after the list's block
    while end > block[0] and not src[end - 1].strip():
        end -= 1
    new = [*src[:end], "", *lines, "", *src[end:]]
    b = _edit(file, "\n".join(new).rstrip("\n") + "\n")
    click.echo(f"{file}: added {key} {ident} to {list_id}; now {b.policy_id} sha256={b.sha256}")


@lists.command("remove")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_id", required=True)
@click.option("--ref", default=None, help="Stored identifier (ref or value) to remove.")
@click.option("--value", default=None, help="Raw identifier; '-' reads stdin.")
@click.option("--node", "node_dir", type=click.Path(file_okay=False, path_type=Path))
def lists_remove(file: Path, list_id: str, ref: str | None, value: str | None,
                 node_dir: Path | None) -> None:  # fmt: skip
    """Remove an entry from list LIST of bundle FILE."""
    bundle = read_bundle(file)
    idx = _list_index(bundle, list_id)
    ident = ref if ref is not None else _ident(bundle, idx, node_dir, value)[1]
    pos = [j for j, e in enumerate(bundle.lists[idx].entries) if e.ident == ident]
    if not pos:
        raise PolicyError(f"{file}: list {list_id!r} has no entry {ident}")
    text = file.read_text(encoding="utf-8")
    block = Locator(text)._block([("lists", idx), ("entries", pos[0])])
    if block is None:
        raise PolicyError(f"{file}: list {list_id!r} uses an inline entries array; edit it by hand")
    src = text.splitlines()
    new = src[: block[0] - 1] + src[block[1] - 1 :]
    b = _edit(file, "\n".join(new).rstrip("\n") + "\n")
    click.echo(f"{file}: removed {ident} from {list_id}; now {b.policy_id} sha256={b.sha256}")


# -------------------------------------------------------------------- deploy
@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--node", "node_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--shadow", is_flag=True, help="Install as the shadow candidate instead.")
def deploy(file: Path, node_dir: Path, shadow: bool) -> None:
    """Validate FILE and atomically install it in the node directory."""
    data = file.read_bytes() if file.exists() else b""
    if not data:
        raise PolicyError(f"{file}: missing or empty")
    b = load_bundle(data, str(file))
    if not node_dir.is_dir():
        raise PolicyError(f"{node_dir}: not a node directory")
    target = node_dir / "policy" / ("shadow.toml" if shadow else "active.toml")
    atomic_write(target, data)
    click.echo(f"{target}: installed {b.policy_id} sha256={b.sha256}")
