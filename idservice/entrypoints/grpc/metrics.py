"""Prometheus metrics of the RPCs (IDSERVICE_METRICS_LISTEN): counts by code, and latencies."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry()
RPCS = Counter(
    "idservice_rpcs",
    "RPCs handled, by method and gRPC status code (and error reason).",
    ["method", "code", "reason"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "idservice_rpc_seconds",
    "RPC handling time by method.",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)


def observe(method: str, code: str, reason: str, seconds: float) -> None:
    RPCS.labels(method, code, reason).inc()
    LATENCY.labels(method).observe(seconds)


def serve_metrics(listen: str) -> None:
    """Expose /metrics on host:port (a daemon thread)."""
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host, registry=REGISTRY)
