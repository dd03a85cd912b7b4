"""``fraudnet ingest FILE --node URL|DIR``: send a transaction file to a running node.

Records go in batches to ``POST /v1/ingest``; a batch is acknowledged once
the node has decided (or dead-lettered) every record of it. Progress (the
number of leading records acknowledged) is saved after every
acknowledgement, so after a crash of either side re-running the same
command resumes where it stopped; records re-sent from an unacknowledged
batch are recognised by the node's de-duplication store and not decided
twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from fraudnet.errors import ConfigError, InputError, UnavailableError

__all__ = ["cli", "resolve_node"]

PRESETS = ("fdh",)


def resolve_node(node: str, token: str | None) -> tuple[str, str]:
    """URL and token from ``--node`` (a URL, or a node directory with run/endpoints.json)."""
    if node.startswith(("http://", "https://")):
        tok = token or os.environ.get("FRAUDNET_TOKEN")
        if not tok:
            raise ConfigError("--node is a URL: give --token-file or set FRAUDNET_TOKEN")
        return node.rstrip("/"), tok
    d = Path(node)
    ep = d / "run" / "endpoints.json"
    try:
        url = str(json.loads(ep.read_text())["api"])
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"{ep}: not found or unreadable; is the node running?") from None
    if token:
        return url, token
    from fraudnet.adapters.storage.keys import load_api_token

    return url, load_api_token(d)


@dataclass
class _Progress:
    path: Path
    file: str
    size: int
    acked: int = 0
    totals: dict[str, int] = field(default_factory=dict)

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"file": self.file, "size": self.size, "acked": self.acked, "totals": self.totals}
            )
        )
        tmp.replace(self.path)


def _load_progress(state: Path, file: Path, restart: bool) -> _Progress:
    size = file.stat().st_size
    p = _Progress(state, str(file.resolve()), size)
    if state.exists() and not restart:
        try:
            d = json.loads(state.read_text())
        except ValueError:
            raise InputError(f"{state}: corrupt progress file; use --restart") from None
        if d.get("file") != p.file or d.get("size") != size:
            raise InputError(
                f"{state}: progress is for another version of {file}; use --restart to start over"
            )
        p.acked = int(d.get("acked", 0))
        p.totals = {k: int(v) for k, v in d.get("totals", {}).items()}
    return p


def _remap(rec: Any, preset: str | None) -> Any:
    if preset is None or not isinstance(rec, dict):
        return rec
    from fraudnet.core.transaction import FDH_FIELDS

    out: dict[str, Any] = {}
    for ours, theirs in (
        ("tx_id", FDH_FIELDS.tx_id),
        ("timestamp", FDH_FIELDS.timestamp),
        ("card", FDH_FIELDS.card),
        ("terminal_id", FDH_FIELDS.terminal_id),
        ("amount", FDH_FIELDS.amount),
        ("label", FDH_FIELDS.label),
    ):
        if theirs is not None and theirs in rec:
            out[ours] = rec[theirs]
    return out


def _batches(
    path: Path, fmt: str | None, skip: int, size: int, preset: str | None
) -> Iterator[list[str]]:
    from fraudnet.adapters.sources import Unreadable, read_records

    batch: list[str] = []
    for i, (loc, rec, _raw) in enumerate(read_records(path, fmt)):
        if i < skip:
            continue
        if isinstance(rec, Unreadable):
            # the node dead-letters it, with this reason and the file location
            bad = {"__unreadable__": rec.reason, "__location__": f"{path.name} {loc}"}
            batch.append(json.dumps(bad))
        else:
            batch.append(json.dumps(_remap(rec, preset), separators=(",", ":")))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _send_all(
    url: str,
    token: str,
    batches: Iterator[list[str]],
    prog: _Progress,
    concurrency: int,
    retry_for: float,
    on_ack: Any,
) -> None:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    timeout = aiohttp.ClientTimeout(total=120)

    async def post(session: aiohttp.ClientSession, lines: list[str]) -> dict[str, Any]:
        body = ("\n".join(lines) + "\n").encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry_for
        delay = 0.2
        while True:
            try:
                async with session.post(f"{url}/v1/ingest", data=body, headers=headers) as r:
                    if r.status == 200:
                        result: dict[str, Any] = await r.json()
                        return result
                    text = (await r.text())[:300]
                    if r.status in (401, 403):
                        raise ConfigError(f"{url}: authentication refused ({r.status})")
                    if r.status != 503 and r.status < 500:
                        raise InputError(f"{url}: rejected a batch ({r.status}): {text}")
            except (aiohttp.ClientConnectionError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise UnavailableError(
                    f"{url}: node unavailable for {retry_for:.0f} s; progress saved "
                    f"({prog.acked} records acknowledged): re-run the same command to resume"
                )
            await asyncio.sleep(delay)  # retry backoff (not synchronisation)
            delay = min(delay * 2, 5.0)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        pending: list[tuple[int, asyncio.Task[dict[str, Any]]]] = []
        for lines in batches:
            pending.append((len(lines), asyncio.ensure_future(post(session, lines))))
            while len(pending) >= concurrency or (pending and pending[0][1].done()):
                n, task = pending.pop(0)
                on_ack(n, await task)
        for n, task in pending:
            on_ack(n, await task)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--node", required=True, help="Node API URL, or a node directory.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default=None)
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default=None,
    help="Column layout of FILE (fdh = Fraud Detection Handbook CSV).",
)
@click.option(
    "--batch", "batch_size", default=500, show_default=True, type=click.IntRange(1, 10_000)
)
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Progress file (default: .fraudnet-ingest/<file>.<hash>.json).",
)
@click.option("--restart", is_flag=True, help="Ignore saved progress and start from the top.")
@click.option(
    "--retry-for", default=60.0, show_default=True, help="Seconds to retry an unavailable node."
)
@click.option("--quiet", "-q", is_flag=True)
def cli(
    file: Path,
    node: str,
    token_file: Path | None,
    fmt: str | None,
    preset: str | None,
    batch_size: int,
    concurrency: int,
    state: Path | None,
    restart: bool,
    retry_for: float,
    quiet: bool,
) -> None:
    """Send FILE (CSV or JSON Lines) to a node; resumable, never decides twice."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    token = None
    if token_file is not None:
        from fraudnet.adapters.storage.keys import read_secret_file

        token = read_secret_file(token_file).decode().strip()
    url, tok = resolve_node(node, token)
    if state is None:
        h = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:10]
        state = Path.cwd() / ".fraudnet-ingest" / f"{file.name}.{h}.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    prog = _load_progress(state, file, restart)
    if prog.acked and not quiet:
        click.echo(f"resuming after {prog.acked} acknowledged records", err=True)
    totals = prog.totals
    for k in ("received", "decided", "duplicates", "dead_lettered"):
        totals.setdefault(k, 0)
    bar = Progress(
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        disable=quiet,
        transient=False,
    )

    with bar:
        task = bar.add_task("ingest", total=None, completed=prog.acked, info="")

        def on_ack(n: int, result: dict[str, Any]) -> None:
            prog.acked += n
            for k in ("received", "decided", "duplicates", "dead_lettered"):
                totals[k] += int(result.get(k, 0))
            prog.save()
            bar.update(
                task,
                completed=prog.acked,
                info=f"decided {totals['decided']} dead {totals['dead_lettered']} "
                f"dup {totals['duplicates']}",
            )

        asyncio.run(
            _send_all(
                url,
                tok,
                _batches(file, fmt, prog.acked, batch_size, preset),
                prog,
                concurrency,
                retry_for,
                on_ack,
            )
        )
    click.echo(json.dumps({"records": prog.acked, **totals}))
