"""``fraudnet demo``: a node on the embedded broker, fed generated traffic, with a summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from fraudnet.errors import ConfigError, InternalError

__all__ = ["cli"]

DEMO_TOML_EXTRA = """
[currency.rates]
USD = 0.92
"""


@click.command()
@click.option("--transactions", "-n", default=50_000, show_default=True, type=click.IntRange(1))
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to leave the node directory (default: ./fraudnet-demo/<time>).",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def cli(transactions: int, workdir: Path | None, seed: int, as_json: bool, quiet: bool) -> None:
    """Start a node, stream generated transactions through it, print a summary."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from fraudnet.adapters.demo import DemoDriver, DemoSummary
    from fraudnet.adapters.node import build_node, configure_logging, run_node
    from fraudnet.adapters.storage.keys import generate_node_files
    from fraudnet.config import CONFIG_FILE, load_settings, render_default_toml

    if workdir is None:
        workdir = Path("fraudnet-demo") / time.strftime("%Y%m%d-%H%M%S")
    node_dir = workdir / "node-1"
    if node_dir.exists() and any(node_dir.iterdir()):
        raise ConfigError(f"{node_dir}: exists and is not empty; pass another --dir")
    node_dir.mkdir(parents=True, exist_ok=True)
    node_dir.chmod(0o700)
    generate_node_files(node_dir)
    toml = render_default_toml("demo-node-1", "demo-member", "127.0.0.1:0")
    toml = toml.replace("[currency.rates]\n# USD = 0.92\n", "[currency.rates]\nUSD = 0.92\n")
    (node_dir / CONFIG_FILE).write_text(toml)
    settings = load_settings(node_dir)
    console = Console(stderr=True)
    configure_logging("warning", "text")
    node = build_node(settings)
    bar = Progress(
        TextColumn("[bold]demo"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"), console=console, disable=quiet or as_json,
    )  # fmt: skip
    task = bar.add_task("decided", total=transactions, info="")
    last = [0.0]

    def progress(s: DemoSummary) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and s.decided + s.dead_letters < transactions:
            return
        last[0] = now
        o = s.outcomes
        bar.update(
            task, completed=s.decided + s.dead_letters,
            info=f"allow {o['allow']} review {o['review']} block {o['block']} "
            f"dead {s.dead_letters}",
        )  # fmt: skip

    driver = DemoDriver(node, transactions=transactions, seed=seed, progress=progress)
    if not as_json and not quiet:
        console.print(f"node directory: {node_dir}  embedded broker: {node.bootstrap}")
    with bar:
        code = run_node(node, extra_services=[driver], loglevel="warning")
    summary = driver.summary
    d = summary.as_dict()
    d["node_dir"] = str(node_dir)
    d["node_counters"] = node.core.counters.as_dict()
    d["internal_batches"] = node.runtime.batches_decided
    if as_json:
        click.echo(json.dumps(d))
    else:
        t = Table(title="fraudnet demo summary", show_header=False)
        rows = [
            (
                "transactions sent",
                f"{d['transactions']} ({d['via_kafka']} via Kafka, {d['via_api']} via "
                f"POST /v1/decide, {d['invalid_sent']} invalid)",
            ),
            ("decided", f"{d['decided']}  (decided twice: {d['decided_twice']})"),
            ("dead letters", str(d["dead_letters"])),
            ("reconciled", "yes" if d["reconciled"] else "NO"),
            ("throughput (steady)", f"{d['tx_per_s']:,.0f} tx/s over {d['seconds']:.1f} s"),
            ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(d["outcomes"].items()))),
            ("latency, Kafka in -> out", f"p50 {d['e2e_p50_ms']} ms, p99 {d['e2e_p99_ms']} ms"),
            ("latency, inside the node", f"p50 {d['node_p50_ms']} ms, p99 {d['node_p99_ms']} ms"),
            ("latency, POST /v1/decide", f"p50 {d['api_p50_ms']} ms, p99 {d['api_p99_ms']} ms"),
            ("frauds flagged (review/block)", f"{d['frauds_flagged']} of {d['frauds']}"),
            ("node directory", str(node_dir)),
        ]  # fmt: skip
        for k, v in rows:
            t.add_row(k, v)
        Console().print(t)
    if summary.error:
        raise InternalError(f"demo failed: {summary.error}")
    if not d["reconciled"]:
        raise InternalError("demo: counts do not reconcile (see summary)")
    raise SystemExit(code)
