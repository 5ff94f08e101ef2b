"""IDSERVICE_HEALTH_LISTEN: a plaintext listener with the health service alone, for the kubelet's
gRPC probes while the API port requires (mutual) TLS. It answers from the same HealthServicer as
the API port: NOT_SERVING without the database and while draining; `liveness` ignores the
database but not the drain."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from idservice.bootstrap import App, build_app
from idservice.config import ConfigError
from idservice.entrypoints.grpc.server import LIVENESS, RunningServer, create_server
from idservice.v1 import auth_pb2, auth_pb2_grpc
from tests.conftest import make_settings
from tests.support.client import Client, new_person
from tests.support.pausing import PausingHasher
from tests.support.tls import TestAuthority

WAIT_SECONDS = 30.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def hasher() -> PausingHasher:
    return PausingHasher()


@pytest.fixture
def authority() -> TestAuthority:
    return TestAuthority()


@pytest.fixture
def tls_app(tmp_path: Path, hasher: PausingHasher, authority: TestAuthority) -> Iterator[App]:
    tls = authority.write_server_files(tmp_path)
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'idservice.db'}",
        health_listen="127.0.0.1:0",
        **tls,
    )
    app = build_app(settings, hasher=hasher)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def running(tls_app: App) -> Iterator[RunningServer]:
    server = create_server(tls_app, "127.0.0.1:0")
    try:
        yield server
    finally:
        server.halt()


@pytest.fixture
def probe(running: RunningServer) -> Iterator[health_pb2_grpc.HealthStub]:
    """What the kubelet does: plaintext, no client certificate."""
    assert running.health_port
    with grpc.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
        yield health_pb2_grpc.HealthStub(channel)


def status(stub: health_pb2_grpc.HealthStub, service: str = "") -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return int(stub.Check(request, timeout=WAIT_SECONDS).status)


def test_plaintext_probes_answer_while_the_api_port_requires_tls(
    running: RunningServer, probe: health_pb2_grpc.HealthStub
) -> None:
    assert running.health_port != running.port
    assert status(probe) == SERVING
    assert status(probe, LIVENESS) == SERVING
    assert status(probe, "idservice.v1.AuthService") == SERVING
    # The same probe against the API port fails: it speaks TLS (and wants a client certificate).
    with (
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_health_port_serves_nothing_but_health(running: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
        with pytest.raises(grpc.RpcError) as api:
            auth_pb2_grpc.AuthServiceStub(channel).GetJwks(
                auth_pb2.GetJwksRequest(), timeout=WAIT_SECONDS
            )
        assert api.value.code() == grpc.StatusCode.UNIMPLEMENTED
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=WAIT_SECONDS
        )
        with pytest.raises(grpc.RpcError) as reflection:
            next(stream)
        assert reflection.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_database_outage_makes_it_unready_but_still_alive(
    running: RunningServer, probe: health_pb2_grpc.HealthStub
) -> None:
    # What the database probe reports when a check fails (worker.probe_database).
    running.set_serving(False)
    assert status(probe) == NOT_SERVING
    assert status(probe, "idservice.v1.AccountService") == NOT_SERVING
    assert status(probe, LIVENESS) == SERVING
    running.set_serving(True)
    assert status(probe) == SERVING


def test_the_drain_reports_not_serving_then_the_listener_stops_with_the_server(
    running: RunningServer,
    probe: health_pb2_grpc.HealthStub,
    hasher: PausingHasher,
    authority: TestAuthority,
) -> None:
    caller = authority.issue("app-backend", server=False)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=authority.pem,
        private_key=caller.key,
        certificate_chain=caller.certificate,
    )
    with grpc.secure_channel(f"127.0.0.1:{running.port}", credentials) as channel:
        # A SignUp in flight, mid-hash, keeps the drain going while the probes look.
        client = Client(channel, terms_version=running.app.settings.terms_version)
        request = client.signup_request(new_person())
        hasher.arm()
        signup = client.accounts.SignUp.future(request, timeout=WAIT_SECONDS)
        assert hasher.reached.wait(WAIT_SECONDS)
        watch = probe.Watch(health_pb2.HealthCheckRequest(service=LIVENESS), timeout=WAIT_SECONDS)
        stopper = threading.Thread(target=running.stop, args=(WAIT_SECONDS,))
        try:
            assert next(watch).status == SERVING
            stopper.start()
            assert next(watch).status == NOT_SERVING
            assert status(probe) == NOT_SERVING
            assert stopper.is_alive()  # still draining: the listener still answers
        finally:
            watch.cancel()
            hasher.release()
        assert signup.result(timeout=WAIT_SECONDS).account.id
        stopper.join(WAIT_SECONDS)
    assert not stopper.is_alive()
    with pytest.raises(grpc.RpcError) as info:
        probe.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_busy_health_port_is_a_configuration_error(tls_app: App) -> None:
    first = create_server(tls_app, "127.0.0.1:0")
    try:
        with pytest.raises(ConfigError) as info:
            create_server(tls_app, "127.0.0.1:0", health_address=f"127.0.0.1:{first.health_port}")
        assert info.value.variable == "IDSERVICE_HEALTH_LISTEN"
    finally:
        first.halt()
