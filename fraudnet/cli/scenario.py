"""``fraudnet scenario run|compare``: replay scenario files and compare their reports."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["cli"]

_SUMMARY = (
    "transactions", "decisions", "average_precision", "card_precision_at_100", "recall",
    "precision", "false_block_verdicts", "liveness", "attack_liveness", "verdict_delay_p50_s",
    "verdict_delay_p99_s", "decision_p99_ms", "propagation_p99_ms", "exactly_one_violations",
)  # fmt: skip


@click.group()
def cli() -> None:
    """Replay multi-member scenarios (attacks, faults) and report what the network did."""


@cli.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--mode", "mode", default="all", show_default=True,
    type=click.Choice(["isolated", "network", "central", "all"]),
    help="Which mode to run (all: the modes the scenario lists).",
)  # fmt: skip
@click.option("--sim", is_flag=True, help="Simulation mode (deterministic, virtual clock).")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option(
    "--data", "data", default=None, help="CSV path for csv scenarios (overrides the file)."
)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for report.json and the PNG plots.")  # fmt: skip
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option(
    "--model-cache", type=click.Path(file_okay=False, path_type=Path), default=None,
    envvar="FRAUDNET_MODEL_CACHE", show_envvar=True,
    help='Where a scorer = "trained" scenario keeps its fitted models, by content '
    "(default ~/.cache/fraudnet/scenario-models).",
)  # fmt: skip
def run(
    file: Path, mode: str, sim: bool, seed: int | None, data: str | None, out: Path | None,
    no_plots: bool, as_json: bool, model_cache: Path | None,
) -> None:  # fmt: skip
    """Run scenario FILE. Exit 0 when every expected outcome holds, 8 when one fails."""
    from fraudnet.replay.runner import run_scenario
    from fraudnet.replay.scenario import load_scenario

    sc = load_scenario(file)
    modes = None if mode == "all" else (mode,)
    cache = model_cache or Path.home() / ".cache" / "fraudnet" / "scenario-models"
    rep = run_scenario(
        sc, modes=modes, sim=sim, seed=seed, data_path=data, out_dir=out, plots=not no_plots,
        model_cache=cache,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(rep, indent=2, sort_keys=True, default=str))
    else:
        click.echo(f"scenario {rep['scenario']} ({rep['backend']}, seed {rep['seed']}): "
                   f"{rep['transactions']} transactions, {rep['frauds']} fraudulent")  # fmt: skip
        for m, r in rep["modes"].items():
            parts = [f"{k}={_fmt(r.get(k))}" for k in _SUMMARY]
            click.echo(f"  [{m}] " + " ".join(parts))
        if rep.get("gap_closed") is not None:
            click.echo(f"  gap closed (network vs isolated -> central AP): {rep['gap_closed']:.3f}")
        for c in rep["expectations"]["checks"]:
            click.echo(f"  {'ok  ' if c['passed'] else 'FAIL'} {c['check']}: {c['detail']}")
        if out is not None:
            click.echo(f"  report: {out / 'report.json'}")
    if not rep["expectations"]["passed"]:
        raise SystemExit(8)


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@cli.command("compare")
@click.argument("reports", nargs=-1, required=True)
def compare(reports: tuple[str, ...]) -> None:
    """Put several report.json files side by side (one column per run and mode)."""
    from fraudnet.replay.report import compare as compare_reports

    click.echo(compare_reports(list(reports)))
