"""``choose``: the summed rank by mean validation AP and AUC ROC (ADR 0122), its tie-breaks,
the AP-only call of isolated-mode evaluation, and that ``train`` fits what it picks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fraudnet.core.features import FeatureConfig
from fraudnet.training import train as T
from fraudnet.training.data import TxTable

DAY = 86400.0


def m(ap: float, auc: float, cp: float = 0.3) -> dict[str, float]:
    return {"average_precision": ap, "auc_roc": auc, "card_precision_at_100": cp, "folds": 2.0}


#: session-4 validation means (2 folds before 2018-05-25, FDH) of four of the auto combos
FDH_2FOLDS = {
    "blend@v1": m(0.7189, 0.8822, 0.3079),
    "blend@all": m(0.7175, 0.8846, 0.3086),
    "rf_leaf5@v1": m(0.7174, 0.8810, 0.3057),
    "hgb@all": m(0.6900, 0.8809, 0.3086),
}


def test_a_combo_ahead_on_auc_and_close_on_ap_wins() -> None:
    v = dict(FDH_2FOLDS, **{"rf@all": m(0.7106, 0.8830)})
    # AP ranks: blend@v1 0, blend@all 1; AUC ranks: blend@all 0, rf@all 1, blend@v1 2
    assert T.choose(v, "x") == "blend@all"
    # alone, the two blends tie (0 + 1 each) and the tie goes to the higher AP
    pair = {k: FDH_2FOLDS[k] for k in ("blend@v1", "blend@all")}
    assert T.choose(pair, "x") == "blend@v1"


def test_rank_ties_go_to_higher_ap_then_cp_then_name() -> None:
    assert T.choose({"a": m(0.70, 0.89), "b": m(0.71, 0.88)}, "x") == "b"
    assert T.choose({"a": m(0.70, 0.88, 0.31), "b": m(0.70, 0.88, 0.32)}, "x") == "b"
    assert T.choose({"b": m(0.70, 0.88), "a": m(0.70, 0.88)}, "x") == "a"


def test_ap_alone_does_not_decide() -> None:
    # best AP by a hair but last on AUC loses to the runner-up that is first on AUC
    v = {"top_ap": m(0.720, 0.870), "mid": m(0.719, 0.885), "low": m(0.650, 0.880)}
    assert T.choose(v, "x") == "mid"
    # the old rule (max AP) would have said top_ap
    assert max(v, key=lambda n: v[n]["average_precision"]) == "top_ap"


def test_equal_values_share_a_rank() -> None:
    v = {"a": m(0.70, 0.88), "b": m(0.70, 0.88), "c": m(0.69, 0.89)}
    # a and b: AP rank 0, AUC rank 1; c: AP rank 2, AUC rank 0 -> a (name) over b
    assert T.choose(v, "x") == "a"


def test_choice_does_not_depend_on_dict_order() -> None:
    items = list(dict(FDH_2FOLDS, **{"rf@all": m(0.7106, 0.8830)}).items())
    picks = {T.choose(dict(p), "x") for p in itertools.permutations(items)}
    assert picks == {"blend@all"}


def test_empty_validation_gives_the_default() -> None:
    assert T.choose({}, "rf@all") == "rf@all"


def test_entries_without_auc_are_chosen_by_ap_then_cp() -> None:
    # isolated-mode evaluation passes summed AP only (CP@100 0.0)
    v = {"a": {"average_precision": 3.1, "card_precision_at_100": 0.0},
         "b": {"average_precision": 3.2, "card_precision_at_100": 0.0}}  # fmt: skip
    assert T.choose(v, "x") == "b"
    # one entry without AUC: AUC is not ranked for anyone
    w = {"a": m(0.71, 0.80), "b": {"average_precision": 0.70, "card_precision_at_100": 0.3}}
    assert T.choose(w, "x") == "a"


def test_ranked_metrics_are_ap_and_auc() -> None:
    assert T.RANKED == ("average_precision", "auc_roc")


def _table(n: int = 3000, days: int = 40, seed: int = 0) -> TxTable:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    term = rng.integers(0, 60, n)
    fraud = ((amount > 200) | (term == 7) | (rng.random(n) < 0.01)).astype(np.int8)
    ts = 1.5226848e9 + np.sort(rng.uniform(0, days * DAY, n))
    return TxTable(tx_id=np.arange(n), ts_s=ts, customer=rng.integers(0, 200, n),
                   terminal=term, amount=amount, fraud=fraud)  # fmt: skip


def test_train_fits_the_combo_choose_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    t = _table()
    config = FeatureConfig()
    x = T.replay_features(t, config)
    start = int(t.day.min()) + 24
    fixed = {"logreg@v1": m(0.72, 0.86), "logreg@all": m(0.71, 0.89), "rf@all": m(0.60, 0.88)}
    monkeypatch.setattr(T, "validate_combos", lambda *a, **k: fixed)
    res = T.train(t, x, start_day=start, candidates=["logreg", "rf"], feature_set="auto",
                  config=config)  # fmt: skip
    assert (res.candidate, res.model.meta["feature_set"]) == ("logreg", "all")
    assert res.model.kind == "linear" and res.validation == fixed
