"""ModelScorer: the feature state plus a compiled model, behind the Scorer contract.

``score_many`` folds the batch into the window state, scores it, picks
reason codes and updates the drift histograms in one kernel call
(:mod:`~.fused`). The node swaps the model without losing state with
:meth:`ModelScorer.swap_model`, as long as the new model assumes the same
window geometry (``feature_config``); otherwise the swap is refused
(:class:`~fraudnet.errors.ModelError`) because features computed with
another geometry would not match what the model was trained on.

Drift (:meth:`ModelScorer.drift_metrics`): a score histogram (fixed
Prometheus ``le`` buckets, :data:`~.fused.SCORE_EDGES`), and per model
feature the mean shift against training (in training standard deviations)
and the population stability index over the training deciles (when the
model file carries them: ``train_edges`` / ``train_bin_frac``, written by
``fraudnet model train``). Counts restart at a model swap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fraudnet.errors import InputError, ModelError

from ..features.network import NET_COLS
from ..features.schema import N_FEATURES
from ..features.state import FeatureState
from ..records import TxColumns
from .base import ScoreBatch, score_batch
from .compiled import CompiledModel
from .fused import KIND_FOREST, KIND_LINEAR, SCORE_EDGES, reason_keys, score_fused
from .modelfile import encode_model, model_id_of
from .reasons import LOW_RISK

__all__ = ["ModelScorer"]

_EMPTY = np.zeros(0, dtype=np.float64)
_U64 = np.dtype(np.uint64)
_F64 = np.dtype(np.float64)
_I8 = np.dtype(np.int8)
_PSI_EPS = 1e-4


class _Decoder(dict[int, tuple[str, ...]]):
    """Reason key (see :func:`~.fused.reason_keys`) -> code tuple, filled on demand."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__()
        self.codes = codes

    def __missing__(self, key: int) -> tuple[str, ...]:
        base = len(self.codes) + 1
        out = []
        k = key
        while k:
            out.append(self.codes[k % base - 1])
            k //= base
        val = tuple(out) if out else (LOW_RISK,)
        self[key] = val
        return val


