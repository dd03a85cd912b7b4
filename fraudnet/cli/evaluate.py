"""``fraudnet evaluate``: the handbook protocol on any FDH-format file (see fraudnet.training)."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False))
@click.option("--train-start", required=True, help="first training day, YYYY-MM-DD (UTC)")
@click.option("--train-days", default=7, show_default=True, type=int)
@click.option("--delay-days", default=7, show_default=True, type=int)
@click.option("--test-days", default=7, show_default=True, type=int)
@click.option("--mode", type=click.Choice(["central", "isolated"]), default="central",
              show_default=True)  # fmt: skip
@click.option("--nodes", default=5, show_default=True, type=int)
@click.option("--partition", type=click.Choice(["terminal", "customer"]), default="terminal",
              show_default=True)  # fmt: skip
@click.option(
    "--model", "model_names", default="auto", show_default=True,
    help="candidate(s), comma-separated, or 'auto' (all of AUTO); several = chosen by "
    "validation folds before the training period (never by test results)",
)  # fmt: skip
@click.option("--features", "feature_set", default="auto", show_default=True,
              help="'auto' (v1 and all, chosen by validation), 'all', 'v1' or 'handbook' "
              "(the 15 baseline features), or a comma list")  # fmt: skip
@click.option("--jobs", default=1, show_default=True, type=int, help="CPU cores for fitting")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def cli(
    data_path: str, train_start: str, train_days: int, delay_days: int, test_days: int,
    mode: str, nodes: int, partition: str, model_names: str, feature_set: str, jobs: int,
    as_json: bool,
) -> None:  # fmt: skip
    """Replay FILE through the streaming features, train, test, print AUC / AP / CP@100."""
    from fraudnet.errors import ConfigError
    from fraudnet.training.data import load_csv
    from fraudnet.training.evaluate import evaluate
    from fraudnet.training.protocol import day_of
    from fraudnet.training.train import AUTO

    if not (1 <= train_days <= 90 and 0 <= delay_days <= 60 and 1 <= test_days <= 90):
        raise ConfigError("--train-days 1..90, --delay-days 0..60, --test-days 1..90")
    cands = list(AUTO) if model_names == "auto" else model_names.split(",")
    start = day_of(train_start)
    table = load_csv(data_path)
    res = evaluate(
        table, start_day=start, train_days=train_days, delay_days=delay_days,
        test_days=test_days, mode=mode, nodes=nodes, partition=partition, candidates=cands,
        feature_set=feature_set, jobs=jobs,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(res, sort_keys=True))
        return
    where = "central" if mode == "central" else f"isolated, {nodes} nodes by {partition}"
    click.echo(f"mode: {where}; model: {res['model']}; features: {res['feature_set']}")
    click.echo(f"train rows: {res['train_rows']}  test rows: {res['test_rows']} "
               f"({res['test_frauds']} frauds)")  # fmt: skip
    click.echo(f"AUC ROC            {res['auc_roc']:.3f}")
    click.echo(f"average precision  {res['average_precision']:.3f}")
    click.echo(f"CP@100             {res['card_precision_at_100']:.3f}")
