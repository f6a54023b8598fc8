"""Prometheus metrics of one server (its own registry, so two apps in a process never share counters)."""

from __future__ import annotations

from typing import Any

from data.optional import optional_import

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Metrics:
    def __init__(self) -> None:
        prom = optional_import("prometheus_client")
        self.registry: Any = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter(
            "rerank_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = prom.Histogram(
            "rerank_request_seconds", "Request latency by route", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_pairs = prom.Histogram(
            "rerank_batch_pairs", "Pairs per model call (after coalescing)", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_requests = prom.Histogram(
            "rerank_batch_requests", "Requests coalesced per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = prom.Histogram(
            "rerank_batch_seconds", "Model time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = prom.Gauge("rerank_queue_depth", "Requests waiting for the model", registry=r)
        self.pairs = prom.Counter("rerank_pairs", "Query-document pairs scored", registry=r)
        self.tokens = prom.Counter("rerank_input_tokens", "Input tokens the model read", registry=r)
        self.truncated = prom.Counter("rerank_truncated_documents", "Documents cut to the model's window", registry=r)
        self._prom = prom

    def observe_batch(self, requests: int, pairs: int, seconds: float) -> None:
        self.batch_requests.observe(requests)
        self.batch_pairs.observe(pairs)
        self.batch_seconds.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
