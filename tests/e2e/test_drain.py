"""Draining on shutdown: calls already received finish; calls arriving meanwhile get SERVER_BUSY.

The process-level test (test_process.py) shows SIGTERM drains and exits 0; these hold a SignUp
in the middle of its work to show what every other caller sees meanwhile, and that the app
closes only after the handlers are done even when the grace period runs out.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import func, select

from idservice.adapters.db.tables import accounts
from idservice.bootstrap import App, build_app
from idservice.entrypoints.grpc.server import RunningServer, create_server
from idservice.v1 import auth_pb2, common_pb2
from tests.conftest import make_settings
from tests.support.client import Client, RpcFailure, failure_of, new_person
from tests.support.pausing import PausingHasher

WAIT_SECONDS = 30.0


@pytest.fixture
def hasher() -> PausingHasher:
    return PausingHasher()


@pytest.fixture
def draining_app(tmp_path: Path, hasher: PausingHasher) -> Iterator[App]:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'idservice.db'}")
    app = build_app(settings, hasher=hasher)
    try:
        yield app
    finally:
        app.close()  # idempotent: stop() already closed it


@pytest.fixture
def running(draining_app: App) -> Iterator[RunningServer]:
    server = create_server(draining_app, "127.0.0.1:0")
    try:
        yield server
    finally:
        server.halt()


def assert_server_busy(failure: RpcFailure) -> None:
    """The contract's overload answer: RESOURCE_EXHAUSTED SERVER_BUSY with a retry delay."""
    assert (failure.code, failure.reason, failure.domain) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SERVER_BUSY",
        "idservice.v1",
    )
    assert failure.retry_seconds is not None and failure.retry_seconds > 0


def account_count(app: App) -> int:
    with app.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(accounts)).scalar_one())


def test_calls_during_the_drain_are_busy_while_the_call_in_flight_finishes(
    running: RunningServer, draining_app: App, hasher: PausingHasher
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        client = Client(channel, terms_version=draining_app.settings.terms_version)
        request = client.signup_request(new_person())
        hasher.arm()
        signup = client.accounts.SignUp.future(request, timeout=WAIT_SECONDS)
        assert hasher.reached.wait(WAIT_SECONDS)  # the SignUp is in flight, mid-hash

        stopper = threading.Thread(target=running.stop, args=(WAIT_SECONDS,))
        stopper.start()
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=WAIT_SECONDS)
        try:
            for update in watch:
                if update.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
        finally:
            watch.cancel()

        # A call arriving now is refused with the contract's retryable answer, not cut off.
        busy = failure_of(
            lambda: client.auth.IntrospectToken(
                auth_pb2.IntrospectTokenRequest(access_token="x"), timeout=WAIT_SECONDS
            )
        )
        assert_server_busy(busy)
        assert stopper.is_alive()  # still waiting for the SignUp

        hasher.release()
        response = signup.result(timeout=WAIT_SECONDS)
        assert response.account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
        stopper.join(WAIT_SECONDS)
        assert not stopper.is_alive()
    assert account_count(draining_app) == 1


