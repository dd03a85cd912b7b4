"""Prometheus metrics of one node (own registry, so tests can run several nodes)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["NodeMetrics"]

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "fraudnet_transactions_received", "Transactions received", ["path"], registry=r
        )
        self.decisions = Counter(
            "fraudnet_decisions", "Decisions made", ["outcome", "path"], registry=r
        )
        self.dead_letters = Counter(
            "fraudnet_dead_letters", "Records sent to the dead-letter topic", ["field"], registry=r
        )
        self.duplicates = Counter(
            "fraudnet_duplicates", "Transactions already decided (not decided again)", registry=r
        )
        self.latency = Histogram(
            "fraudnet_decision_latency_seconds",
            "Node processing latency from ingest to decision",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "fraudnet_http_requests", "HTTP requests", ["route", "status"], registry=r
        )
        self.shed = Counter("fraudnet_http_shed", "Requests refused with 503", registry=r)
        self.inflight_batches = Gauge(
            "fraudnet_ingest_inflight_batches",
            "Internal batches produced, not yet decided",
            registry=r,
        )
        self.batch_size = Histogram(
            "fraudnet_batch_size", "Transactions per internal batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000), registry=r,
        )  # fmt: skip
        self.labels = Counter("fraudnet_labels", "Labels received", ["kind"], registry=r)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
