"""``fraudnet model deploy MODEL --node DIR``: install a model in a (running) node."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

__all__ = ["deploy"]


@click.command("deploy")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--node", "node_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path))  # fmt: skip
def deploy(model: Path, node_dir: Path) -> None:
    """Validate MODEL and install it as the node's model (swapped in without restart)."""
    from fraudnet.adapters.model_service import ACTIVE_MODEL
    from fraudnet.training.modelio import load_model

    _, model_id = load_model(model)  # refuse a damaged or hostile file before touching the node
    dest = node_dir / ACTIVE_MODEL
    dest.parent.mkdir(exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    shutil.copyfile(model, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(dest)
    click.echo(f"model {model_id} installed in {dest} (a running node swaps it in within a second)")
