"""The node's risk policy: load, hot reload, shadow, review queue.

Files in the node directory (written by ``fraudnet policy deploy``):

* ``policy/active.toml`` -- the live bundle; without it the node uses the
  plain ``[scoring]`` thresholds;
* ``policy/shadow.toml`` -- an optional candidate evaluated beside the live
  one on live traffic (its would-be outcomes are counted, never applied).

A change of either file is picked up within ``interval`` seconds: the bundle
is validated first (an invalid one is logged with file and line and
ignored; the running policy stays), then swapped atomically between two
batches, and a ``policy_change`` audit record with the bundle's SHA-256 is
written. Transactions whose outcome is review (or step-up) are put in the
review queue (``fraudnet review list DIR``) once their decision is durable.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from mode import Service

from fraudnet.core.audit.schema import AuditRecord
from fraudnet.core.pipeline import NodeCore
from fraudnet.core.policy.bundle import load_bundle
from fraudnet.core.policy.holder import PolicyEngine, PolicyHolder
from fraudnet.core.records import Decision, TxRecord
from fraudnet.errors import PolicyError

from .runtime import NodeRuntime, now_us
from .storage.audit_async import AsyncAuditLog
from .storage.review import ReviewItem, open_review_queue, review_items

__all__ = ["PolicyService", "attach_policy"]

log = logging.getLogger("fraudnet.policy")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class PolicyService(Service):
    def __init__(
        self,
        node_dir: Path,
        core: NodeCore,
        runtime: NodeRuntime,
        audit: AsyncAuditLog,
        actor: str,
        holder: PolicyHolder,
        *,
        send_labels: Callable[[list[bytes]], Awaitable[None]] | None = None,
        interval: float = 1.0,
        **kw: Any,
    ) -> None:
        self.dir = node_dir / "policy"
        self.core = core
        self.audit = audit
        self.actor = actor
        self.holder = holder
        self.interval = interval
        self.send_labels = send_labels
        self._stack = contextlib.ExitStack()
        self.queue = self._stack.enter_context(open_review_queue(node_dir))
        self._pending: dict[str, ReviewItem] = {}
        self._seen = {name: _read(self.dir / name) for name in ("active.toml", "shadow.toml")}
        core.on_policy_batch = self._on_batch
        runtime.decided_hooks.append(self._on_decided)
        runtime.metrics.registry.register(_ShadowCollector(core))
        self._shadow_file = node_dir / "run" / "shadow.json"
        super().__init__(**kw)

    async def on_started(self) -> None:
        self.add_future(self._watch())

    async def on_stop(self) -> None:
        self._stack.close()

    # -- review queue --------------------------------------------------------------
    def _on_batch(self, records: Sequence[TxRecord], reasons: Any, ev: Any, inp: Any) -> None:
        for item in review_items(records, reasons, ev, inp):
            self._pending[item.tx_id] = item

    def _on_decided(self, decisions: Sequence[Decision], records: Sequence[TxRecord]) -> None:
        if not self._pending:
            return
        items = [i for d in decisions if (i := self._pending.pop(d.tx_id, None)) is not None]
        if items:
            self.queue.enqueue_many(items, now_us())

    # -- hot reload --------------------------------------------------------------------
    async def _watch(self) -> None:
        while not self.should_stop:
            await self.sleep(self.interval)  # polling the files; not synchronisation
            for name in ("active.toml", "shadow.toml"):
                data = _read(self.dir / name)
                if data == self._seen[name]:
                    continue
                self._seen[name] = data
                try:
                    rec = self._apply(name, data)
                except PolicyError as e:
                    log.error("policy not changed: %s", e)
                    continue
                if rec is not None:
                    await self.audit.append_durable([rec])
            await self._deliver_labels()
            self._write_shadow()

    def _write_shadow(self) -> None:
        """The live-vs-shadow comparison, for ``cat DIR/run/shadow.json`` and dashboards."""
        engine = self.core.policy
        stats = None if engine is None else engine.shadow_stats
        if stats is None or self.holder.shadow is None:
            return
        self._shadow_file.parent.mkdir(exist_ok=True)
        tmp = self._shadow_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats.as_dict(), default=str, indent=1))
        tmp.replace(self._shadow_file)

    async def _deliver_labels(self) -> None:
        """Labels of resolved reviews (``fraudnet review resolve``) -> the labels topic."""
        if self.send_labels is None:
            return
        out: list[dict[str, Any]] = []
        self.queue.flush_labels(out.extend)
        if out:
            await self.send_labels([json.dumps(x).encode() for x in out])

    def _apply(self, name: str, data: bytes | None) -> AuditRecord | None:
        now = now_us()
        src = str(self.dir / name)
        if name == "active.toml":
            if data is None:
                log.warning("%s removed; the last live policy stays installed", src)
                return None
            installed, rec = self.holder.replace(data, source=src, now_us=now, actor=self.actor)
            log.info("policy %s v%s installed", installed.bundle.policy_id, installed.version)
            return rec
        bundle = None if data is None else load_bundle(data, src)
        return self.holder.set_shadow(bundle, now_us=now, actor=self.actor)


def attach_policy(
    node_dir: Path,
    core: NodeCore,
    runtime: NodeRuntime,
    audit: AsyncAuditLog,
    actor: str,
    send_labels: Callable[[list[bytes]], Awaitable[None]] | None = None,
) -> PolicyService | None:
    """Install ``policy/active.toml`` (and ``shadow.toml``) when present."""
    active = _read(node_dir / "policy" / "active.toml")
    if active is None:
        return None
    holder = PolicyHolder(
        load_bundle(active, str(node_dir / "policy" / "active.toml")), now_us=now_us()
    )
    shadow = _read(node_dir / "policy" / "shadow.toml")
    if shadow is not None:
        src = str(node_dir / "policy" / "shadow.toml")
        holder.set_shadow(load_bundle(shadow, src), now_us=now_us())
    core.policy = PolicyEngine(holder)
    return PolicyService(node_dir, core, runtime, audit, actor, holder, send_labels=send_labels)


class _ShadowCollector:
    """``fraudnet_policy_shadow_transactions{live=..., candidate=...}``: would-be outcomes."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        from fraudnet.core.policy.evaluate import ACTION_NAMES

        engine = self.core.policy
        stats = None if engine is None else engine.shadow_stats
        fam = CounterMetricFamily(
            "fraudnet_policy_shadow_transactions",
            "Transactions by live action and shadow-candidate action",
            labels=["live", "candidate"],
        )
        if stats is not None:
            for i, live in enumerate(ACTION_NAMES):
                for j, cand in enumerate(ACTION_NAMES):
                    fam.add_metric([live, cand], float(stats.matrix[i, j]))
        yield fam
