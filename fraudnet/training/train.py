"""Training: streaming features, candidate models, selection by validation, compilation.

Features always come from the streaming state (:class:`FeatureState`) fed
with the file in event-time order -- the same code the node runs, so there
is no separate batch path and no look-ahead: a transaction's row is
computed when it is folded, from earlier events and labels at least
``delay`` old.

Model selection without look-ahead (prequential folds, as the handbook
does): fold ``k`` (``k = 0 .. folds-1``) fits each candidate on the
``train_days`` that start ``(k + 1) * train_days + delay_days`` days before
the training period and evaluates it with the handbook protocol (same
delay, ``train_days`` of test) on the ``train_days`` that start ``k *
train_days`` days before it -- fold 0 tests on the training period itself,
whose labels are all known when the model is deployed. Folds that fall
before the start of the data are skipped. The candidate with the best sum
of its rank by mean validation average precision and its rank by mean
validation AUC ROC (ties: higher AP, then CP@100; see :func:`choose` and
ADR 0122) is refitted on the training period. Test-period labels are never
read.

Blends (:data:`BLENDS`, e.g. ``blend`` = ``rf_leaf5`` + ``hgb``) are
scikit-learn soft-voting ensembles: the mean of the parts' probabilities.
In validation a blend reuses its parts' fold predictions (the parts are
fitted exactly as the ensemble fits them), so it costs no extra fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from fraudnet.core.features import (
    FEATURE_NAMES,
    SCHEMA_VERSION,
    FeatureConfig,
    FeatureState,
    default_model_features,
    feature_index,
)
from fraudnet.core.scoring.compiled import CompiledModel
from fraudnet.errors import ConfigError, InputError

from .convert import compile_sklearn
from .data import TxTable
from .protocol import metrics, split

__all__ = [
    "AUTO", "AUTO_FEATURE_SETS", "BLENDS", "CANDIDATES", "FEATURE_SETS", "FOLDS", "RANKED",
    "TrainResult", "choose", "combo_key", "feature_sets_of", "fit", "replay_features", "train",
    "validate", "validate_combos",
]  # fmt: skip

F64 = npt.NDArray[np.float64]


def _rf(**kw: Any) -> Callable[[int], Any]:
    return lambda jobs: RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=jobs, **kw)


#: candidate name -> factory(n_jobs) of an unfitted scikit-learn estimator
CANDIDATES: Final[dict[str, Callable[[int], Any]]] = {
    "logreg": lambda jobs: Pipeline(
        [("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=1000))]
    ),
    "rf": _rf(),
    "rf_leaf5": _rf(min_samples_leaf=5),
    # the same forest with 3x the trees (less variance; 3x the scoring work)
    "rf_leaf5_300": lambda jobs: RandomForestClassifier(
        n_estimators=300, random_state=0, n_jobs=jobs, min_samples_leaf=5
    ),
    "rf_leaf20": _rf(min_samples_leaf=20),
    "rf_leaf20_bal": _rf(min_samples_leaf=20, class_weight="balanced_subsample"),
    "rf_depth12": _rf(max_depth=12),
    "extra_trees": lambda jobs: ExtraTreesClassifier(
        n_estimators=100, random_state=0, n_jobs=jobs, min_samples_leaf=3
    ),
}


def _hgb(**kw: Any) -> Callable[[int], Any]:
    return lambda jobs: HistGradientBoostingClassifier(
        early_stopping=False, random_state=0, l2_regularization=1.0, **kw
    )


CANDIDATES.update(
    hgb=_hgb(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=50),
    hgb_deep=_hgb(max_iter=300, learning_rate=0.03, max_leaf_nodes=31, min_samples_leaf=20),
)
#: blend name -> its parts (candidate names); soft voting, equal weights
BLENDS: Final = {"blend": ("rf_leaf5", "hgb"), "blend300": ("rf_leaf5_300", "hgb")}


def _blend(parts: tuple[str, ...]) -> Callable[[int], Any]:
    return lambda jobs: VotingClassifier([(p, CANDIDATES[p](jobs)) for p in parts], voting="soft")


CANDIDATES.update({name: _blend(parts) for name, parts in BLENDS.items()})
#: what ``--model auto`` compares (selection by validation folds only)
AUTO: Final = ("logreg", "rf", "rf_leaf5", "rf_leaf20", "hgb", "blend")
#: validation folds used by default
FOLDS: Final = 2
_V2_ONLY: Final = ("CARD_AMOUNT_RATIO_OLD_HISTORY", "CARD_NB_ABOVE_OLD_2X_14DAY")
FEATURE_SETS: Final = {
    "handbook": default_model_features(("handbook",)),
    "v1": tuple(n for n in default_model_features(("handbook", "analyst")) if n not in _V2_ONLY),
    "all": default_model_features(("handbook", "analyst")),
}
#: what ``--features auto`` compares (with the model candidates, by validation)
AUTO_FEATURE_SETS: Final = ("v1", "all")


def feature_sets_of(spec: str) -> list[str]:
    """``auto`` or a comma-separated list of :data:`FEATURE_SETS` names."""
    out = list(AUTO_FEATURE_SETS) if spec == "auto" else spec.split(",")
    for fs in out:
        if fs not in FEATURE_SETS:
            raise ConfigError(
                f"feature set {fs!r} unknown (known: {', '.join(FEATURE_SETS)}, auto)"
            )
    return out


def combo_key(candidate: str, feature_set: str) -> str:
    return f"{candidate}@{feature_set}"


def validate_combos(
    table: TxTable, x: F64, start_day: int, train_days: int, delay_days: int,
    candidates: list[str], feature_sets: list[str], jobs: int,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """:func:`validate` for every (candidate, feature set); keys ``candidate@set``."""
    out = {}
    for fs in feature_sets:
        cols = feature_index(list(FEATURE_SETS[fs]))
        v = validate(table, x, cols, start_day, train_days, delay_days, candidates, jobs)
        out.update({combo_key(c, fs): m for c, m in v.items()})
    return out


def replay_features(table: TxTable, config: FeatureConfig, batch: int = 65536) -> F64:
    """Feature rows of every transaction, replayed in order through the streaming state."""
    st = FeatureState(config)
    cols = table.columns(with_labels=True)
    out = np.empty((len(table), len(FEATURE_NAMES)), dtype=np.float64)
    for s in range(0, len(table), batch):
        e = min(s + batch, len(table))
        out[s:e] = st.fold_arrays(
            cols.card_key[s:e], cols.terminal_key[s:e], cols.ts_s[s:e], cols.amount[s:e],
            cols.label[s:e],
        )  # fmt: skip
    return out


def fit(name: str, x: F64, y: npt.NDArray[np.int8], jobs: int = 1) -> Any:
    """Fit candidate ``name``; a one-class training set is an :class:`InputError`."""
    if name not in CANDIDATES:
        raise ConfigError(f"model: unknown candidate {name!r} (known: {', '.join(CANDIDATES)})")
    if len(np.unique(y)) < 2:
        raise InputError("training period has only one class (no frauds or no genuine)")
    # OpenMP (HistGradientBoosting) gets the cores --jobs grants, like joblib: left at every
    # core, its spinning threads collapse when other jobs share the machine (an hgb fit took
    # 90-130 s instead of 1.5-6 s on the loaded 2-core test box, session 4)
    with threadpool_limits(limits=max(1, jobs), user_api="openmp"):
        return CANDIDATES[name](jobs).fit(x, y)


@dataclass(frozen=True)
class TrainResult:
    model: CompiledModel
    candidate: str
    validation: dict[str, dict[str, float]]
    train_rows: int


def decile_bins(xt: F64) -> tuple[F64, F64]:
    """Per-column training deciles (edges, n x 9) and the share of training rows in each
    of the 10 ``le`` bins they define (for PSI drift metrics)."""
    edges = np.quantile(xt, np.linspace(0.1, 0.9, 9), axis=0).T.copy()
    frac = np.empty((xt.shape[1], 10), dtype=np.float64)
    for f in range(xt.shape[1]):
        b = np.searchsorted(edges[f], xt[:, f], side="left")
        frac[f] = np.bincount(b, minlength=10)[:10] / max(xt.shape[0], 1)
    return edges, frac


def _proba(
    name: str, cache: dict[str, F64], xtr: F64, ytr: npt.NDArray[np.int8], xte: F64, jobs: int
) -> F64:
    """``predict_proba(xte)`` of candidate ``name`` fitted on ``(xtr, ytr)``, memoised in
    ``cache``; a blend averages its parts' probabilities, as ``VotingClassifier`` does."""
    if name not in cache:
        if name in BLENDS:
            parts = [_proba(p, cache, xtr, ytr, xte, jobs) for p in BLENDS[name]]
            cache[name] = np.average(np.asarray(parts), axis=0)
        else:
            cache[name] = fit(name, xtr, ytr, jobs).predict_proba(xte)
    return cache[name]


