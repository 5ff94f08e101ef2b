"""Connections end now and then (GOAWAY after `max_connection_age`), so new instances behind an
L4 balancer get their share; clients reconnect on their own and no call fails."""

from __future__ import annotations

import threading
import time

import grpc

from idservice.bootstrap import App
from idservice.entrypoints.grpc.server import MAX_CONNECTION_AGE_SECONDS, create_server
from idservice.v1 import auth_pb2, auth_pb2_grpc


def test_the_default_age_lets_connections_live_minutes() -> None:
    assert 60 <= MAX_CONNECTION_AGE_SECONDS <= 3600


def test_an_old_connection_is_replaced_and_no_call_fails(app: App) -> None:
    running = create_server(app, "127.0.0.1:0", max_connection_age=0.5)
    states: list[grpc.ChannelConnectivity] = []
    seen = threading.Lock()

    def record(state: grpc.ChannelConnectivity) -> None:
        with seen:
            states.append(state)

    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            channel.subscribe(record, try_to_connect=True)
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            until = time.monotonic() + 3.0
            calls = 0
            while time.monotonic() < until:
                assert stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10).jwks_json
                calls += 1
                time.sleep(0.05)
            channel.unsubscribe(record)
    finally:
        running.halt()
    with seen:
        ready = states.count(grpc.ChannelConnectivity.READY)
    assert calls > 10
    assert ready >= 2, states  # connected again after the server ended the first connection
