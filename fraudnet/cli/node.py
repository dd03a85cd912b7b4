"""``fraudnet node init DIR`` and ``fraudnet node run DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from fraudnet.errors import ConfigError

__all__ = ["cli"]


@click.group()
def cli() -> None:
    """Create and run a node."""


@cli.command("init")
@click.argument("node_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Node name (default: the directory name).")
@click.option("--member", default="member", show_default=True, help="Member (organisation) id.")
@click.option("--api", "api_listen", default="127.0.0.1:8470", show_default=True,
              help="host:port of the HTTP API.")  # fmt: skip
def init(node_dir: Path, name: str | None, member: str, api_listen: str) -> None:
    """Create DIR with a node key, API token, local secret (all 0600) and node.toml."""
    from fraudnet.adapters.storage.keys import generate_node_files
    from fraudnet.config import CONFIG_FILE, render_default_toml

    if node_dir.exists() and any(node_dir.iterdir()):
        raise ConfigError(f"{node_dir}: exists and is not empty; choose a new directory")
    node_dir.mkdir(parents=True, exist_ok=True)
    node_dir.chmod(0o700)
    generate_node_files(node_dir)
    (node_dir / CONFIG_FILE).write_text(
        render_default_toml(name or node_dir.resolve().name, member, api_listen)
    )
    click.echo(
        f"created node {node_dir} (edit {node_dir / CONFIG_FILE}; "
        f"start: fraudnet node run {node_dir})"
    )


@cli.command("run")
@click.argument("node_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--broker", default=None, help="kafka://host:port of a real cluster (default: embedded)."
)
@click.option(
    "--api", "api_listen", default=None, help="host:port of the HTTP API (overrides node.toml)."
)
@click.option("--model", default=None, help="Model file to score with (overrides node.toml).")
@click.option("--log-level", default=None, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--log-format", default="json", show_default=True, type=click.Choice(["json", "text"])
)
def run(
    node_dir: Path,
    broker: str | None,
    api_listen: str | None,
    model: str | None,
    log_level: str | None,
    log_format: str,
) -> None:
    """Run the node until SIGTERM/SIGINT (drains in-flight work, exits 0)."""
    from fraudnet.adapters.node import build_node, configure_logging, run_node
    from fraudnet.config import load_settings

    settings = load_settings(
        node_dir,
        overrides={
            "broker": {"url": broker},
            "api": {"listen": api_listen},
            "scoring": {"model": model},
            "node": {"log_level": log_level},
        },
    )
    configure_logging(settings.node.log_level, log_format)
    node = build_node(settings)
    if node.broker is not None:
        click.echo(
            f"embedded broker: {node.bootstrap} (in memory; external clients may produce to it)",
            err=True,
        )
    code = run_node(node, loglevel=settings.node.log_level)
    raise SystemExit(code)
