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
@click.option("--mode", type=click.Choice(["central", "isolated", "network"]),
              default="central", show_default=True)  # fmt: skip
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
@click.option("--propagation-s", default=1.0, show_default=True, type=float,
              help="network mode: seconds from a signal's creation to its arrival")  # fmt: skip
@click.option("--signal-threshold", default=0.5, show_default=True, type=float,
              help="network mode: local score from which an entity is signalled")  # fmt: skip
@click.option("--signal-budget", default=0.05, show_default=True, type=float,
              help="network mode: signals per decided transaction, at most")  # fmt: skip
@click.option(
    "--signal-ttl-hours",
    default=168.0,
    show_default=True,
    type=float,
    help="network mode: a signal's time to live (the network features' window)",
)
@click.option(
    "--label-signals/--no-label-signals",
    default=False,
    show_default=True,
    help="network mode: confirmed frauds (delay_days old) signal their card",
)
@click.option(
    "--terminal-signals/--no-terminal-signals",
    default=True,
    show_default=True,
    help="network mode: transactions also offer their terminal",
)
@click.option("--signal-scores", type=click.Choice(["entity", "transaction"]), default="entity",
              show_default=True, help="network mode: a card is signalled from a local model "
              "on card features, a terminal from terminal features (entity), or both from "
              "the transaction's local model")  # fmt: skip
@click.option("--model-exchange/--no-model-exchange", default=True, show_default=True,
              help="network mode: members share their decision models and each decides "
              "with the consortium of all of them (fraudnet model combine)")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def cli(
    data_path: str, train_start: str, train_days: int, delay_days: int, test_days: int,
    mode: str, nodes: int, partition: str, model_names: str, feature_set: str, jobs: int,
    propagation_s: float, signal_threshold: float, signal_budget: float,
    signal_ttl_hours: float, label_signals: bool, terminal_signals: bool, signal_scores: str,
    model_exchange: bool, as_json: bool,
) -> None:  # fmt: skip
    """Replay FILE through the streaming features, train, test, print AUC / AP / CP@100."""
    from fraudnet.errors import ConfigError
    from fraudnet.training.data import load_csv
    from fraudnet.training.evaluate import evaluate
    from fraudnet.training.network import NetworkOptions
    from fraudnet.training.protocol import day_of
    from fraudnet.training.train import AUTO

    if not (1 <= train_days <= 90 and 0 <= delay_days <= 60 and 1 <= test_days <= 90):
        raise ConfigError("--train-days 1..90, --delay-days 0..60, --test-days 1..90")
    opts = NetworkOptions(
        propagation_s=propagation_s, threshold=signal_threshold, budget=signal_budget,
        ttl_s=signal_ttl_hours * 3600.0, label_signals=label_signals,
        terminal_signals=terminal_signals, signal_scores=signal_scores,
        model_exchange=model_exchange,
    )  # fmt: skip
    cands = list(AUTO) if model_names == "auto" else model_names.split(",")
    start = day_of(train_start)
    table = load_csv(data_path)
    res = evaluate(
        table, start_day=start, train_days=train_days, delay_days=delay_days,
        test_days=test_days, mode=mode, nodes=nodes, partition=partition, candidates=cands,
        feature_set=feature_set, jobs=jobs, network=opts,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(res, sort_keys=True))
        return
    where = "central" if mode == "central" else f"{mode}, {nodes} nodes by {partition}"
    click.echo(f"mode: {where}; model: {res['model']}; features: {res['feature_set']}")
    click.echo(f"train rows: {res['train_rows']}  test rows: {res['test_rows']} "
               f"({res['test_frauds']} frauds)")  # fmt: skip
    click.echo(f"AUC ROC            {res['auc_roc']:.3f}")
    click.echo(f"average precision  {res['average_precision']:.3f}")
    click.echo(f"CP@100             {res['card_precision_at_100']:.3f}")
    if mode == "network":
        click.echo(f"signals sent       {res['signals_sent']} "
                   f"({res['signals_per_transaction']:.4f} per transaction)")  # fmt: skip
        if res["model_exchange"]:
            own = res["without_model_exchange"]
            click.echo(f"without model exchange (own model only): AP "
                       f"{own['average_precision']:.3f}, AUC {own['auc_roc']:.3f}")  # fmt: skip
