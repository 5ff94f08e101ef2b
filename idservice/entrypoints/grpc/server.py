"""The gRPC server: servicers, health, reflection, TLS, a draining shutdown, and (with
IDSERVICE_HEALTH_LISTEN) a plaintext listener that serves the health service alone."""

from __future__ import annotations

import logging
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from idservice.bootstrap import App
from idservice.config import ConfigError, Settings
from idservice.entrypoints import worker
from idservice.entrypoints.grpc import metrics, telemetry
from idservice.entrypoints.grpc.interceptors import ApiGate, ThreadPlacement
from idservice.entrypoints.grpc.pools import (
    QUICK_METHODS,
    HandlerPools,
    TrackedExecutor,
    quick_threads,
)
from idservice.entrypoints.grpc.servicers import METHOD_NAMES, SERVICE_NAMES, register
from idservice.entrypoints.tls import CertificateReloader, TlsMaterial, load_tls

log = logging.getLogger(__name__)

# The transport refuses larger messages before parsing (RESOURCE_EXHAUSTED without details);
# requests up to this size get a VALIDATION_FAILED with details when over MAX_REQUEST_BYTES.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


# After the grace period grpc cancels the calls still running, but their handler threads go on
# to the end of their current step; the app (database, hasher) closes only after them.
HANDLER_SETTLE_SECONDS = 5.0
# After the drain, the transport stops with at least this grace for answers being sent.
FINAL_ANSWER_SECONDS = 0.5
# A health name that does not depend on the database: SERVING while the process runs and is not
# draining (for liveness probes: a database outage makes pods unready, it does not restart them).
LIVENESS = "liveness"
# The health-only listener: threads for its calls (a Watch holds one), and calls at once.
HEALTH_WORKERS = 4
# How long a thread may hold the GIL while another waits for it (CPython's default is 5 ms).
# A handler comes back from every database call, lock or Argon2 hash needing the GIL; with the
# default it can wait up to 5 ms behind a thread running Python, and SQLite's write lock and the
# Argon2 pool's results wait with it. 0.5 ms measured 10–30 % more calls per CPU second on
# the paths of scripts/benchmark.py (docs/performance.md).
GIL_SWITCH_INTERVAL_SECONDS = 0.0005
# A connection ends (GOAWAY, then new calls go on a new connection) after about this long, so
# that behind an L4 balancer or with client-side round robin new instances get their share and
# DNS is read again. grpc adds ±10 % jitter. Calls in flight get the grace to finish.
MAX_CONNECTION_AGE_SECONDS = 300.0
MAX_CONNECTION_AGE_GRACE_SECONDS = 60.0
HEALTH_MAX_CONCURRENT_RPCS = 16


