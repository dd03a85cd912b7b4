"""Scenario data: the built-in generator or an FDH-format CSV, split over members.

Each :class:`Replayed` record is what one member's node receives (``raw``,
in the source's own field layout, *without* its label) plus the ground truth
the report needs (card id, label, fraud scenario). Times are microseconds
from the first replayed record (the virtual clock's zero).

Days before ``first_day`` are not replayed: they are the :class:`History`
(columns, labels included) that a ``trained`` scorer is fitted on and that
warms every member's feature state up to the first replayed record (see
:mod:`.trained`). Replayed rows never enter the history: no look-ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from fraudnet.core.transaction import DEFAULT_FIELDS, FDH_FIELDS, FieldMap, Normaliser, parse_record
from fraudnet.errors import ConfigError, InputError, TransactionError
from fraudnet.training.data import TxTable

from .generator import GeneratorConfig, generate
from .scenario import DataSpec

__all__ = ["Dataset", "History", "Replayed", "load_data", "normaliser"]

S = 1_000_000
DAY_S = 86_400


def normaliser() -> Normaliser:
    """The currency normaliser of every simulated node (and of the history's amounts)."""
    return Normaliser(rates={"USD": 0.92})


@dataclass(frozen=True, slots=True)
class Replayed:
    t_us: int
    member: int
    raw: dict[str, Any]
    tx_id: str
    card: int
    label: int
    scenario: int
    amount: float


@dataclass(frozen=True, slots=True)
class History:
    """The rows before the replayed period, as the node would have seen them.

    ``table.customer`` holds the same card ids as :attr:`Replayed.card`;
    ``card_values`` / ``terminal_values`` map ids back to the raw identifiers a
    node receives (to derive its own pseudonymised state keys); ``member[i]``
    is the member that received row ``i``. Amounts are normalised as the
    node normalises them.
    """

    table: TxTable
    member: np.ndarray[Any, np.dtype[np.int64]]
    card_values: dict[int, str]
    terminal_values: dict[int, str]


@dataclass(frozen=True, slots=True)
class Dataset:
    records: list[Replayed]
    t0_us: int
    fields: FieldMap
    #: raw card value -> card id, and back (ground truth; never leaves the harness)
    card_values: dict[int, str]
    #: the days before the replayed ones (None for a generator run from day 0)
    history: History | None = None

    @property
    def duration_us(self) -> int:
        return self.records[-1].t_us if self.records else 0


def load_data(spec: DataSpec, members: int, seed: int, csv_path: str | None = None) -> Dataset:
    """Materialise a scenario's data (``csv_path`` overrides ``spec.path``)."""
    if spec.source == "generator":
        return _generated(spec, members, seed)
    path = csv_path or spec.path
    if not path:
        raise ConfigError('data: source = "csv" needs a path (in the file or --data)')
    return _csv(spec, members, path)


def _generated(spec: DataSpec, members: int, seed: int) -> Dataset:
    cfg = GeneratorConfig(
        customers=spec.customers, terminals=spec.terminals, radius=spec.radius,
        start=spec.start, days=spec.days, seed=spec.seed if spec.seed is not None else seed,
        compromised_terminals_per_day=spec.compromised_terminals_per_day,
        compromised_customers_per_day=spec.compromised_customers_per_day,
        members=members, attacks=spec.attacks,
    )  # fmt: skip
    out: list[Replayed] = []
    card_ids: dict[str, int] = {}
    term_ids: dict[str, int] = {}
    hist: list[tuple[float, int, int, float, int, int, int]] = []
    start_s = int(datetime.fromisoformat(spec.start + "T00:00:00+00:00").timestamp())
    replay_from = start_s + spec.first_day * DAY_S
    norm = normaliser()
    t0: int | None = None
    for r in generate(cfg):
        ts_s = int(datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).timestamp())
        ts = ts_s * S
        cid = card_ids.setdefault(r["card"], len(card_ids))
        raw = {k: v for k, v in r.items() if k not in ("label", "scenario", "member")}
        if ts_s < replay_from:
            tid = term_ids.setdefault(str(r["terminal_id"]), len(term_ids))
            try:
                amount = parse_record(raw, DEFAULT_FIELDS, norm).amount
            except TransactionError as e:  # our generator's own bug: say which record
                raise InputError(f"generated record {r.get('tx_id')}: {e}") from None
            hist.append((float(ts_s), cid, tid, amount, int(r["label"]), int(r["scenario"]),
                         int(r["member"])))  # fmt: skip
            continue
        t0 = ts if t0 is None else t0
        out.append(Replayed(
            ts - t0, int(r["member"]), raw, r["tx_id"], cid, int(r["label"]),
            int(r["scenario"]), float(r["amount"]),
        ))  # fmt: skip
    if not out:
        raise ConfigError(f"data: first_day {spec.first_day}: no record left to replay")
    cards = {v: k for k, v in card_ids.items()}
    history = None
    if hist:
        a = np.array(hist, dtype=np.float64)
        table = TxTable(
            tx_id=np.arange(len(hist), dtype=np.int64), ts_s=a[:, 0],
            customer=a[:, 1].astype(np.int64), terminal=a[:, 2].astype(np.int64),
            amount=a[:, 3], fraud=a[:, 4].astype(np.int8), scenario=a[:, 5].astype(np.int8),
        )  # fmt: skip
        history = History(table, a[:, 6].astype(np.int64), cards,
                          {v: k for k, v in term_ids.items()})  # fmt: skip
    return Dataset(out, t0 or 0, DEFAULT_FIELDS, cards, history)


def _csv(spec: DataSpec, members: int, path: str) -> Dataset:
    from fraudnet.training.data import load_csv

    table = load_csv(path)
    if len(table) == 0:
        raise InputError(f"{path}: no transactions")
    day = table.day
    first = int(day.min()) + spec.first_day
    keep = day >= first
    if spec.days:
        keep &= day < first + spec.days
    idx = np.flatnonzero(keep)
    if spec.limit is not None:
        idx = idx[: spec.limit]
    if idx.size == 0:
        raise InputError(f"{path}: no transactions in the selected days")
    t = table.take(idx)
    part = t.terminal if spec.partition == "terminal" else t.customer
    t0 = int(t.ts_s[0] * S)
    scen = t.scenario if t.scenario is not None else np.zeros(len(t), dtype=np.int8)
    out = [
        Replayed(
            int(t.ts_s[i] * S) - t0,
            int(part[i] % members),
            {
                "TRANSACTION_ID": str(int(t.tx_id[i])),
                "TX_DATETIME": int(t.ts_s[i]),
                "CUSTOMER_ID": str(int(t.customer[i])),
                "TERMINAL_ID": str(int(t.terminal[i])),
                "TX_AMOUNT": f"{float(t.amount[i]):.2f}",
            },
            str(int(t.tx_id[i])),
            int(t.customer[i]),
            int(t.fraud[i]),
            int(scen[i]),
            float(t.amount[i]),
        )
        for i in range(len(t))
    ]
    cards = {int(c): str(int(c)) for c in np.unique(t.customer)}
    history = None
    before = np.flatnonzero(day < first)
    if before.size:
        h = table.take(before)
        hpart = h.terminal if spec.partition == "terminal" else h.customer
        history = History(
            h, (hpart % members).astype(np.int64),
            {int(c): str(int(c)) for c in np.unique(h.customer)},
            {int(c): str(int(c)) for c in np.unique(h.terminal)},
        )  # fmt: skip
    return Dataset(out, t0, FDH_FIELDS, cards, history)
