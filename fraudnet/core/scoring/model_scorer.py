"""ModelScorer: the feature state plus a compiled model, behind the Scorer contract.

``score_many`` folds the batch into the window state (one kernel call),
scores it (one kernel call) and attaches reason codes. The node swaps the
model without losing state with :meth:`ModelScorer.swap_model`, as long as
the new model assumes the same window geometry (``feature_config``);
otherwise the swap is refused (:class:`~fraudnet.errors.ModelError`)
because features computed with another geometry would not match what the
model was trained on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fraudnet.errors import InputError, ModelError

from ..features.state import FeatureState
from ..records import TxColumns
from .base import ScoreBatch
from .compiled import CompiledModel
from .modelfile import encode_model, model_id_of
from .reasons import reasons_many

__all__ = ["ModelScorer"]


class ModelScorer:
    """Features + compiled model implementing :class:`~fraudnet.core.scoring.base.Scorer`."""

    def __init__(
        self,
        model: CompiledModel,
        state: FeatureState | None = None,
        *,
        model_id: str | None = None,
        top_reasons: int = 3,
    ) -> None:
        self.state = state or FeatureState(model.feature_config)
        if self.state.config != model.feature_config:
            raise ModelError("model scorer: the state's feature config differs from the model's")
        self.model = model
        self._model_id = model_id or model_id_of(encode_model(model))
        self.top_reasons = top_reasons
        self.scored = 0
        #: per-feature running sums over scored rows (for drift metrics): n, sum, sum of squares
        self.feature_sums = np.zeros((2, len(model.cols)), dtype=np.float64)

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

    def score_many(self, batch: TxColumns) -> ScoreBatch:
        x = self.features_many(batch)
        scores, contrib = self.model.predict_many(x)
        reasons = reasons_many(contrib, self.model.reason_of, top=self.top_reasons)
        self.scored += len(batch)
        xm = x[:, self.model.cols]
        self.feature_sums[0] += xm.sum(axis=0)
        self.feature_sums[1] += (xm * xm).sum(axis=0)
        return ScoreBatch(scores=scores, reasons=reasons)

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
        self.model = model
        self._model_id = model_id or model_id_of(encode_model(model))
        self.feature_sums = np.zeros((2, len(model.cols)), dtype=np.float64)
        self.scored = 0
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

    def snapshot(self) -> bytes:
        return self.state.snapshot()

    def restore(self, data: bytes) -> None:
        st = FeatureState.restore(data)
        if st.config != self.model.feature_config:
            raise InputError("state snapshot: its feature config differs from the model's")
        self.state = st
