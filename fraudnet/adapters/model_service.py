"""The node's model: deploy without restart, drift metrics.

``fraudnet model deploy MODEL --node DIR`` validates a model file and
installs it atomically as ``DIR/model/active.model``. The running node
checks that file every ``interval`` seconds; a new one is loaded (off the
event loop), checked, and swapped in between two batches with
:meth:`ModelScorer.swap_model`, which keeps all window state, so no
transaction is lost or decided twice. Every load and swap is a
``model_change`` audit record naming the old and new model ids. A node
started with the built-in baseline rules takes a deployed model at its next
start (its window state is of another kind), and says so in its log.

Drift: the scorer's score histogram and per-feature mean shift / PSI
against the training data are exported as ``fraudnet_score`` (histogram),
``fraudnet_feature_mean_shift{feature}`` and ``fraudnet_feature_psi{feature}``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from mode import Service

from fraudnet.core.audit.schema import event_record
from fraudnet.core.pipeline import NodeCore
from fraudnet.errors import ModelError

from .runtime import NodeRuntime, now_us
from .storage.audit_async import AsyncAuditLog

__all__ = ["ACTIVE_MODEL", "ModelService"]

log = logging.getLogger("fraudnet.model")
ACTIVE_MODEL = Path("model") / "active.model"


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


class ModelService(Service):
    def __init__(
        self,
        node_dir: Path,
        core: NodeCore,
        runtime: NodeRuntime,
        audit: AsyncAuditLog,
        actor: str,
        *,
        interval: float = 1.0,
        **kw: Any,
    ) -> None:
        self.path = node_dir / ACTIVE_MODEL
        self.core = core
        self.audit = audit
        self.actor = actor
        self.interval = interval
        self._stamp = _stamp(self.path)
        runtime.metrics.registry.register(_DriftCollector(core))
        super().__init__(**kw)

    async def on_started(self) -> None:
        await self._record("load", self.core.scorer.model_id, "", "ok")
        self.add_future(self._watch())

    async def _record(self, action: str, new: str, old: str, outcome: str) -> None:
        rec = event_record(
            "model_change", at_us=now_us(), actor=self.actor, action=action, outcome=outcome,
            resource=f"model:{new}", model_id=new, previous_model_id=old,
        )  # fmt: skip
        await self.audit.append_durable([rec])

    async def _watch(self) -> None:
        while not self.should_stop:
            await self.sleep(self.interval)  # polling the file; not synchronisation
            stamp = _stamp(self.path)
            if stamp is None or stamp == self._stamp:
                continue
            self._stamp = stamp
            swap = getattr(self.core.scorer, "swap_model", None)
            try:
                # imported (and its Numba kernels compiled) only when a model is deployed,
                # and off the event loop
                model, model_id = await asyncio.get_running_loop().run_in_executor(
                    None, _load_model, self.path
                )
            except ModelError as e:
                log.error("deployed model not installed: %s", e)
                await self._record("deploy", "", self.core.scorer.model_id, "rejected")
                continue
            if swap is None:
                log.warning(
                    "model %s deployed; this node runs the baseline rules and takes it at "
                    "its next start", model_id,
                )  # fmt: skip
                await self._record("deploy", model_id, self.core.scorer.model_id, "pending_restart")
                continue
            try:
                old = swap(model, model_id)
            except ModelError as e:
                log.error("deployed model not installed: %s", e)
                await self._record("deploy", model_id, self.core.scorer.model_id, "rejected")
                continue
            log.info("model %s installed (was %s)", model_id, old)
            await self._record("deploy", model_id, old, "ok")


def _load_model(path: Path) -> Any:
    from fraudnet.training.modelio import load_model

    return load_model(path)


class _DriftCollector:
    def __init__(self, core: NodeCore) -> None:
        self.core = core

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

        metrics = getattr(self.core.scorer, "drift_metrics", None)
        if metrics is None:
            return
        d = metrics()
        h = d["score_histogram"]
        yield HistogramMetricFamily(
            "fraudnet_score", "Model scores since the model was loaded",
            buckets=[(str(le), float(c)) for le, c in h["buckets"]], sum_value=h["sum"],
        )  # fmt: skip
        shift = GaugeMetricFamily(
            "fraudnet_feature_mean_shift", "Feature mean vs training, in training std units",
            labels=["feature"],
        )  # fmt: skip
        for name, v in sorted(d["feature_mean_shift"].items()):
            shift.add_metric([name], float(v))
        yield shift
        psi = GaugeMetricFamily(
            "fraudnet_feature_psi", "Population stability index vs training deciles",
            labels=["feature"],
        )  # fmt: skip
        for name, v in sorted(d["feature_psi"].items()):
            psi.add_metric([name], float(v))
        yield psi
