"""``fraudnet evaluate --mode network``: partitions that exchange risk signals.

Each of the ``nodes`` partitions (as in isolated mode) is one member. The
replay, per member ``k``, without look-ahead:

1. **Local features** ``x_k``: the member's own transactions through the
   streaming state (labels used once ``delay_days`` old), as in isolated mode.
2. **Signal model** ``S_k`` (local features only, no network inputs): the
   chosen candidate fitted on the ``train_days`` that end ``delay_days``
   before the training period -- all its labels are known when the training
   period starts, and every score it gives from then on is out of sample.
3. **Signals**: from the first training day on, the member's events in time
   order go through the node's own :class:`~fraudnet.core.signals.policy.
   SignalPolicy` (threshold, 5 % budget, cooldown, time-to-live; one policy
   per member, shared by all kinds): every transaction offers its card (and,
   when enabled, its terminal) with ``S_k``'s score; every fraud label, once
   ``delay_days`` old, offers its card with score 1 (a confirmed fraud is local
   evidence too). A signal created at ``t`` *arrives* at the other members at
   ``t + propagation_s``.
4. **Network features**: the member's transactions in time order read a
   :class:`~fraudnet.core.signals.evidence.NetworkEvidence` holding the
   signals of the *other* members that arrived strictly before the
   transaction (:func:`~fraudnet.core.features.network.network_row`, the code
   the node runs).
5. **Decision model** ``M_k``: the same candidate on the local feature set plus
   the six network columns, fitted on the training period; it scores the test
   period. Signals never come from ``M_k``: they stay independent of other
   members' signals (no echo of a false flag).

Metrics are those of the other modes on the same filtered test set, plus the
signals each member sent per transaction it decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import sklearn

from fraudnet.core.features import FeatureConfig, feature_index
from fraudnet.core.features.network import NET_COLS, NETWORK_NAMES, NEUTRAL, network_row
from fraudnet.core.features.schema import DAY_S
from fraudnet.core.scoring.compiled import CompiledModel
from fraudnet.core.signals.codec import PSEUDONYM_LEN, Signal
from fraudnet.core.signals.evidence import NetworkEvidence
from fraudnet.core.signals.policy import SignalPolicy
from fraudnet.errors import ConfigError, InputError

from .convert import compile_sklearn
from .data import TxTable
from .train import FEATURE_SETS, decile_bins, fit, train

__all__ = ["MemberModels", "NetworkOptions", "SignalLog", "emit_signals", "fit_members",
           "fit_network_model", "network_matrix", "pseudonym_of"]  # fmt: skip

F64 = npt.NDArray[np.float64]
US: Final = 1_000_000
CONFIRMED: Final = ("confirmed_fraud",)


@dataclass(frozen=True, slots=True)
class NetworkOptions:
    """How members signal in ``--mode network`` (validated on construction)."""

    #: creation -> arrival at every other member (gossip p99 measured ~0.11 s)
    propagation_s: float = 1.0
    #: local score at or above which an entity is signalled (the policy's threshold)
    threshold: float = 0.5
    #: signals per decided transaction, at most (the policy's budget)
    budget: float = 0.05
    #: a signal's time to live: the window of the network features (7 days: chosen on
    #: the validation window, before the test period; 24 h scored lower there)
    ttl_s: float = 7 * 24 * 3600.0
    #: confirmed frauds (labels ``delay_days`` old) signal their card with score 1 (off:
    #: on the validation window it lowered AP -- the handbook test set drops a card once
    #: its fraud is known, so the model learns from flags the test never shows)
    label_signals: bool = False
    #: transactions also offer their terminal
    terminal_signals: bool = True
    #: ``entity``: a card is signalled from a local model on the card's own features,
    #: a terminal from one on the terminal's (a compromised terminal says nothing about
    #: the cards used there); ``transaction``: both from the transaction's local model
    signal_scores: str = "entity"
    #: members share their decision models (signed files, no transaction data) and each
    #: decides with the consortium of all of them (:mod:`fraudnet.training.combine`)
    model_exchange: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.propagation_s <= 3600.0:
            raise ConfigError(f"--propagation-s {self.propagation_s}: expected 0..3600")
        if not 0.0 < self.ttl_s <= 30 * DAY_S:
            raise ConfigError(f"signal ttl {self.ttl_s} s: expected (0, 30 days]")
        SignalPolicy(threshold=self.threshold, budget=self.budget)  # validates both
        if self.signal_scores not in ("entity", "transaction"):
            raise ConfigError(f"signal scores {self.signal_scores!r}: entity or transaction")

    def policy(self) -> SignalPolicy:
        return SignalPolicy(
            threshold=self.threshold, budget=self.budget, ttl_us=int(self.ttl_s * US)
        )


def pseudonym_of(entity_id: int) -> bytes:
    """Stand-in network pseudonym of an FDH id (ids are not card numbers; one per kind)."""
    return int(entity_id).to_bytes(PSEUDONYM_LEN, "big")


@dataclass(frozen=True, slots=True)
class SignalLog:
    """What one member sent: arrival order is creation order plus a constant delay."""

    created_s: F64
    signals: list[Signal]
    transactions: int
    by_origin: dict[str, int]


def emit_signals(
    sub: TxTable,
    local_scores: F64,
    from_s: float,
    delay_days: float,
    opts: NetworkOptions,
    terminal_scores: F64 | None = None,
) -> SignalLog:
    """Run member ``sub``'s events from ``from_s`` through its :class:`SignalPolicy`.

    ``local_scores[i]`` is the local-only score of ``sub``'s row ``i`` for its
    card (and for its terminal unless ``terminal_scores`` is given); rows before
    ``from_s`` are unused. Events: each transaction at its time (offers its
    card, then its terminal), each fraud label at transaction time +
    ``delay_days`` (offers the card, score 1).
    """
    term_scores = local_scores if terminal_scores is None else terminal_scores
    pol = opts.policy()
    rows = np.flatnonzero(sub.ts_s >= from_s)
    lab_rows = np.flatnonzero(sub.fraud == 1) if opts.label_signals else np.zeros(0, np.int64)
    lab_t = sub.ts_s[lab_rows] + delay_days * DAY_S
    keep = lab_t >= from_s
    lab_rows, lab_t = lab_rows[keep], lab_t[keep]
    # labels first at equal times: a label known at t may inform the signal at t
    t_all = np.concatenate([lab_t, sub.ts_s[rows]])
    kind_all = np.concatenate([np.zeros(len(lab_rows), np.int8), np.ones(len(rows), np.int8)])
    row_all = np.concatenate([lab_rows, rows])
    order = np.lexsort((kind_all, t_all))
    times: list[float] = []
    out: list[Signal] = []
    origin = {"transaction_card": 0, "transaction_terminal": 0, "label_card": 0}
    cards, terms = sub.customer, sub.terminal
    for j in order.tolist():
        t = float(t_all[j])
        r = int(row_all[j])
        now = int(t * US)
        if kind_all[j] == 0:
            sig = pol.offer("card", pseudonym_of(cards[r]), 1.0, now, reasons=CONFIRMED,
                            n_tx=1, n_alerts=1)  # fmt: skip
            if sig is not None:
                times.append(t)
                out.append(sig)
                origin["label_card"] += 1
            continue
        pol.note_transactions(1)
        s = float(local_scores[r])
        sig = pol.offer("card", pseudonym_of(cards[r]), s, now, n_tx=1)
        if sig is not None:
            times.append(t)
            out.append(sig)
            origin["transaction_card"] += 1
        if opts.terminal_signals:
            ts = float(term_scores[r])
            sig = pol.offer("terminal", pseudonym_of(terms[r]), ts, now, n_tx=1)
            if sig is not None:
                times.append(t)
                out.append(sig)
                origin["transaction_terminal"] += 1
    return SignalLog(np.asarray(times, dtype=np.float64), out, len(rows), origin)


def network_matrix(
    sub: TxTable,
    member: str,
    received: list[tuple[float, str, Signal]],
    from_s: float,
) -> F64:
    """Network columns (n x 6) of member ``sub``'s rows from the signals ``received``.

    ``received``: (arrival time in s, signer, signal), any order. A row at
    ``t`` sees the signals that arrived strictly before ``t``; rows before
    ``from_s`` get :data:`NEUTRAL`.
    """
    ev = NetworkEvidence(member)
    arrivals = sorted(received, key=lambda a: a[0])
    out = np.tile(NEUTRAL, (len(sub), 1))
    rows = np.flatnonzero(sub.ts_s >= from_s)
    k = 0
    for i in rows.tolist():
        t = float(sub.ts_s[i])
        while k < len(arrivals) and arrivals[k][0] < t:
            _, signer, sig = arrivals[k]
            ev.add(signer, sig, sig.pseudonym)
            k += 1
        out[i] = network_row(ev, pseudonym_of(sub.customer[i]), pseudonym_of(sub.terminal[i]),
                             int(t * US))  # fmt: skip
    return out


def signal_model(
    sub: TxTable, x: F64, start_day: int, train_days: int, delay_days: int,
    cls: str, fs: str, config: FeatureConfig, jobs: int, prefix: str = "",
) -> CompiledModel:  # fmt: skip
    """``S_k``: local-only, fitted on the ``train_days`` ending ``delay_days`` before
    ``start_day`` (so deployable on ``start_day``). ``prefix`` (``CARD_``,
    ``TERM_``): only the feature set's columns of that entity."""
    first = start_day - train_days - delay_days
    day = sub.day
    window = (day >= first) & (day < first + train_days)
    if len(np.unique(sub.fraud[window])) < 2:
        raise InputError(
            f"network mode: the signal models are fitted on the {train_days} days that end "
            f"{delay_days} days before --train-start; that window (UTC day {first}) has no "
            "transactions or only one class in this member's data: start training later"
        )
    if not prefix:
        res = train(
            sub, x, start_day=first, train_days=train_days, delay_days=delay_days,
            candidates=[cls], feature_set=fs, config=config, jobs=jobs,
        )  # fmt: skip
        return res.model
    names = tuple(n for n in FEATURE_SETS[fs] if n.startswith(prefix))
    if not names:
        raise ConfigError(f"feature set {fs!r} has no {prefix}* column for entity signals")
    mask = (sub.day >= first) & (sub.day < first + train_days)
    est = fit(cls, x[mask][:, feature_index(list(names))], sub.fraud[mask], jobs)
    return compile_sklearn(est, names, config, {"candidate": cls, "signal_entity": prefix})


