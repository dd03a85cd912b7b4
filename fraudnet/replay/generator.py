"""A seeded transaction generator after the Fraud Detection Handbook's simulator.

Our own implementation of the simulator described in Le Borgne et al.,
*Reproducible Machine Learning for Credit Card Fraud Detection*, ch. 3:

* customers at uniform locations on a 100 x 100 grid, each with a mean
  amount ~ U(5, 100) (std = mean / 2) and a mean number of transactions
  per day ~ U(0, 4);
* terminals at uniform locations; a customer uses the terminals within
  radius ``radius`` of home;
* per day, a Poisson number of transactions per customer, times normal
  around noon (std 20,000 s), amounts normal (redrawn uniformly when <= 0);
* fraud scenario 1: every amount above 220 is fraud;
* scenario 2: each day ``compromised_terminals_per_day`` terminals are
  compromised; all their transactions of the next 28 days are fraud;
* scenario 3: each day ``compromised_customers_per_day`` customers are
  compromised; over the next 14 days a third of their transactions are
  fraud, with the amount multiplied by 5.

Records use fraudnet's default field names, with Luhn-valid 16-digit card
numbers (a test BIN range), terminal ids, MCC, channel, country and
currency, so they exercise the whole ingest path. The same ``seed`` gives
the same records.

Cross-member attacks (for the network scenarios) are injected on top:
terminals belong to ``members`` acquirers (terminal ``t`` to member
``t % members``; each record says which in ``member``), and each
:class:`Attack` adds labelled fraud that crosses members:

* ``card_testing`` (scenario 4): stolen cards each make a few tiny
  authorisations at terminals of several members within ``duration_s``,
  then one large cash-out;
* ``compromised_card`` (5): stolen cards make large purchases at terminals
  of several members over ``duration_s``;
* ``compromised_terminal`` (2): chosen terminals are compromised from
  ``day`` on (as the handbook's scenario 2);
* ``account_takeover`` (6): from ``day`` for ``duration_s`` the customer's
  behaviour changes: far-away terminals, night hours, amounts x3.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

__all__ = ["Attack", "GeneratorConfig", "generate", "luhn_complete"]

AttackKind = Literal["card_testing", "compromised_card", "compromised_terminal", "account_takeover"]
ATTACK_SCENARIO: dict[str, int] = {
    "card_testing": 4,
    "compromised_card": 5,
    "compromised_terminal": 2,
    "account_takeover": 6,
}


@dataclass(frozen=True)
class Attack:
    kind: AttackKind
    #: day index (0-based) the attack starts
    day: int
    #: cards (or terminals, for compromised_terminal; customers, for account_takeover)
    count: int = 10
    #: how many members' terminals it spreads over
    members: int = 3
    duration_s: int = 3600
    tx_per_card: int = 4
    #: seconds into the day the attack starts (None: random)
    at_s: int | None = None


_MCCS = (5411, 5812, 5999, 4111, 5541, 5732, 7011, 4829, 5912, 5311)
_COUNTRIES = ("FR", "DE", "BE", "NL", "ES", "IT", "GB", "US")
_CHANNELS = ("pos", "ecom", "contactless", "pos", "pos", "ecom")


def luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit to a string of digits.

    >>> luhn_complete("411111111111111")
    '4111111111111111'
    """
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class GeneratorConfig:
    customers: int = 1000
    terminals: int = 2000
    radius: float = 5.0
    start: str = "2024-04-01"
    days: int = 30
    seed: int = 0
    compromised_terminals_per_day: int = 2
    compromised_customers_per_day: int = 3
    #: share of customers whose cards are issued in USD (amounts then in USD)
    usd_share: float = 0.1
    #: prefix of transaction ids (distinct generators feeding one node must differ)
    id_prefix: str = "g"
    #: acquiring members the terminals belong to (terminal t -> member t % members)
    members: int = 1
    attacks: tuple[Attack, ...] = field(default_factory=tuple)


