"""The quick calls (token checks, reads, refreshes) run on a pool of their own; the calls that
hash a password or wait on a provider run on the server's (`HandlerPools`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from idservice.bootstrap import build_app
from idservice.entrypoints.grpc.pools import (
    OVERFLOW_AFTER_SECONDS,
    QUICK_THREADS_POSTGRES,
    QUICK_THREADS_SQLITE,
    quick_threads,
)
from idservice.entrypoints.grpc.server import RunningServer, create_server
from idservice.v1 import auth_pb2
from tests.conftest import make_settings
from tests.support.client import Client


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[RunningServer, Client]]:
    app = build_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'idservice.db'}"))
    try:
        server = create_server(app, "127.0.0.1:0")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                yield server, Client(channel)
        finally:
            server.halt()
    finally:
        app.close()


def test_quick_calls_run_on_their_pool_and_password_calls_on_the_servers(
    running: tuple[RunningServer, Client],
) -> None:
    server, client = running
    pools = server.executor
    client.auth.GetJwks(auth_pb2.GetJwksRequest())
    # A task ends a moment after its answer went out.
    assert pools.wait_idle(5)
    assert (pools.quick.finished, pools.main.finished) == (1, 0)

    signed_up = client.sign_up()  # CompleteVerification, then SignUp (a hash)
    assert pools.wait_idle(5)
    assert pools.main.finished == 2
    client.auth.IntrospectToken(
        auth_pb2.IntrospectTokenRequest(), metadata=client.bearer(signed_up.session.access_token)
    )
    client.auth.RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=signed_up.session.refresh_token)
    )
    assert pools.wait_idle(5)
    assert (pools.quick.finished, pools.main.finished) == (3, 2)


def test_the_quick_pool_is_small_on_sqlite_and_larger_on_postgres(tmp_path: Path) -> None:
    sqlite = make_settings(tmp_path, "sqlite:///x.db")
    postgres = make_settings(tmp_path, "postgresql+psycopg://u@127.0.0.1/db")
    assert quick_threads(sqlite) == QUICK_THREADS_SQLITE < QUICK_THREADS_POSTGRES
    assert quick_threads(postgres) == QUICK_THREADS_POSTGRES
    # Never more quick threads than IDSERVICE_MAX_WORKERS (the server's own pool).
    assert quick_threads(make_settings(tmp_path, "sqlite:///x.db", max_workers=2)) == 2


def test_clients_that_send_no_message_cannot_hold_up_the_quick_calls(
    running: tuple[RunningServer, Client],
) -> None:
    """grpc waits for a unary call's message on the call's pool thread: streams that send
    headers and nothing else hold every quick thread, and the next quick calls go to the main
    pool instead of waiting behind them."""
    server, client = running
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    silent = channel.stream_unary(
        "/idservice.v1.AuthService/IntrospectToken",
        request_serializer=auth_pb2.IntrospectTokenRequest.SerializeToString,
        response_deserializer=auth_pb2.IntrospectTokenResponse.FromString,
    )
    hold = threading.Event()

    def nothing() -> Iterator[auth_pb2.IntrospectTokenRequest]:
        hold.wait(60)
        return
        yield  # a generator that sends no message while held

    held = [silent.future(nothing()) for _ in range(QUICK_THREADS_SQLITE + 2)]
    try:
        deadline = time.monotonic() + 10
        while server.executor.quick.outstanding() < QUICK_THREADS_SQLITE + 2:
            assert time.monotonic() < deadline, "the silent calls never reached the quick pool"
            time.sleep(0.01)
        # Held from now on: no quick call finishes. (Calls that came in the moment before the
        # pool counted as held wait behind it, as the two silent ones beyond its threads do.)
        time.sleep(2 * OVERFLOW_AFTER_SECONDS)
        for _ in range(3):
            client.auth.GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
        # They ran on the main pool (a task ends a moment after its answer went out).
        deadline = time.monotonic() + 5
        while server.executor.main.finished < 3:
            assert time.monotonic() < deadline, "the quick calls did not run on the main pool"
            time.sleep(0.01)
    finally:
        hold.set()
        for call in held:
            call.cancel()
        channel.close()
