"""The ``fraudnet`` command: a lazy registry of command modules.

Each entry of :data:`COMMANDS` names a module exposing a click command or
group called ``cli``; it is imported only when that command runs, so
``fraudnet --help`` stays fast and one broken optional dependency does not
break every command.

Every :class:`~fraudnet.errors.FraudnetError` becomes a one-line message on
stderr and its documented exit code (see :mod:`fraudnet.errors`); nothing
else in the CLI catches exceptions.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from fraudnet import __version__
from fraudnet.errors import FraudnetError

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "node": ("fraudnet.cli.node", "Create and run a node."),
    "demo": ("fraudnet.cli.demo", "Run a node on the embedded broker with generated traffic."),
    "ingest": ("fraudnet.cli.ingest", "Send a transaction file to a running node."),
    "generate": ("fraudnet.cli.generate", "Write a generated transaction set to a file."),
    "bench": ("fraudnet.cli.bench", "Run a benchmark (machine-readable with --json)."),
    "roster": ("fraudnet.cli.roster", "Create, change and verify the signed member roster."),
    "verdict": ("fraudnet.cli.verdict", "Verify verdict certificates offline."),
    "audit": ("fraudnet.cli.audit", "Verify, inspect and prove a node's audit log."),
    "model": ("fraudnet.cli.model", "Train and inspect detection models."),
    "evaluate": ("fraudnet.cli.evaluate", "Replay a file, train, test: AUC, AP, CP@100."),
    "scenario": ("fraudnet.cli.scenario", "Replay multi-member scenarios with attacks and faults."),
    "policy": ("fraudnet.cli.policy", "Check, diff, backtest, deploy policy bundles; edit lists."),
    "review": ("fraudnet.cli.review", "Work the review queue of a node: list, show, resolve."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        cmd = module.cli
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fraudnet")
def cli() -> None:
    """fraudnet: decentralized edge fraud detection for card payments.

    Exit codes: 0 ok, 1 internal error, 2 usage, 3 config, 4 input data,
    5 integrity failure, 6 unavailable, 7 security refusal.
    """


def main(argv: list[str] | None = None) -> Any:
    try:
        rv = cli.main(args=argv, prog_name="fraudnet", standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
        return rv
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except FraudnetError as e:
        click.echo(f"fraudnet: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