def fit_network_model(
    sub: TxTable, x: F64, start_day: int, train_days: int, delay_days: int,
    cls: str, fs: str, config: FeatureConfig, jobs: int,
) -> CompiledModel:  # fmt: skip
    """``M_k``: candidate ``cls`` on feature set ``fs`` plus the network columns, fitted on
    the training period; ``x`` must already hold the network columns."""
    names = tuple(FEATURE_SETS[fs]) + NETWORK_NAMES
    cols = feature_index(list(names))
    mask = (sub.day >= start_day) & (sub.day < start_day + train_days)
    xt = x[mask][:, cols]
    yt = sub.fraud[mask]
    est = fit(cls, xt, yt, jobs)
    edges, frac = decile_bins(xt)
    meta: dict[str, Any] = {
        "candidate": cls,
        "train_rows": int(mask.sum()),
        "train_frauds": int(yt.sum()),
        "train_start_day": start_day,
        "train_days": train_days,
        "delay_days": delay_days,
        "feature_set": f"{fs}+network",
        "sklearn_version": sklearn.__version__,
        "train_mean": [float(v) for v in xt.mean(axis=0)],
        "train_std": [float(v) for v in xt.std(axis=0)],
        "train_edges": edges.tolist(),
        "train_bin_frac": frac.tolist(),
    }
    return compile_sklearn(est, names, config, meta)


