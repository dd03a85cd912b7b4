"""``fraudnet bench NAME``: benchmarks that print one JSON object (with --json).

Each benchmark lives in its own module under :mod:`fraudnet.bench` exposing
a click command ``cli``; this group loads it lazily.
"""

from __future__ import annotations

import importlib

import click

#: benchmark name -> (module, one-line help)
BENCHES: dict[str, tuple[str, str]] = {
    "hop": ("fraudnet.bench.hop", "Latency floor of one broker hop on the embedded broker."),
    "gossip": ("fraudnet.bench.gossip", "Signal latency and loss across N node processes."),
    "audit": ("fraudnet.bench.audit", "Audit log: group-commit appends/s and verify time."),
    "pipeline": (
        "fraudnet.bench.pipeline",
        "Whole node: tx/s, e2e and HTTP latency, RSS, reconciled.",
    ),
    "score": ("fraudnet.bench.score", "Features + compiled model vs scikit-learn, ns per tx."),
    "policy": ("fraudnet.bench.policy", "Policy evaluation (100 rules, batched), ns per tx."),
    "consensus": ("fraudnet.bench.consensus", "Verdict formation latency across N node processes."),
    "overload": ("fraudnet.bench.overload", "Node at 2x capacity: shedding, memory, nothing lost."),
    "soak": ("fraudnet.bench.soak", "Node at a steady rate for N minutes: RSS and fd slopes."),
    "flood": ("fraudnet.bench.flood", "Member floods bad envelopes at 100x quota: graylisting."),
}


class _LazyBench(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(BENCHES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = BENCHES.get(cmd_name)
        if entry is None:
            return None
        cmd = importlib.import_module(entry[0]).cli
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Benchmarks"):
            formatter.write_dl([(n, BENCHES[n][1]) for n in self.list_commands(ctx)])


@click.group(cls=_LazyBench)
def cli() -> None:
    """Run a benchmark; results are machine-readable with --json."""
