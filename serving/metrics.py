"""Prometheus metrics of the local server (prometheus-client), served at the monitoring path."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """One registry per server, so servers in one process (tests) do not share counts."""

    def __init__(self, queue_depth=None):
        self.registry = CollectorRegistry()
        self.requests = Counter("dfdetect_serving_requests", "Requests by model, signature, API and status",
                                ["model", "signature", "api", "status"], registry=self.registry)
        self.latency = Histogram("dfdetect_serving_request_latency_seconds", "Request latency, seconds",
                                 ["model", "signature", "api"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("dfdetect_serving_batch_size", "Rows per model call made by the batcher",
                                    ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("dfdetect_serving_batch_queue_depth", "Requests waiting in batch queues",
                                 registry=self.registry)
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)
        self.versions_loaded = Gauge("dfdetect_serving_versions_loaded", "Versions AVAILABLE per model",
                                     ["model"], registry=self.registry)

    def observe(self, model: str, signature: str, api: str, status: str, seconds: float) -> None:
        """Count one request by model, signature, API and status, and record its latency in seconds."""
        self.requests.labels(model=model, signature=signature, api=api, status=status).inc()
        self.latency.labels(model=model, signature=signature, api=api).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
