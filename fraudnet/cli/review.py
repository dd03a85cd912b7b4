"""``fraudnet review``: work a node's review queue (list, show, resolve).

Resolving a transaction writes its label to the queue's outbox in the same
SQLite transaction, then delivers pending labels to
``NODE/labels/review-labels.jsonl`` (or ``--labels-out FILE``): one
``POST /v1/labels`` object per line (``{"tx_id", "kind", "event_time_us"}``),
so they can be sent to the node with ``curl`` or picked up by its label
agent. Card references are pseudonyms; no card number is ever shown.
"""

from __future__ import annotations

import getpass
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from fraudnet.adapters.storage.review import ReviewItem, jsonl_label_sink, open_review_queue

__all__ = ["cli"]


def _when(us: int | None) -> str:
    if us is None:
        return "-"
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _line(it: ReviewItem) -> str:
    why = it.reasons[0] if it.reasons else "-"
    return (f"{it.tx_id:<20} {_when(it.ts_us)}  {it.action:<8} {it.amount:>10.2f} "
            f"{it.score:>6.3f}  card {it.card_ref.hex()[:12]}  {it.status:<8} "
            f"{why[:60]}")  # fmt: skip


node_option = click.option(
    "--node", "node_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="The node directory.",
)  # fmt: skip


@click.group()
def cli() -> None:
    """Analysts' review queue of a node."""


@cli.command("list")
@node_option
@click.option("--status", type=click.Choice(["open", "fraud", "genuine", "all"]), default="open",
              show_default=True)  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
def list_(node_dir: Path, status: str, limit: int, offset: int, as_json: bool) -> None:
    """List queued transactions, oldest first."""
    with open_review_queue(node_dir, create=False) as q:
        items = q.items(status, limit, offset)
        counts = q.counts()
    if as_json:
        click.echo(json.dumps({"counts": counts, "items": [i.to_json() for i in items]}))
        return
    click.echo(f"open {counts['open']}, fraud {counts['fraud']}, genuine {counts['genuine']}, "
               f"labels pending {counts['labels_pending']}")  # fmt: skip
    for it in items:
        click.echo(_line(it))


@cli.command()
@node_option
@click.argument("tx_id")
@click.option("--json", "as_json", is_flag=True)
def show(node_dir: Path, tx_id: str, as_json: bool) -> None:
    """Show one transaction: reason codes, history summary, the card's other items."""
    with open_review_queue(node_dir, create=False) as q:
        it = q.get(tx_id)
        others = q.card_history(it.card_ref, exclude=tx_id)
    if as_json:
        click.echo(json.dumps({"item": it.to_json(), "card_items": [o.to_json() for o in others]}))
        return
    click.echo(f"transaction {it.tx_id}  at {_when(it.ts_us)} UTC  status {it.status}")
    click.echo(f"  action {it.action}  amount {it.amount:.2f}  score {it.score:.3f}  "
               f"policy {it.policy_id}")  # fmt: skip
    click.echo(f"  card {it.card_ref.hex()}  terminal {it.terminal_ref.hex()}")
    click.echo("  reasons:")
    for r in it.reasons:
        click.echo(f"    {r}")
    if it.history:
        click.echo("  recent history at decision time:")
        for k, v in sorted(it.history.items()):
            click.echo(f"    {k:<40} {v:g}")
    if it.status != "open":
        click.echo(f"  resolved {it.status} by {it.analyst} at {_when(it.resolved_at_us)}: "
                   f"{it.note or ''}")  # fmt: skip
    click.echo(f"  other review items of this card: {len(others)}")
    for o in others:
        click.echo(f"    {_line(o)}")


@cli.command()
@node_option
@click.argument("tx_id")
@click.argument("verdict", type=click.Choice(["fraud", "genuine"]))
@click.option("--note", default="", help="Why (kept in the queue).")
@click.option("--analyst", default=None, help="Who resolves (default: the OS user).")
@click.option(
    "--labels-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to append the label (default NODE/labels/review-labels.jsonl).",
)
def resolve(node_dir: Path, tx_id: str, verdict: str, note: str, analyst: str | None,
            labels_out: Path | None) -> None:  # fmt: skip
    """Resolve TX_ID as fraud or genuine; emits its label."""
    who = analyst or getpass.getuser()
    with open_review_queue(node_dir, create=False) as q:
        q.resolve(tx_id, verdict, analyst=who, note=note, now_us=time.time_ns() // 1000)
        if labels_out is not None:
            sent = q.flush_labels(jsonl_label_sink(labels_out))
            click.echo(f"{tx_id}: resolved {verdict}; {sent} label(s) written to {labels_out}")
            return
    # the node delivers the queued label to its labels topic (within a second when running)
    click.echo(f"{tx_id}: resolved {verdict}; label queued for the node's labels topic")
