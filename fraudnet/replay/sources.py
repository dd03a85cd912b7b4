"""Scenario data: the built-in generator or an FDH-format CSV, split over members.

Each :class:`Replayed` record is what one member's node receives (``raw``,
in the source's own field layout, *without* its label) plus the ground truth
the report needs (card id, label, fraud scenario). Times are microseconds
from the first record (the virtual clock's zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from fraudnet.core.transaction import DEFAULT_FIELDS, FDH_FIELDS, FieldMap
from fraudnet.errors import ConfigError, InputError

from .generator import GeneratorConfig, generate
from .scenario import DataSpec

__all__ = ["Dataset", "Replayed", "load_data"]

S = 1_000_000


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
class Dataset:
    records: list[Replayed]
    t0_us: int
    fields: FieldMap
    #: raw card value -> card id, and back (ground truth; never leaves the harness)
    card_values: dict[int, str]

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
    t0: int | None = None
    for r in generate(cfg):
        ts = int(datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).timestamp()) * S
        t0 = ts if t0 is None else t0
        cid = card_ids.setdefault(r["card"], len(card_ids))
        raw = {k: v for k, v in r.items() if k not in ("label", "scenario", "member")}
        out.append(Replayed(
            ts - t0, int(r["member"]), raw, r["tx_id"], cid, int(r["label"]),
            int(r["scenario"]), float(r["amount"]),
        ))  # fmt: skip
    return Dataset(out, t0 or 0, DEFAULT_FIELDS, {v: k for k, v in card_ids.items()})


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
    return Dataset(out, t0, FDH_FIELDS, cards)
