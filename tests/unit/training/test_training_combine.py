"""Consortium models: ``combine`` scores the weighted mean of the members' models, and
``fraudnet model sign|combine`` accept only files signed by a member of the network."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from fraudnet.core.features import FeatureConfig, feature_index
from fraudnet.core.scoring.compiled import CompiledModel
from fraudnet.errors import ModelError
from fraudnet.training import train as T
from fraudnet.training.combine import combine
from fraudnet.training.convert import compile_sklearn
from fraudnet.training.data import TxTable
from fraudnet.training.modelio import load_model, save_model

DAY = 86400.0


@pytest.fixture(scope="module")
def data() -> tuple[TxTable, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 3000
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    term = rng.integers(0, 40, n)
    fraud = ((amount > 180) | (term == 3) | (rng.random(n) < 0.02)).astype(np.int8)
    t = TxTable(tx_id=np.arange(n), ts_s=1.5226848e9 + np.sort(rng.uniform(0, 20 * DAY, n)),
                customer=rng.integers(0, 150, n), terminal=term, amount=amount,
                fraud=fraud)  # fmt: skip
    return t, T.replay_features(t, FeatureConfig())


def _fit(kind: str, names: tuple[str, ...], t: TxTable, x: np.ndarray, seed: int) -> CompiledModel:
    xs = x[:, feature_index(list(names))]
    rows = np.random.default_rng(seed).random(len(t)) < 0.6  # each member its own data
    if kind == "forest":
        est = RandomForestClassifier(n_estimators=6, min_samples_leaf=3, random_state=seed)
    else:
        est = HistGradientBoostingClassifier(max_iter=15, early_stopping=False, random_state=seed)
    return compile_sklearn(est.fit(xs[rows], t.fraud[rows]), names, FeatureConfig())


def test_combined_score_is_the_weighted_mean_of_the_members_scores(data) -> None:
    t, x = data
    v1, all_ = T.FEATURE_SETS["v1"], T.FEATURE_SETS["all"]
    members = [_fit("forest", v1, t, x, 1), _fit("gbm", all_, t, x, 2),
               _fit("forest", all_, t, x, 3)]  # fmt: skip
    blend = combine(members[:2])  # a member's model may itself be a blend
    models = [blend, members[2]]
    weights = [2.0, 1.0]
    out = combine(models, weights)
    assert out.kind == "blend" and set(out.feature_names) == set(all_)
    got, contrib = out.predict_many(x)
    want = sum(w * m.predict_many(x)[0] for m, w in zip(models, weights, strict=True)) / 3.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # reason codes stay per transaction: contributions differ between rows
    assert contrib.shape == (len(t), len(out.feature_names))
    assert np.ptp(contrib, axis=0).max() > 0
    # the file round-trips with the same scores
    assert out.meta["candidate"] == "consortium" and len(out.meta["members"]) == 2


def test_combine_refuses_what_it_cannot_mean(data) -> None:
    t, x = data
    v1 = T.FEATURE_SETS["v1"]
    a = _fit("forest", v1, t, x, 1)
    with pytest.raises(ModelError, match="no model"):
        combine([])
    with pytest.raises(ModelError, match="weight"):
        combine([a, a], [1.0, 0.0])
    b = _fit("forest", v1, t, x, 2)
    other = CompiledModel(kind=b.kind, feature_names=b.feature_names, arrays=b.arrays,
                          feature_config=FeatureConfig(delay_days=3.0))  # fmt: skip
    with pytest.raises(ModelError, match="feature windows"):
        combine([a, other])
    with pytest.raises(ModelError, match="parts"):
        combine([a] * 17)


def _cli(*args: str) -> tuple[int, str]:
    """``fraudnet ARGS`` in-process through the real entry point (one-line errors)."""
    from fraudnet.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as e:
            code = int(e.code or 0)
    return code, out.getvalue() + err.getvalue()


def test_sign_and_combine_accept_only_members_signed_files(tmp_path: Path, data) -> None:
    from fraudnet.testing import init_network

    t, x = data
    dirs = init_network(tmp_path / "net", 3)
    paths = []
    for i, d in enumerate(dirs):
        p = tmp_path / f"m{i}.fnm"
        save_model(_fit("forest", T.FEATURE_SETS["v1"], t, x, 10 + i), p)
        code, out = _cli("model", "sign", str(p), "--node", str(d))
        assert code == 0, out
        doc = json.loads(p.with_name(p.name + ".sig").read_text())
        assert doc["member"] == d.name and doc["network"] == "testnet"
        paths.append(p)
    out_path = tmp_path / "consortium.fnm"
    code, out = _cli("model", "combine", *map(str, paths), "--node", str(dirs[0]),
                     "--out", str(out_path))  # fmt: skip
    assert code == 0, out
    model, _ = load_model(out_path)
    assert model.meta["signers"] == [d.name for d in dirs]
    want = np.mean([load_model(p)[0].predict_many(x)[0] for p in paths], axis=0)
    np.testing.assert_allclose(model.predict_many(x)[0], want, rtol=0, atol=1e-12)

    # a file altered after signing: refused before it is decoded
    bad = tmp_path / "altered.fnm"
    raw = bytearray(paths[1].read_bytes())
    raw[-1] ^= 0xFF
    bad.write_bytes(bytes(raw))
    bad.with_name(bad.name + ".sig").write_bytes(paths[1].with_name(paths[1].name + ".sig")
                                                 .read_bytes())  # fmt: skip
    code, out = _cli("model", "combine", str(paths[0]), str(bad), "--node", str(dirs[0]),
                     "--out", str(tmp_path / "x.fnm"))  # fmt: skip
    assert code != 0 and "altered or wrong file" in out and "Traceback" not in out
    # a signature by someone outside the network
    outsider = init_network(tmp_path / "other", 1, network_id="othernet")[0]
    alien = tmp_path / "alien.fnm"
    alien.write_bytes(paths[2].read_bytes())
    code, out = _cli("model", "sign", str(alien), "--node", str(outsider))
    assert code == 0, out
    code, out = _cli("model", "combine", str(paths[0]), str(alien), "--node", str(dirs[0]),
                     "--out", str(tmp_path / "y.fnm"))  # fmt: skip
    assert code != 0 and "othernet" in out
    # a missing signature, and one model twice
    unsigned = tmp_path / "unsigned.fnm"
    unsigned.write_bytes(paths[0].read_bytes())
    code, out = _cli("model", "combine", str(unsigned), "--node", str(dirs[0]),
                     "--out", str(tmp_path / "z.fnm"))  # fmt: skip
    assert code != 0 and "unsigned.fnm.sig" in out
    code, out = _cli("model", "combine", str(paths[0]), str(paths[0]), "--node", str(dirs[0]),
                     "--out", str(tmp_path / "w.fnm"))  # fmt: skip
    assert code != 0 and "one model per member" in out