def generate(cfg: GeneratorConfig, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield transaction records in event-time order (at most ``limit``)."""
    rng = np.random.default_rng(cfg.seed)
    nc, nt = cfg.customers, cfg.terminals
    cxy = rng.uniform(0, 100, size=(nc, 2))
    mean_amt = rng.uniform(5, 100, size=nc)
    std_amt = mean_amt / 2
    mean_nb = rng.uniform(0, 4, size=nc)
    txy = rng.uniform(0, 100, size=(nt, 2))
    usd = rng.random(nc) < cfg.usd_share
    home_country = rng.integers(0, len(_COUNTRIES), size=nc)
    t_mcc = rng.integers(0, len(_MCCS), size=nt)
    t_chan = rng.integers(0, len(_CHANNELS), size=nt)
    available: list[np.ndarray] = []
    for c in range(nc):
        d2 = ((txy - cxy[c]) ** 2).sum(axis=1)
        near = np.flatnonzero(d2 < cfg.radius**2)
        available.append(near if near.size else np.array([int(np.argmin(d2))]))
    cards = [luhn_complete(f"4999{c:011d}") for c in range(nc)]
    start_s = int(datetime.fromisoformat(cfg.start).replace(tzinfo=UTC).timestamp())
    comp_terminal_until = np.full(nt, -1, dtype=np.int64)
    comp_customer_until = np.full(nc, -1, dtype=np.int64)
    emitted = 0
    seq = 0
    for day in range(cfg.days):
        counts = rng.poisson(mean_nb)
        cust = np.repeat(np.arange(nc), counts)
        n = cust.size
        secs = np.clip(rng.normal(43200, 20000, size=n), 0, 86399).astype(np.int64)
        amts = rng.normal(mean_amt[cust], std_amt[cust])
        bad = amts <= 0
        amts[bad] = rng.uniform(0, 2 * mean_amt[cust[bad]])
        term = np.array(
            [available[c][rng.integers(0, available[c].size)] for c in cust], dtype=np.int64
        )
        fraud = np.zeros(n, dtype=np.int8)
        scen = np.zeros(n, dtype=np.int8)
        # scenario 2: newly compromised terminals, fraud for 28 days from tomorrow on
        for t in rng.choice(nt, size=min(cfg.compromised_terminals_per_day, nt), replace=False):
            comp_terminal_until[t] = max(comp_terminal_until[t], day + 28)
        # scenario 3: newly compromised customers, for 14 days
        for c in rng.choice(nc, size=min(cfg.compromised_customers_per_day, nc), replace=False):
            comp_customer_until[c] = max(comp_customer_until[c], day + 14)
        t_active = comp_terminal_until[term] >= day
        fraud[t_active] = 1
        scen[t_active] = 2
        c_active = (comp_customer_until[cust] >= day) & (rng.random(n) < 1 / 3)
        amts[c_active] *= 5
        fraud[c_active] = 1
        scen[c_active & (scen == 0)] = 3
        for atk in cfg.attacks:
            extra = _attack_day(
                atk, day, rng, cfg, nc, nt, cxy, txy, mean_amt, cust, term, secs, amts
            )
            if extra is None:
                continue
            if atk.kind == "compromised_terminal":
                for t in extra[1]:
                    comp_terminal_until[t] = max(comp_terminal_until[t], day + 28)
                t_new = comp_terminal_until[term] >= day
                fraud[t_new] = 1
                scen[t_new & (scen == 0)] = 2
                continue
            if atk.kind == "account_takeover":
                mask = extra[0]
                fraud[mask] = 1
                scen[mask] = 6
                continue
            e_cust, e_term, e_secs, e_amts = extra
            k = e_cust.size
            cust = np.concatenate([cust, e_cust])
            term = np.concatenate([term, e_term])
            secs = np.concatenate([secs, e_secs])
            amts = np.concatenate([amts, e_amts])
            fraud = np.concatenate([fraud, np.ones(k, dtype=np.int8)])
            scen = np.concatenate([scen, np.full(k, ATTACK_SCENARIO[atk.kind], dtype=np.int8)])
            n += k
        big = amts > 220
        fraud[big] = 1
        scen[big & (scen == 0)] = 1
        order = np.lexsort((np.arange(n), secs))
        for i in order:
            c = int(cust[i])
            t = int(term[i])
            ts = start_s + day * 86400 + int(secs[i])
            currency = "USD" if usd[c] else "EUR"
            country = _COUNTRIES[home_country[c]] if rng.random() < 0.95 else _COUNTRIES[-1]
            yield {
                "tx_id": f"{cfg.id_prefix}{seq:09d}",
                "timestamp": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "card": cards[c],
                "terminal_id": f"T{t:06d}",
                "merchant_id": f"M{t // 4:06d}",
                "amount": f"{round(float(amts[i]), 2):.2f}",
                "currency": currency,
                "mcc": _MCCS[t_mcc[t]],
                "channel": _CHANNELS[t_chan[t]],
                "country": country,
                "label": int(fraud[i]),
                "scenario": int(scen[i]),
                "member": t % cfg.members,
            }
            seq += 1
            emitted += 1
            if limit is not None and emitted >= limit:
                return


def _member_terminals(nt: int, members: int, chosen: np.ndarray) -> np.ndarray:
    ts = np.arange(nt)
    return ts[np.isin(ts % members, chosen)]


def _attack_day(
    atk: Attack,
    day: int,
    rng: np.random.Generator,
    cfg: GeneratorConfig,
    nc: int,
    nt: int,
    cxy: np.ndarray,
    txy: np.ndarray,
    mean_amt: np.ndarray,
    cust: np.ndarray,
    term: np.ndarray,
    secs: np.ndarray,
    amts: np.ndarray,
) -> Any:
    """The attack's contribution to ``day`` (see module docstring), or None."""
    span_days = max(1, -(-atk.duration_s // 86400))
    if atk.kind == "account_takeover":
        if not atk.day <= day < atk.day + span_days:
            return None
        arng = np.random.default_rng((cfg.seed, atk.day, 6))
        victims = arng.choice(nc, size=min(atk.count, nc), replace=False)
        mask = np.isin(cust, victims)
        for i in np.flatnonzero(mask):  # far terminal, night, x3
            far = np.argsort(((txy - cxy[cust[i]]) ** 2).sum(axis=1))[-50:]
            term[i] = far[rng.integers(0, far.size)]
            secs[i] = int(rng.integers(0, 5 * 3600))
            amts[i] = amts[i] * 3
        return (mask,)
    if day != atk.day:
        return None
    arng = np.random.default_rng((cfg.seed, atk.day, ATTACK_SCENARIO[atk.kind], atk.count))
    chosen_members = arng.choice(cfg.members, size=min(atk.members, cfg.members), replace=False)
    pool = _member_terminals(nt, cfg.members, chosen_members)
    if atk.kind == "compromised_terminal":
        return (None, arng.choice(pool, size=min(atk.count, pool.size), replace=False))
    start = atk.at_s if atk.at_s is not None else int(arng.integers(0, 86400 - 3600))
    cards = arng.choice(nc, size=min(atk.count, nc), replace=False)
    e_cust: list[int] = []
    e_term: list[int] = []
    e_secs: list[int] = []
    e_amts: list[float] = []
    for c in cards:
        # each card hits terminals of every chosen member, round robin
        per_member = [pool[(pool % cfg.members) == m] for m in chosen_members]
        n_tx = atk.tx_per_card + (1 if atk.kind == "card_testing" else 0)
        for j in range(n_tx):
            ts_pool = per_member[j % len(per_member)]
            e_cust.append(int(c))
            e_term.append(int(ts_pool[arng.integers(0, ts_pool.size)]))
            e_secs.append(min(86399, start + int(arng.integers(0, max(1, atk.duration_s)))))
            if atk.kind == "card_testing" and j < atk.tx_per_card:
                e_amts.append(float(arng.uniform(0.5, 3.0)))
            else:
                e_amts.append(float(arng.uniform(150, 900)))
    return (
        np.array(e_cust, dtype=np.int64),
        np.array(e_term, dtype=np.int64),
        np.array(e_secs, dtype=np.int64),
        np.array(e_amts, dtype=np.float64),
    )