def test_app_closes_after_handlers_even_when_the_grace_period_runs_out(
    running: RunningServer,
    draining_app: App,
    hasher: PausingHasher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        client = Client(channel, terms_version=draining_app.settings.terms_version)
        hasher.arm()
        signup = client.accounts.SignUp.future(
            client.signup_request(new_person()), timeout=WAIT_SECONDS
        )
        assert hasher.reached.wait(WAIT_SECONDS)
        # The grace period ends while the SignUp is held: grpc cancels the call, but its handler
        # still runs; the database and hasher must stay open until it is done.
        released = threading.Timer(1.0, hasher.release)
        released.start()
        running.stop(0.2)
        released.join()
        with pytest.raises(grpc.RpcError):
            signup.result(timeout=WAIT_SECONDS)
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert problems == []
    # The handler finished its transaction: the account exists (a retry with the same
    # idempotency key would be answered with it).
    assert account_count(draining_app) == 1


def test_calls_beyond_the_concurrency_limit_get_server_busy_with_error_info(
    tmp_path: Path, hasher: PausingHasher
) -> None:
    # One worker thread, busy with the held SignUp: the refusal must not queue behind it.
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'idservice.db'}", max_concurrent_rpcs=1, max_workers=1
    )
    app = build_app(settings, hasher=hasher)
    running = create_server(app, "127.0.0.1:0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            client = Client(channel, terms_version=settings.terms_version)
            request = client.signup_request(new_person())
            hasher.arm()
            signup = client.accounts.SignUp.future(request, timeout=WAIT_SECONDS)
            assert hasher.reached.wait(WAIT_SECONDS)  # the one place is taken
            busy = failure_of(
                lambda: client.auth.IntrospectToken(
                    auth_pb2.IntrospectTokenRequest(access_token="x"), timeout=WAIT_SECONDS
                )
            )
            assert_server_busy(busy)
            hasher.release()
            assert signup.result(timeout=WAIT_SECONDS).account.id
            # The place is free again once the SignUp's handler has returned (the answer can
            # reach the client a moment before).
            assert running.executor.wait_idle(WAIT_SECONDS)
            answer = client.auth.IntrospectToken(
                auth_pb2.IntrospectTokenRequest(access_token="x"), timeout=WAIT_SECONDS
            )
            assert not answer.active
    finally:
        running.halt()
        app.close()


def test_a_burst_far_beyond_the_limit_gets_server_busy_with_error_info_every_time(
    tmp_path: Path, hasher: PausingHasher
) -> None:
    """Contract §3: every error carries ErrorInfo, however many calls arrive at once. (grpc's
    own concurrency limit, at twice the gate's, answered most of such a burst bare.)"""
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'idservice.db'}", max_concurrent_rpcs=1, max_workers=1
    )
    app = build_app(settings, hasher=hasher)
    running = create_server(app, "127.0.0.1:0")
    try:
        channels = [grpc.insecure_channel(f"127.0.0.1:{running.port}") for _ in range(4)]
        clients = [Client(channel, terms_version=settings.terms_version) for channel in channels]
        hasher.arm()
        signup = clients[0].accounts.SignUp.future(
            clients[0].signup_request(new_person()), timeout=WAIT_SECONDS
        )
        assert hasher.reached.wait(WAIT_SECONDS)  # the one place is taken
        burst = [
            client.auth.IntrospectToken.future(
                auth_pb2.IntrospectTokenRequest(access_token="x"), timeout=WAIT_SECONDS
            )
            for client in clients
            for _ in range(40)
        ]
        for call in burst:
            assert_server_busy(failure_of(call.result))
        hasher.release()
        assert signup.result(timeout=WAIT_SECONDS).account.id
        for channel in channels:
            channel.close()
    finally:
        running.halt()
        app.close()


def test_an_open_reflection_stream_is_not_work_the_drain_waits_for(
    running: RunningServer,
) -> None:
    requests: queue.Queue[reflection_pb2.ServerReflectionRequest | None] = queue.Queue()

    def outgoing() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        while (request := requests.get()) is not None:
            yield request

    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            outgoing(), timeout=WAIT_SECONDS
        )
        requests.put(reflection_pb2.ServerReflectionRequest(list_services=""))
        listed = next(stream)
        assert "idservice.v1.AccountService" in {
            s.name for s in listed.list_services_response.service
        }
        # The stream stays open, yet no API work is outstanding: a drain would not wait for it.
        assert running.executor.outstanding() == 0
        requests.put(None)


def test_refusals_do_not_wait_for_clients_that_send_no_message(running: RunningServer) -> None:
    running.gate.draining = True  # as during stop(): every API call is refused
    hold = threading.Event()

    def nothing() -> Iterator[bytes]:
        hold.wait(WAIT_SECONDS)
        yield from ()

    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        raw = channel.stream_unary(
            "/idservice.v1.AuthService/GetJwks",
            request_serializer=None,
            response_deserializer=None,
        )
        # More stalled callers (headers sent, no message) than there are refusal threads.
        stalled = [raw.future(nothing(), timeout=WAIT_SECONDS) for _ in range(8)]
        try:
            busy = failure_of(
                lambda: Client(channel).auth.IntrospectToken(
                    auth_pb2.IntrospectTokenRequest(access_token="x"), timeout=WAIT_SECONDS
                )
            )
            assert_server_busy(busy)
        finally:
            hold.set()
        for call in stalled:
            with pytest.raises(grpc.RpcError):
                call.result()
