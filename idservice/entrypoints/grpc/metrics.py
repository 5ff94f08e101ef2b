"""Prometheus metrics of the RPCs (IDSERVICE_METRICS_LISTEN): counts by code, and latencies.

One process (IDSERVICE_PROCESSES=1) serves its own `REGISTRY`. With several server processes
the supervisor gives them a private directory in PROMETHEUS_MULTIPROC_DIR (set before they import
prometheus_client), they write their values there, and the supervisor alone serves /metrics,
summing the processes' files (`MultiprocessMetrics`). Gauges therefore name a
`multiprocess_mode`: `livesum` for what each process holds, `livemax`/`mostrecent` for values
read from the database (every process reads the same number).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

# prometheus-client's switch to multiprocess mode: read once, when it is first imported.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

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
RATE_LIMITED = Counter(
    "idservice_rate_limited",
    "RPCs answered RESOURCE_EXHAUSTED with reason RATE_LIMITED, by method.",
    ["method"],
    registry=REGISTRY,
)

# Waits: from well under a millisecond (a free thread or connection) to the pool timeouts.
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ARGON2_QUEUE_DEPTH = Gauge(
    "idservice_argon2_queue_depth",
    "Password hashes queued or running on this process's Argon2 pool.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
ARGON2_WAIT = Histogram(
    "idservice_argon2_wait_seconds",
    "Time a password hash waited for an Argon2 thread.",
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
DB_POOL_IN_USE = Gauge(
    "idservice_db_pool_in_use",
    "Database connections checked out of this process's pool.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DB_POOL_WAIT = Histogram(
    "idservice_db_pool_wait_seconds",
    "Time to check a connection out of the database pool (waiting, connecting, pre-ping).",
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
# Read from the database every few seconds by a background thread (never per scrape); every
# process reads the same numbers, so the latest one is shown, not their sum.
OUTBOX_PENDING = Gauge(
    "idservice_outbox_pending",
    "Outbox events neither delivered nor dead.",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_PENDING = Gauge(
    "idservice_outbox_oldest_pending_seconds",
    "Age of the oldest outbox event neither delivered nor dead (0 when there is none).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
OUTBOX_DEAD_LETTERS = Gauge(
    "idservice_outbox_dead_letters",
    "Outbox events that gave up (idservice outbox replay sends them again).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
CONSENT_REQUESTS = Gauge(
    "idservice_consent_requests",
    "Guardian consent requests by state (a pending request past its window counts as expired).",
    ["state"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)


def observe(method: str, code: str, reason: str, seconds: float) -> None:
    RPCS.labels(method, code, reason).inc()
    LATENCY.labels(method).observe(seconds)
    if code == "RESOURCE_EXHAUSTED" and reason == "RATE_LIMITED":
        RATE_LIMITED.labels(method).inc()


def count_refusals_from_zero(methods: Iterable[str]) -> None:
    """Every method's `idservice_rate_limited_total` at 0 from the start, so the series exists
    (for dashboards and `rate()`) before a first refusal."""
    for method in methods:
        RATE_LIMITED.labels(method)


def serve_metrics(listen: str) -> None:
    """Expose /metrics on host:port (a daemon thread)."""
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]"), registry=REGISTRY)


class MultiprocessMetrics:
    """The supervisor's /metrics: the sum of every server process's values in `directory`."""

    def __init__(self, listen: str, directory: Path) -> None:
        self.directory = directory
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        host, _, port = listen.rpartition(":")
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(
            int(port), addr=host.strip("[]"), registry=registry
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def process_exited(self, pid: int) -> None:
        """Drop a dead process's live gauges (its counters and histograms keep counting)."""
        multiprocess.mark_process_dead(pid, path=str(self.directory))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