def validate(
    table: TxTable, x: F64, cols: list[int], start_day: int, train_days: int,
    delay_days: int, candidates: list[str], jobs: int, folds: int = FOLDS,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Mean handbook-protocol metrics of each candidate over the validation folds
    (see module docstring); ``{}`` when no fold fits in the data."""
    sums: dict[str, dict[str, float]] = {}
    used = 0
    for k in range(folds):
        vstart = start_day - (k + 1) * train_days - delay_days
        try:
            sp = split(table, vstart, train_days, delay_days, train_days)
        except InputError:
            continue
        if len(np.unique(table.fraud[sp.train])) < 2 or len(np.unique(table.fraud[sp.test])) < 2:
            continue
        used += 1
        xtr, ytr = x[sp.train][:, cols], table.fraud[sp.train]
        xte = x[sp.test][:, cols]
        proba: dict[str, F64] = {}
        for name in candidates:
            score = _proba(name, proba, xtr, ytr, xte, jobs)[:, 1]
            m = metrics(table, sp.test, score)
            acc = sums.setdefault(name, {})
            for key, v in m.items():
                acc[key] = acc.get(key, 0.0) + v
    out = {n: {k: v / used for k, v in m.items()} for n, m in sums.items()}
    for m in out.values():
        m["folds"] = float(used)
    return out


#: metrics whose validation ranks are summed by :func:`choose` (the issue's bars are on AP,
#: AUC ROC and CP@100; CP@100 only breaks ties: on one week of validation it moves in steps
#: of 1/700 and hardly separates candidates)
RANKED: Final = ("average_precision", "auc_roc")


def choose(validation: dict[str, dict[str, float]], default: str) -> str:
    """The candidate with the lowest sum of its ranks by the :data:`RANKED` metrics (rank =
    how many candidates are strictly better); ties: higher average precision, then CP@100,
    then name. A metric missing from any entry is not ranked (callers that only sum AP, such
    as isolated-mode evaluation, keep selection by AP). ``default`` when ``validation`` is
    empty. Reads validation means only (ADR 0122)."""
    if not validation:
        return default
    ranked = [m for m in RANKED if all(m in v for v in validation.values())]

    def rank_sum(n: str) -> int:
        return sum(sum(v[m] > validation[n][m] for v in validation.values()) for m in ranked)

    return min(
        sorted(validation),
        key=lambda n: (
            rank_sum(n),
            -validation[n]["average_precision"],
            -validation[n].get("card_precision_at_100", 0.0),
        ),
    )


def train(
    table: TxTable,
    x: F64,
    *,
    start_day: int,
    train_days: int = 7,
    delay_days: int = 7,
    candidates: list[str] | None = None,
    feature_set: str = "all",
    config: FeatureConfig,
    jobs: int = 1,
) -> TrainResult:
    """Select (when several candidates or feature sets: by validation folds only) and fit
    a model on the training period. ``feature_set``: a name, a comma list or ``auto``."""
    fss = feature_sets_of(feature_set)
    cands = candidates or ["rf"]
    val: dict[str, dict[str, float]] = {}
    chosen, fs = cands[0], fss[0]
    if len(cands) * len(fss) > 1:
        val = validate_combos(table, x, start_day, train_days, delay_days, cands, fss, jobs)
        best = choose(val, combo_key(chosen, fs))
        chosen, fs = best.split("@", 1)
    names = FEATURE_SETS[fs]
    cols = feature_index(list(names))
    train_mask = (table.day >= start_day) & (table.day < start_day + train_days)
    xt = x[train_mask][:, cols]
    yt = table.fraud[train_mask]
    est = fit(chosen, xt, yt, jobs)
    edges, frac = decile_bins(xt)
    meta = {
        "candidate": chosen,
        "validation": val,
        "train_rows": int(train_mask.sum()),
        "train_frauds": int(yt.sum()),
        "train_start_day": start_day,
        "train_days": train_days,
        "delay_days": delay_days,
        "feature_set": fs,
        "feature_schema_version": SCHEMA_VERSION,
        "sklearn_version": sklearn.__version__,
        "train_mean": [float(v) for v in xt.mean(axis=0)],
        "train_std": [float(v) for v in xt.std(axis=0)],
        "train_edges": edges.tolist(),
        "train_bin_frac": frac.tolist(),
        "train_score_quantiles": [
            float(v) for v in np.quantile(est.predict_proba(xt)[:, 1], np.linspace(0.0, 1.0, 11))
        ],
    }
    model = compile_sklearn(est, tuple(names), config, meta)
    return TrainResult(model=model, candidate=chosen, validation=val, train_rows=len(yt))
