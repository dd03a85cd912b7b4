"""Label events (confirmed fraud, chargeback, false positive) applied to the feature state."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from fraudnet.core.ids import key64

if TYPE_CHECKING:
    from .runtime import NodeRuntime

__all__ = ["LABEL_VALUES", "apply_label"]

#: label kind -> label value (1 = fraud, 0 = retraction of a fraud label)
LABEL_VALUES = {"fraud": 1, "chargeback": 1, "false_positive": 0, "genuine": 0}


def apply_label(rt: NodeRuntime, value: bytes) -> None:
    """Apply one label event (JSON ``{tx_id, kind, event_time_us}``). Never raises.

    The transaction is looked up in the de-dup store (which keeps its event
    time and entity references); a scorer with ``apply_labels`` folds it into
    label-based features, which use it only once it is older than the label
    delay. ``fraud`` and ``chargeback`` mark fraud, ``false_positive`` and
    ``genuine`` retract it.
    """
    try:
        obj = json.loads(value)
        kind = str(obj["kind"])
        tx_id = str(obj["tx_id"])
    except (ValueError, KeyError, TypeError):
        rt.metrics.labels.labels(kind="invalid").inc()
        return
    entity = rt.lookup_entity(tx_id)  # also decided but not yet in the de-dup table
    if entity is None or kind not in LABEL_VALUES:
        rt.metrics.labels.labels(kind="unknown_tx" if entity is None else "invalid").inc()
        return
    ts_us, _card_ref, terminal_ref = entity
    apply = getattr(rt.core.scorer, "apply_labels", None)
    if apply is not None:
        apply(
            np.array([key64(terminal_ref)], dtype=np.uint64),
            np.array([ts_us / 1e6], dtype=np.float64),
            np.array([LABEL_VALUES[kind]], dtype=np.int8),
        )
    rt.metrics.labels.labels(kind=kind).inc()
