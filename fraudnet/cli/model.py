"""``fraudnet model train|show``: fit a model from a transaction file; inspect a model file.

``sign`` / ``combine`` (sharing models between members) live in :mod:`.model_share`.

``deploy`` (swapping the live model of a running node) lives with the node
commands; it loads the file with :func:`fraudnet.training.modelio.load_model`.
"""

from __future__ import annotations

import json

import click

from fraudnet.core.features import FEATURES, FeatureConfig, feature_index
from fraudnet.errors import ConfigError


@click.group()
def cli() -> None:
    """Train and inspect detection models."""


@cli.command("train")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False))
@click.option("--train-start", required=True, help="first training day, YYYY-MM-DD (UTC)")
@click.option("--train-days", default=7, show_default=True, type=int)
@click.option("--delay-days", default=7, show_default=True, type=int)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--model", "model_names", default="auto", show_default=True,
    help="candidate(s), comma-separated, or 'auto' (all; chosen by validation)",
)  # fmt: skip
@click.option(
    "--features",
    "feature_set",
    default="auto",
    show_default=True,
    help="'auto' (chosen by validation), 'all', 'v1', 'handbook' or a comma list",
)
@click.option("--jobs", default=1, show_default=True, type=int, help="CPU cores for fitting")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def train_cmd(
    data_path: str, train_start: str, train_days: int, delay_days: int, out_path: str,
    model_names: str, feature_set: str, jobs: int, as_json: bool,
) -> None:  # fmt: skip
    """Compute streaming features over FILE, fit and select a model, write it to --out."""
    from fraudnet.training.data import load_csv
    from fraudnet.training.modelio import save_model
    from fraudnet.training.protocol import day_of
    from fraudnet.training.train import AUTO, replay_features, train

    if not 1 <= train_days <= 90 or not 0 <= delay_days <= 60:
        raise ConfigError("--train-days must be 1..90 and --delay-days 0..60")
    cands = list(AUTO) if model_names == "auto" else model_names.split(",")
    config = FeatureConfig(delay_days=float(delay_days))
    table = load_csv(data_path)
    x = replay_features(table, config)
    res = train(
        table, x, start_day=day_of(train_start), train_days=train_days, delay_days=delay_days,
        candidates=cands, feature_set=feature_set, config=config, jobs=jobs,
    )  # fmt: skip
    model_id = save_model(res.model, out_path)
    out = {"model_id": model_id, "candidate": res.candidate, "train_rows": res.train_rows,
           "validation": res.validation, "out": out_path}  # fmt: skip
    if as_json:
        click.echo(json.dumps(out, sort_keys=True))
    else:
        click.echo(
            f"model {model_id} ({res.candidate}, {res.train_rows} training rows) -> {out_path}"
        )
        for name, m in sorted(res.validation.items()):
            click.echo(
                f"  validation {name:>14}: AP {m['average_precision']:.3f}  "
                f"AUC {m['auc_roc']:.3f}  CP@100 {m['card_precision_at_100']:.3f}"
            )


@cli.command("show")
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def show_cmd(model_path: str, as_json: bool) -> None:
    """Print a model's id, metadata and feature schema."""
    from fraudnet.training.modelio import load_model

    model, model_id = load_model(model_path)
    skip = {"train_mean", "train_std"}
    meta = {k: v for k, v in model.meta.items() if k not in skip}
    schema = [
        {"index": i, "name": FEATURES[c].name, "group": FEATURES[c].group,
         "reason": FEATURES[c].reason, "doc": FEATURES[c].doc}
        for i, c in enumerate(feature_index(list(model.feature_names)))
    ]  # fmt: skip
    if as_json:
        click.echo(json.dumps({"model_id": model_id, "meta": meta, "features": schema},
                              sort_keys=True))  # fmt: skip
        return
    click.echo(f"model id:        {model_id}")
    click.echo(f"kind:            {model.kind} ({meta.get('candidate', '?')})")
    click.echo(f"feature schema:  v{model.schema_version}, {len(schema)} inputs")
    click.echo(f"feature config:  {json.dumps(model.feature_config.to_json())}")
    for k in ("train_rows", "train_frauds", "train_start_day", "train_days", "delay_days",
              "sklearn_version"):  # fmt: skip
        if k in meta:
            click.echo(f"{k + ':':<17}{meta[k]}")
    click.echo("features:")
    for f in schema:
        click.echo(f"  {f['index']:>2} {f['name']:<30} {f['reason']}")


def _add_deploy() -> None:
    from .model_deploy import deploy
    from .model_share import combine_cmd, sign

    cli.add_command(deploy)
    cli.add_command(sign)
    cli.add_command(combine_cmd)


_add_deploy()