@dataclass
class RunningServer:
    """A started server and the parts its shutdown needs."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    app: App
    executor: HandlerPools
    gate: ApiGate
    # The plaintext listener of IDSERVICE_HEALTH_LISTEN (the same `health` servicer), if any.
    health_listener: HealthListener | None = None
    _stop_background: threading.Event = field(default_factory=threading.Event)
    _draining: bool = False
    _dispatcher: threading.Thread | None = None
    # The connection log's writer runs until the last handler is done (not just the drain).
    _stop_recording: threading.Event = field(default_factory=threading.Event)
    _recorder: threading.Thread | None = None

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving and not self._draining
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, status)
        self.health.set(
            LIVENESS,
            health_pb2.HealthCheckResponse.NOT_SERVING
            if self._draining
            else health_pb2.HealthCheckResponse.SERVING,
        )

    @property
    def dispatching(self) -> bool:
        """True while this server delivers outbox events itself."""
        return self._dispatcher is not None and self._dispatcher.is_alive()

    def start_background_work(self, *, purge: bool = True) -> None:
        """The database probe, the purge (unless `purge` is False: one server process of a
        supervisor runs it for all), the connection log's writer, (unless turned off) the
        outbox dispatcher and (with metrics) the refresh of the database-derived gauges."""
        app, stop = self.app, self._stop_background
        self._recorder = worker.start_thread(
            "connection-log", lambda: worker.write_connection_log(app, self._stop_recording)
        )
        worker.start_thread("db-probe", lambda: worker.probe_database(app, stop, self.set_serving))
        if purge:
            worker.start_thread("purge", lambda: worker.purge_periodically(app, stop))
        if app.settings.metrics_listen:
            worker.start_thread("metrics-refresh", lambda: worker.refresh_metrics(app, stop))
        if app.settings.dispatch_in_serve:
            self._dispatcher = worker.start_thread(
                "dispatch", lambda: worker.dispatch_until(app, stop)
            )

    def _join_dispatcher(self, timeout: float | None = None) -> None:
        # Told to stop when the drain began, it finishes at most its current delivery.
        if self._dispatcher is not None:
            limit = self.app.sink.max_delivery_seconds if timeout is None else timeout
            self._dispatcher.join(max(limit, 0.1))

    @property
    def health_port(self) -> int | None:
        """The health-only listener's port (None without IDSERVICE_HEALTH_LISTEN)."""
        return self.health_listener.port if self.health_listener is not None else None

    def _stop_health_listener(self, grace: float) -> None:
        if self.health_listener is not None:
            self.health_listener.stop(grace)

    def _stop_recorder(self, timeout: float) -> None:
        # Its last round writes what the calls left in the buffer (app.close() would too).
        self._stop_recording.set()
        if self._recorder is not None:
            self._recorder.join(max(timeout, 0.1))

    def halt(self) -> None:
        """Stop at once without closing the app (the owner closes it)."""
        self._stop_background.set()
        self.server.stop(0).wait()
        self._stop_health_listener(0)
        self._join_dispatcher()
        self._stop_recorder(HANDLER_SETTLE_SECONDS)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.gate.close()

    def stop(self, grace: float) -> None:
        """Drain: mark NOT_SERVING, refuse new calls, let in-flight calls finish, then close.

        New calls get SERVER_BUSY with RetryInfo while the calls already received finish (at
        most `grace` seconds in all); only then does the transport stop. Calls still running
        when the grace period ends are cancelled, and the app closes once their threads are
        done.
        """
        deadline = time.monotonic() + grace
        self._draining = True
        self.gate.draining = True
        self.set_serving(False)
        self._stop_background.set()
        self.executor.wait_idle(deadline - time.monotonic())
        # A moment past the deadline still, for answers already on their way out. The health
        # listener answers NOT_SERVING until then, and stops with the API's transport.
        self.server.stop(max(deadline - time.monotonic(), FINAL_ANSWER_SECONDS)).wait()
        self._stop_health_listener(FINAL_ANSWER_SECONDS)
        settled_by = time.monotonic() + HANDLER_SETTLE_SECONDS
        if not self.executor.wait_idle(HANDLER_SETTLE_SECONDS):
            log.warning("closing with request handlers still running")
        self._join_dispatcher(settled_by - time.monotonic())
        self._stop_recorder(settled_by - time.monotonic())
        self.executor.shutdown(wait=False)
        self.gate.close()
        self.app.close()


def cannot_listen(target: str) -> str:
    """gRPC says no more than that a port could not be bound: the likely causes, for the user."""
    return f"cannot listen on {target} (is the port in use, or the host not this machine's?)"


def _interceptors(
    tracing: tuple[grpc.ServerInterceptor[Any, Any], ...], gate: ApiGate
) -> list[grpc.ServerInterceptor[Any, Any]]:
    """The gate goes last; the tracing interceptors (if any) before it wrap its handlers, and
    `ThreadPlacement` first keeps each call on the pool the gate chose."""
    if not tracing:
        return [gate]
    return [ThreadPlacement(gate), *tracing, gate]