def with_network(x: F64, net: F64) -> F64:
    """A copy of feature matrix ``x`` with its network columns set from ``net``."""
    out = x.copy()
    out[:, NET_COLS] = net
    return out


@dataclass(frozen=True, slots=True)
class MemberModels:
    """What one member of a network replay fitted (see module docstring)."""

    #: local-only signal models (card, terminal; or one transaction model)
    signal_models: tuple[CompiledModel, ...]
    #: the signals it sent, in creation order
    log: SignalLog
    #: its feature rows with the network columns it received filled in
    x: F64
    #: ``M_k``: its network-aware decision model (its own, before any exchange)
    decision: CompiledModel


def fit_members(
    names: list[str], subs: list[TxTable], xs: list[F64], *, start_day: int, train_days: int,
    delay_days: int, cls: str, fs: str, config: FeatureConfig, jobs: int, opts: NetworkOptions,
) -> list[MemberModels]:  # fmt: skip
    """Steps 2-5 of the module docstring for every member: signal models, signals through
    each member's policy, network columns from the others' signals, decision models.
    An :class:`InputError` names the member."""
    from_s = float(start_day) * DAY_S
    prefixes = ("CARD_", "TERM_") if opts.signal_scores == "entity" else ("",)
    fitted: list[tuple[CompiledModel, ...]] = []
    logs: list[SignalLog] = []
    for name, sub, x in zip(names, subs, xs, strict=True):
        live = sub.ts_s >= from_s
        models, local = [], []
        for prefix in prefixes:
            try:
                m = signal_model(sub, x, start_day, train_days, delay_days, cls, fs, config,
                                 jobs, prefix)  # fmt: skip
            except InputError as e:
                raise InputError(f"member {name}: {e}") from None
            sc = np.full(len(sub), np.nan)
            sc[live], _ = m.predict_many(x[live])
            models.append(m)
            local.append(sc)
        fitted.append(tuple(models))
        logs.append(emit_signals(sub, local[0], from_s, float(delay_days), opts, local[-1]))
    out = []
    for k, (name, sub, x) in enumerate(zip(names, subs, xs, strict=True)):
        received = [
            (float(t) + opts.propagation_s, names[j], sig)
            for j, lg in enumerate(logs) if j != k
            for t, sig in zip(lg.created_s.tolist(), lg.signals, strict=True)
        ]  # fmt: skip
        xn = with_network(x, network_matrix(sub, name, received, from_s))
        try:
            model = fit_network_model(sub, xn, start_day, train_days, delay_days, cls, fs,
                                      config, jobs)  # fmt: skip
        except InputError as e:
            raise InputError(f"member {name}: {e}") from None
        out.append(MemberModels(fitted[k], logs[k], xn, model))
    return out