class ModelScorer:
    """Features + compiled model implementing :class:`~fraudnet.core.scoring.base.Scorer`."""

    def __init__(
        self,
        model: CompiledModel,
        state: FeatureState | None = None,
        *,
        model_id: str | None = None,
        top_reasons: int = 3,
        min_contribution: float = 0.01,
    ) -> None:
        self.state = state or FeatureState(model.feature_config)
        if self.state.config != model.feature_config:
            raise ModelError("model scorer: the state's feature config differs from the model's")
        self.top_reasons = top_reasons
        self.min_contribution = min_contribution
        self._set_model(model, model_id)

    def _set_model(self, model: CompiledModel, model_id: str | None) -> None:
        self.model = model
        self._model_id = model_id or model_id_of(encode_model(model))
        a = model.arrays
        nf = len(model.cols)
        codes = sorted(set(model.reason_of))
        code_of = np.array([codes.index(c) for c in model.reason_of], dtype=np.int64)
        if model.kind == "linear":
            kind, base = KIND_LINEAR, float(a["intercept"][0])
            lin = (a["coef"], a["mean"], a["scale"])
        else:  # every tree kind: the model's parts table carries aggregation and baselines
            kind, base = KIND_FOREST, 0.0
            lin = (_EMPTY, _EMPTY, _EMPTY)
        self._margs = (kind, model.cols, *model.tree_args, base, *lin, code_of, len(codes),
                       self.top_reasons, self.min_contribution)  # fmt: skip
        self._decode = _Decoder(codes)
        self._net_cols = bool(np.isin(model.cols, NET_COLS).any())
        self._last_x = np.zeros((0, N_FEATURES), dtype=np.float64)
        edges, frac = _train_bins(model.meta, nf)
        self._edges = edges
        self._train_frac = frac
        #: per model feature: running sum and sum of squares over scored rows
        self.feature_sums = np.zeros((2, nf), dtype=np.float64)
        self._fcounts = np.zeros((nf, edges.shape[1] + 1), dtype=np.int64)
        self._score_counts = np.zeros(SCORE_EDGES.shape[0] + 1, dtype=np.int64)
        self._score_sum = np.zeros(1, dtype=np.float64)
        self.scored = 0
        self._ws_n = -1
        self._ws: tuple[npt.NDArray[Any], ...] = ()
        self._fixed: tuple[Any, ...] | None = None
        self._fixed_state: tuple[Any, ...] | None = None

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def feature_schema_version(self) -> int:
        return self.model.schema_version

    def features_many(self, batch: TxColumns) -> npt.NDArray[np.float64]:
        """Fold ``batch`` into the state and return its full feature matrix (no scoring)."""
        return self.state.fold_arrays(
            batch.card_key, batch.terminal_key, batch.ts_s, batch.amount, batch.label
        )

    def _fixed_args(self, n: int) -> tuple[Any, ...]:
        """The arguments of :func:`~.fused.score_fused` that do not change from call to
        call (state arrays, model, drift counts, work buffers for ``n`` rows), as one
        tuple, rebuilt only when the state's arrays, the model or ``n`` change."""
        st_args = self.state.fold_state_args()
        if n != self._ws_n:
            nf = len(self.model.cols)
            # work buffers, reused while batches keep the same size (a node scoring one
            # transaction at a time allocates nothing here); x stays readable as _last_x
            # until the next call
            self._ws = (np.empty(n, dtype=np.int64), np.empty((n, N_FEATURES)),
                        np.empty((n, nf)), np.empty(n, dtype=np.int64))  # fmt: skip
            self._ws_n = n
            self._fixed = None
        if self._fixed is None or self._fixed_state is not st_args:
            drift = (self.feature_sums, self._edges, self._fcounts, self._score_counts,
                     self._score_sum)  # fmt: skip
            self._fixed = (*st_args, *self._margs, *drift, *self._ws)
            self._fixed_state = st_args
        return self._fixed

    def score_many(self, batch: TxColumns) -> ScoreBatch:
        n = len(batch)
        if n == 0:
            return ScoreBatch(scores=np.zeros(0, dtype=np.float64), reasons=[])
        ck, tk, ts, amt, lab = (batch.card_key, batch.terminal_key, batch.ts_s, batch.amount,
                                batch.label)  # fmt: skip
        if not (ck.dtype == _U64 and tk.dtype == _U64 and ts.dtype == _F64 and amt.dtype == _F64
                and lab.dtype == _I8 and ck.flags.c_contiguous and tk.flags.c_contiguous
                and ts.flags.c_contiguous and amt.flags.c_contiguous
                and lab.flags.c_contiguous):  # fmt: skip
            ck, tk, ts, amt, lab = (_c(ck, _U64), _c(tk, _U64), _c(ts, _F64), _c(amt, _F64),
                                    _c(lab, _I8))  # fmt: skip
        if not ck.shape == tk.shape == ts.shape == amt.shape == lab.shape == (n,):
            raise InputError("feature batch: columns differ in length")
        scores = np.empty(n, dtype=np.float64)
        start = 0
        while True:
            fixed = self._fixed_args(n)
            args = (*fixed, ck, tk, ts, amt, lab, start, scores)
            r = score_fused(*args)
            if r == n:
                break
            if r < 0:
                raise InputError(
                    f"feature batch: row {-r - 1} has a non-finite time or amount, or a time "
                    "outside 1970..2106"
                )
            self.state.ensure_room(float(ts.max()))
            start = r
        self.scored += n
        _, self._last_x, _, keys = self._ws
        dec = self._decode
        return score_batch(scores, [dec[k] for k in keys.tolist()])

    @property
    def uses_network_features(self) -> bool:
        """True if the model reads network columns (see fraudnet.core.features.network)."""
        return self._net_cols

    def score_network_many(
        self, batch: TxColumns, net: npt.NDArray[np.float64]
    ) -> tuple[ScoreBatch, npt.NDArray[np.float64]]:
        """:meth:`score_many` with the network columns set from ``net`` (n x 6, in
        ``NETWORK_NAMES`` order); also returns the *local* scores (network columns
        neutral), the only scores a member may signal from. The fused kernel computes
        the local pass (and the drift counts, on neutral network columns); the
        network pass rescores the same rows."""
        n = len(batch)
        if net.shape != (n, NET_COLS.shape[0]) or not np.isfinite(net).all():
            raise InputError(f"network features: expected {n} x {NET_COLS.shape[0]} finite values")
        local = self.score_many(batch)
        if n == 0:
            return local, local.scores
        x = self._last_x
        x[:, NET_COLS] = net
        scores = np.empty(n, dtype=np.float64)
        contrib = np.empty((n, len(self.model.cols)), dtype=np.float64)
        self.model.predict_into(x, scores, contrib)
        keys = np.empty(n, dtype=np.int64)
        reason_keys(contrib, *self._margs[-4:], keys)  # code_of, n_codes, top, min_contribution
        dec = self._decode
        return ScoreBatch(scores=scores, reasons=[dec[k] for k in keys.tolist()]), local.scores

    def apply_labels(
        self,
        terminal_key: npt.NDArray[np.uint64],
        tx_ts_s: npt.NDArray[np.float64],
        label: npt.NDArray[np.int8],
    ) -> int:
        """Feed label events (see :meth:`FeatureState.apply_labels`)."""
        return self.state.apply_labels(terminal_key, tx_ts_s, label)

    def swap_model(self, model: CompiledModel, model_id: str | None = None) -> str:
        """Replace the model, keeping the window state; returns the previous model id."""
        if model.feature_config != self.state.config:
            raise ModelError(
                "model swap refused: the new model assumes a different feature config "
                f"({model.feature_config.to_json()}) than the running state"
            )
        old = self._model_id
        self._set_model(model, model_id)
        return old

    def drift(self) -> dict[str, Any]:
        """Mean shift of each model feature against the training data, in training std units.

        Uses ``train_mean`` / ``train_std`` from the model metadata (written by
        training); empty when the model has none or nothing was scored yet.
        """
        mu = self.model.meta.get("train_mean")
        sd = self.model.meta.get("train_std")
        if self.scored == 0 or not isinstance(mu, list) or not isinstance(sd, list):
            return {}
        live = self.feature_sums[0] / self.scored
        out = {}
        for name, m, s, v in zip(self.model.feature_names, mu, sd, live, strict=False):
            out[name] = float((v - float(m)) / max(float(s), 1e-9))
        return out

    def drift_metrics(self) -> dict[str, Any]:
        """Prometheus-friendly drift data since the model was loaded.

        ``{"model_id", "scored", "score_histogram": {"buckets": [[le, cumulative
        count], ..., ["+Inf", n]], "sum", "count"}, "feature_mean_shift": {name:
        float}, "feature_psi": {name: float}}`` -- export the histogram as
        ``fraudnet_score`` buckets and the others as gauges labelled by feature.
        PSI uses the training deciles (absent for models without them); the
        usual reading is < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant shift.
        """
        cum = np.cumsum(self._score_counts).tolist()
        buckets: list[list[Any]] = [[float(e), int(c)] for e, c in zip(SCORE_EDGES, cum[:-1],
                                                                       strict=True)]  # fmt: skip
        buckets.append(["+Inf", int(cum[-1])])
        psi: dict[str, float] = {}
        if self.scored and self._train_frac is not None:
            live = self._fcounts / self.scored
            for k, name in enumerate(self.model.feature_names):
                e = np.maximum(self._train_frac[k], _PSI_EPS)
                a = np.maximum(live[k], _PSI_EPS)
                psi[name] = float(np.sum((a - e) * np.log(a / e)))
        return {
            "model_id": self._model_id,
            "scored": self.scored,
            "score_histogram": {
                "buckets": buckets,
                "sum": float(self._score_sum[0]),
                "count": int(cum[-1]),
            },
            "feature_mean_shift": self.drift(),
            "feature_psi": psi,
        }

    def snapshot(self) -> bytes:
        return self.state.snapshot()

    def snapshot_shard(self, shard: int, n_shards: int) -> bytes:
        """Window state of the entities with ``key mod n_shards == shard`` (one durable
        table value per shard; see :mod:`fraudnet.core.features.shards`)."""
        return self.state.snapshot_shard(shard, n_shards)

    def restore_shard(self, data: bytes) -> tuple[int, int]:
        """Merge one shard's state (insert or overwrite its entities); returns
        (cards, terminals). :class:`InputError` on damage, state unchanged."""
        return self.state.restore_shard(data)

    def restore(self, data: bytes) -> None:
        st = FeatureState.restore(data)
        if st.config != self.model.feature_config:
            raise InputError("state snapshot: its feature config differs from the model's")
        self.state = st


def _c(a: npt.NDArray[Any], dtype: Any) -> npt.NDArray[Any]:
    if a.dtype == dtype and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=dtype)


def _train_bins(
    meta: dict[str, Any], nf: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
    """Training decile edges (nf x 9) and bin fractions (nf x 10) from model metadata;
    an empty edge matrix (and None) when absent or malformed."""
    edges, frac = meta.get("train_edges"), meta.get("train_bin_frac")
    try:
        e = np.asarray(edges, dtype=np.float64)
        f = np.asarray(frac, dtype=np.float64)
        ok = (e.ndim == 2 and e.shape[0] == nf and f.shape == (nf, e.shape[1] + 1)
              and bool(np.isfinite(e).all()) and bool(np.isfinite(f).all())
              and bool((np.diff(e, axis=1) >= 0).all()))  # fmt: skip
    except (TypeError, ValueError):
        ok = False
    if not ok:
        return np.zeros((nf, 0), dtype=np.float64), None
    return np.ascontiguousarray(e), f
