"""``fraudnet generate``: write a generated transaction set (JSON Lines or CSV)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

__all__ = ["cli"]


@click.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--transactions", "-n", default=10_000, show_default=True, type=click.IntRange(1))
@click.option("--customers", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--terminals", default=2000, show_default=True, type=click.IntRange(1))
@click.option("--days", default=60, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--start", default="2024-04-01", show_default=True)
def cli(
    out: Path, transactions: int, customers: int, terminals: int, days: int, seed: int, start: str
) -> None:
    """Write generated transactions (handbook-style simulator) to OUT (.jsonl or .csv)."""
    from fraudnet.replay.generator import GeneratorConfig, generate

    cfg = GeneratorConfig(
        customers=customers, terminals=terminals, days=days, seed=seed, start=start
    )
    n = 0
    with open(out, "w", newline="", encoding="utf-8") as f:
        if out.suffix == ".csv":
            w: csv.DictWriter[str] | None = None
            for rec in generate(cfg, limit=transactions):
                if w is None:
                    w = csv.DictWriter(f, fieldnames=list(rec))
                    w.writeheader()
                w.writerow(rec)
                n += 1
        else:
            for rec in generate(cfg, limit=transactions):
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
                n += 1
    click.echo(f"wrote {n} transactions to {out}")