def _certificate_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.private_key, material.certificate_chain)], root_certificates=material.client_ca
    )


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS (mutual with a client CA) whose files are read again when they change (tls.py)."""
    if not settings.tls_cert_file or not settings.tls_key_file:
        return None
    # The files' stamp first, then their content: a rotation in between is loaded again.
    reloader = CertificateReloader(settings, _certificate_configuration)
    material = load_tls(settings)
    assert material is not None
    return grpc.dynamic_ssl_server_credentials(
        _certificate_configuration(material),
        # Returns None for "no change", as grpc's docstring says (its stubs omit the None).
        reloader,  # type: ignore[arg-type]
        require_client_authentication=material.client_ca is not None,
    )


@dataclass(frozen=True)
class HealthListener:
    """The plaintext listener of IDSERVICE_HEALTH_LISTEN: its server, port and threads."""

    server: grpc.Server
    port: int
    executor: futures.ThreadPoolExecutor

    def stop(self, grace: float | None) -> None:
        self.server.stop(grace).wait()
        self.executor.shutdown(wait=False)


def _health_listener(
    servicer: health.HealthServicer, address: str, *, reuse_port: bool
) -> HealthListener:
    """A plaintext server with `servicer` alone: no API, no reflection (not started yet)."""
    executor = futures.ThreadPoolExecutor(max_workers=HEALTH_WORKERS, thread_name_prefix="health")
    server = grpc.server(
        executor,
        maximum_concurrent_rpcs=HEALTH_MAX_CONCURRENT_RPCS,
        options=[("grpc.so_reuseport", 1 if reuse_port else 0)],
    )
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        executor.shutdown(wait=False)
        raise ConfigError("IDSERVICE_HEALTH_LISTEN", cannot_listen(address))
    return HealthListener(server, port, executor)


def create_server(
    app: App,
    address: str | None = None,
    *,
    reuse_port: bool = False,
    health_address: str | None = None,
    purge: bool = True,
    max_connection_age: float = MAX_CONNECTION_AGE_SECONDS,
) -> RunningServer:
    """Build and start the server on `address` (port 0 picks a free one); returns the port.

    With `reuse_port` the port is shared (`SO_REUSEPORT`) with the other server processes of
    one supervisor, and the kernel spreads new connections over them. `health_address` (default
    IDSERVICE_HEALTH_LISTEN) adds the plaintext health-only listener, on the same terms. With
    `purge` False the retention jobs are left to another server process. Connections end after
    about `max_connection_age` seconds (clients reconnect on their own).
    """
    settings = app.settings
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)  # the process serves: see above
    main = TrackedExecutor(max_workers=settings.max_workers, thread_name_prefix="rpc")
    quick = TrackedExecutor(
        max_workers=quick_threads(settings), thread_name_prefix="rpc-quick", overflow=main
    )
    executor = HandlerPools(main=main, quick=quick)
    prefixes = tuple(f"/{name}/" for name in SERVICE_NAMES)
    gate = ApiGate(
        prefixes,
        limit=settings.max_concurrent_rpcs,
        outstanding=executor.outstanding,
        quick=(QUICK_METHODS, executor.quick),
    )
    server = grpc.server(
        executor.main,
        # No `maximum_concurrent_rpcs`: grpc's own limit answers a bare RESOURCE_EXHAUSTED
        # without ErrorInfo (contract §3), and the gate's SERVER_BUSY answers, each in flight
        # for a moment, counted towards it: a burst got mostly bare answers. The gate bounds
        # the API's work; health runs non-blocking on its own threads, reflection on the side
        # threads. (An HTTP/2 `max_concurrent_streams` is no substitute: a new connection's
        # streams beyond it are refused before the client learns the limit, as UNAVAILABLE.)
        # Traces (only when OTEL_* ask for them) span the gate's answers too.
        interceptors=_interceptors(telemetry.server_interceptors(prefixes), gate),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(MAX_CONNECTION_AGE_GRACE_SECONDS * 1000)),
        ],
    )
    register(app, server)
    metrics.count_refusals_from_zero(METHOD_NAMES)
    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=2),
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    target = address or settings.listen
    credentials = _credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(target)
        else:
            port = server.add_secure_port(target, credentials)
    except RuntimeError:
        raise ConfigError("IDSERVICE_LISTEN", cannot_listen(target)) from None
    if port == 0:
        raise ConfigError("IDSERVICE_LISTEN", cannot_listen(target))
    health_target = health_address or settings.health_listen
    health_listener = None
    if health_target:
        try:
            health_listener = _health_listener(
                health_servicer, health_target, reuse_port=reuse_port
            )
        except BaseException:
            server.stop(None)
            raise
    running = RunningServer(
        server=server,
        port=port,
        health=health_servicer,
        app=app,
        executor=executor,
        gate=gate,
        health_listener=health_listener,
    )
    running.set_serving(app.database_reachable())
    server.start()
    if health_listener is not None:
        health_listener.server.start()
    running.start_background_work(purge=purge)
    return running
