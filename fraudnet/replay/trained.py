"""Trained scorers for scenarios: per-mode models fitted on the scenario's own history.

``[scoring] scorer = "trained"`` fits, per mode, from the days *before* the
replayed ones (:class:`~.sources.History`), with the functions of
:mod:`fraudnet.training` (the ones ``fraudnet evaluate`` uses):

* ``central`` -- one model on every member's training rows;
* ``isolated`` -- each member its own model on its partition;
* ``network`` -- per member (as :mod:`fraudnet.training.network`): two local
  signal models (card and terminal columns only) fitted on the ``train_days``
  that end ``delay_days`` before training; their scores go through the
  member's :class:`~fraudnet.core.signals.policy.SignalPolicy` from the first
  training day on; each member's decision model reads its own features plus
  the six network columns filled from the *other* members' signals; then
  every member decides with the equal-weight consortium
  (:func:`fraudnet.training.combine.combine`) of all members' decision models
  (``model_exchange = false``: each with its own).

No look-ahead: the first replayed day must be at least ``train_start +
train_days + delay_days`` (the training labels are all known by then), and
only history rows are passed to training. Models are cached by content: the
key hashes the history's columns and members, the options and the versions
(:data:`CACHE_VERSION`, scikit-learn), so re-running a scenario loads the
models instead of fitting them again; a damaged cache entry is refitted.

:class:`TrainedScorer` is the simulated member's scorer: its own feature
state (warmed up with the member's history, labels included: the state uses
a label only once it is ``delay_days`` old), the decision model and, in
network mode, the local signal models whose scores are the only ones the
member signals (never the network-aware decision score).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fraudnet.core.features import FeatureConfig, FeatureState
from fraudnet.core.features.network import NET_COLS, uses_network
from fraudnet.core.records import TxColumns
from fraudnet.core.scoring.base import ScoreBatch, score_batch
from fraudnet.core.scoring.compiled import CompiledModel
from fraudnet.core.scoring.modelfile import encode_model, model_id_of
from fraudnet.errors import ConfigError, InputError, ModelError

from .scenario import Scenario
from .sources import Dataset, History

__all__ = ["CACHE_VERSION", "ModeModels", "TrainedScorer", "fit_mode_models", "training_days"]

F64 = npt.NDArray[np.float64]
CACHE_VERSION: Final = 1
DAY_S: Final = 86_400
REASON: Final = ("trained_model",)
_EPOCH: Final = date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class ModeModels:
    """The models of one mode: ``deciders[member]`` (``"central"`` in central mode) and,
    in network mode, ``signals[member] = (card model, terminal model)``."""

    mode: str
    deciders: dict[str, CompiledModel]
    signals: dict[str, tuple[CompiledModel, CompiledModel]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def training_days(sc: Scenario, data: Dataset) -> tuple[int, int, int]:
    """(first training day, train_days, delay_days) as UTC day numbers, checked against the
    replayed period (:class:`ConfigError` on look-ahead) and the history."""
    sp = sc.scoring
    if sp.train_start is None:
        raise ConfigError(f"{sc.path}: scoring.train_start: missing")
    start = date.fromisoformat(sp.train_start).toordinal() - _EPOCH
    replay_day = int(data.t0_us // 1_000_000 // DAY_S)
    if start + sp.train_days + sp.delay_days > replay_day:
        first = date.fromordinal(replay_day + _EPOCH).isoformat()
        raise ConfigError(
            f"{sc.path}: scoring.train_start: training {sp.train_start} + {sp.train_days} days "
            f"+ {sp.delay_days} days of label delay runs past the first replayed day {first} "
            "(that would be look-ahead): start training earlier or replay later days"
        )
    if data.history is None or len(data.history.table) == 0:
        raise ConfigError(
            f'{sc.path}: scorer = "trained" needs history before the replayed days '
            "(set data.first_day)"
        )
    return start, sp.train_days, sp.delay_days


def _cache_key(sc: Scenario, mode: str, h: History) -> str:
    import sklearn

    t = h.table
    d = hashlib.sha256()
    for a in (t.tx_id, t.ts_s, t.customer, t.terminal, t.amount, t.fraud, h.member):
        d.update(np.ascontiguousarray(a).tobytes())
    sp, sg = sc.scoring, sc.signals
    opts: dict[str, Any] = {
        "v": CACHE_VERSION, "sklearn": sklearn.__version__, "mode": mode,
        "members": sc.network.members, "train_start": sp.train_start,
        "train_days": sp.train_days, "delay_days": sp.delay_days, "candidate": sp.candidate,
        "feature_set": sp.feature_set,
    }  # fmt: skip
    if mode == "network":  # only network mode's training reads the signal options
        opts.update(model_exchange=sp.model_exchange, propagation_s=sp.propagation_s,
                    threshold=sg.threshold, budget=sg.budget, ttl_s=sg.ttl_s)  # fmt: skip
    d.update(json.dumps(opts, sort_keys=True).encode())
    return d.hexdigest()


def _load_cached(entry: Path, mode: str) -> ModeModels | None:
    from fraudnet.training.modelio import load_model

    try:
        man = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
        ids = set(man["deciders"].values()) | {i for p in man["signals"].values() for i in p}
        models: dict[str, CompiledModel] = {}
        for mid in sorted(ids):
            m, got = load_model(entry / f"{mid}.model")
            if got != mid:  # damaged file
                return None
            models[mid] = m
        deciders = {k: models[v] for k, v in man["deciders"].items()}
        signals = {k: (models[c], models[t]) for k, (c, t) in man["signals"].items()}
        return ModeModels(mode, deciders, signals, {**man["info"], "cache": "hit"})
    except (OSError, ValueError, KeyError, TypeError, ModelError):
        return None  # missing or damaged: refit


def _store(entry: Path, mm: ModeModels) -> None:
    """Each distinct model once, named by its id; the manifest last (atomic rename)."""
    from fraudnet.training.modelio import save_model

    entry.mkdir(parents=True, exist_ok=True)
    ids: dict[int, str] = {}

    def put(m: CompiledModel) -> str:
        if id(m) not in ids:
            ids[id(m)] = save_model(m, entry / f"{model_id_of(encode_model(m))}.model")
        return ids[id(m)]

    man = {
        "deciders": {k: put(m) for k, m in mm.deciders.items()},
        "signals": {k: [put(c), put(t)] for k, (c, t) in mm.signals.items()},
        "info": mm.info,
    }
    tmp = entry / "manifest.json.tmp"
    tmp.write_text(json.dumps(man, sort_keys=True, indent=1), encoding="utf-8")
    tmp.replace(entry / "manifest.json")


def fit_mode_models(
    sc: Scenario, mode: str, data: Dataset, cache_dir: Path | None = None
) -> ModeModels:
    """The models of ``mode`` (see module docstring), from the cache when there."""
    start, train_days, delay_days = training_days(sc, data)
    h = data.history
    assert h is not None  # checked by training_days
    entry = None
    if cache_dir is not None:
        entry = cache_dir / _cache_key(sc, mode, h)[:40]
        hit = _load_cached(entry, mode)
        if hit is not None:
            return hit
    mm = _fit(sc, mode, h, start, train_days, delay_days)
    if entry is not None:
        try:
            _store(entry, mm)
        except (OSError, ModelError) as e:
            raise ConfigError(f"model cache {cache_dir}: cannot write ({e})") from None
    return mm


def _fit(
    sc: Scenario, mode: str, h: History, start: int, train_days: int, delay_days: int
) -> ModeModels:
    from fraudnet.training.train import replay_features, train

    sp = sc.scoring
    config = FeatureConfig(delay_days=float(delay_days))
    kw: dict[str, Any] = dict(
        start_day=start, train_days=train_days, delay_days=delay_days,
        candidates=[sp.candidate], feature_set=sp.feature_set, config=config, jobs=sp.jobs,
    )  # fmt: skip
    info: dict[str, Any] = {"candidate": sp.candidate, "feature_set": sp.feature_set,
                            "train_start": sp.train_start, "cache": "miss"}  # fmt: skip
    if mode == "central":
        try:
            res = train(h.table, replay_features(h.table, config), **kw)
        except InputError as e:
            raise InputError(f"{sc.path}: central training: {e}") from None
        info["train_rows"] = res.train_rows
        return ModeModels(mode, {"central": res.model}, {}, info)
    names = sc.network.names
    subs = [h.table.take(np.flatnonzero(h.member == k)) for k in range(len(names))]
    xs = [replay_features(sub, config) for sub in subs]
    if mode == "isolated":
        deciders: dict[str, CompiledModel] = {}
        for name, sub, x in zip(names, subs, xs, strict=True):
            try:
                deciders[name] = train(sub, x, **kw).model
            except InputError as e:
                raise InputError(f"{sc.path}: member {name}: {e}") from None
        return ModeModels(mode, deciders, {}, info)
    return _fit_network(sc, names, subs, xs, start, train_days, delay_days, config, info)


def _fit_network(
    sc: Scenario, names: tuple[str, ...], subs: list[Any], xs: list[F64], start: int,
    train_days: int, delay_days: int, config: FeatureConfig, info: dict[str, Any],
) -> ModeModels:  # fmt: skip
    from fraudnet.training.combine import combine
    from fraudnet.training.network import NetworkOptions, fit_members

    sp, sg = sc.scoring, sc.signals
    opts = NetworkOptions(
        propagation_s=sp.propagation_s, threshold=sg.threshold, budget=sg.budget,
        ttl_s=float(sg.ttl_s), terminal_signals=True, signal_scores="entity",
        model_exchange=sp.model_exchange,
    )  # fmt: skip
    try:
        fitted = fit_members(
            list(names), subs, xs, start_day=start, train_days=train_days,
            delay_days=delay_days, cls=sp.candidate, fs=sp.feature_set, config=config,
            jobs=sp.jobs, opts=opts,
        )  # fmt: skip
    except InputError as e:
        raise InputError(f"{sc.path}: {e}") from None
    signals: dict[str, tuple[CompiledModel, CompiledModel]] = {
        name: (f.signal_models[0], f.signal_models[1])
        for name, f in zip(names, fitted, strict=True)
    }
    own = [f.decision for f in fitted]
    logs = [f.log for f in fitted]
    if sp.model_exchange:
        consortium = combine(own, meta={"scenario": sc.name})
        deciders = dict.fromkeys(names, consortium)
    else:
        deciders = dict(zip(names, own, strict=True))
    seen = sum(lg.transactions for lg in logs)
    info["training_signals_per_transaction"] = sum(len(lg.signals) for lg in logs) / max(seen, 1)
    info["model_exchange"] = sp.model_exchange
    return ModeModels("network", deciders, signals, info)


class TrainedScorer:
    """A simulated member's scorer (see module docstring); a
    :class:`~fraudnet.core.scoring.base.Scorer` with the network hooks
    :class:`~fraudnet.core.pipeline.NodeCore` looks for."""

    def __init__(
        self,
        decider: CompiledModel,
        signal_models: tuple[CompiledModel, CompiledModel] | None = None,
        model_id: str | None = None,
    ) -> None:
        self.decider = decider
        self.signal_models = signal_models
        self.state = FeatureState(decider.feature_config)
        self._model_id = model_id or model_id_of(encode_model(decider))
        self.uses_network_features = uses_network(decider.feature_names)
        #: local (signal-model) terminal scores of the last batch, in batch order
        self.terminal_scores: F64 = np.zeros(0)

    @property
    def model_id(self) -> str:
        return self._model_id

    def fold_history(self, cols: TxColumns, batch: int = 65536) -> None:
        """Fold past transactions (with their labels) into the state, scoring nothing."""
        for s in range(0, len(cols), batch):
            e = min(s + batch, len(cols))
            self.state.fold_arrays(cols.card_key[s:e], cols.terminal_key[s:e], cols.ts_s[s:e],
                                   cols.amount[s:e], cols.label[s:e])  # fmt: skip

    def _fold(self, batch: TxColumns) -> tuple[F64, F64]:
        x = np.array(self.state.fold_arrays(
            batch.card_key, batch.terminal_key, batch.ts_s, batch.amount, batch.label
        ), dtype=np.float64)  # fmt: skip
        if self.signal_models is None:
            local, _ = self.decider.predict_many(x)  # network columns neutral in x
            self.terminal_scores = local
        else:
            local, _ = self.signal_models[0].predict_many(x)
            self.terminal_scores, _ = self.signal_models[1].predict_many(x)
        return x, local

    def score_many(self, batch: TxColumns) -> ScoreBatch:
        x, local = self._fold(batch)
        s = local if self.signal_models is None else self.decider.predict_many(x)[0]
        return score_batch(s, [REASON] * len(s))

    def score_network_many(self, batch: TxColumns, net: F64) -> tuple[ScoreBatch, F64]:
        """Decision scores with the network columns from ``net``; and the local card
        scores (the only ones the member may signal)."""
        x, local = self._fold(batch)
        x[:, NET_COLS] = net
        s, _ = self.decider.predict_many(x)
        return score_batch(s, [REASON] * len(s)), local

    def snapshot(self) -> bytes:
        return self.state.snapshot()

    def restore(self, data: bytes) -> None:
        self.state = FeatureState.restore(data)
