"""The connection log and the request id over gRPC: every call recorded (method, time, account
once known, client address, code and reason) without a database write while it runs, written
by the background thread within about a second and on shutdown; `x-request-id` echoed."""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from idservice.adapters.db import tables as t
from idservice.bootstrap import App, build_app
from idservice.config import Settings
from idservice.entrypoints.grpc.server import create_server
from idservice.service_layer.ports import ConnectionEntry
from idservice.v1 import account_pb2, auth_pb2
from tests.conftest import make_settings
from tests.support.client import Client, decode, failure_of, new_person
from tests.support.serving import serving

ACCOUNTS = "/idservice.v1.AccountService"
AUTH = "/idservice.v1.AuthService"
WRITE_WAIT_SECONDS = 10.0


def entries_of(app: App, account_id: str) -> list[ConnectionEntry]:
    with app.deps.uow(readonly=True) as tx:
        return tx.connection_log.of_account(account_id, since=datetime(2000, 1, 1, tzinfo=UTC))


def anonymous_rows(app: App) -> list[Any]:
    c = t.connection_log.c
    with app.engine.connect() as connection:
        return list(
            connection.execute(
                select(c.method, c.code, c.reason).where(c.account_id.is_(None))
            ).all()
        )


def trailing(call: grpc.Call) -> dict[str, str]:
    return {key: str(value) for key, value in call.trailing_metadata() or ()}


def test_every_call_is_recorded_with_its_account_address_code_and_reason(
    app: App, client: Client
) -> None:
    signed_up = client.sign_up()
    account_id, session = signed_up.account.id, signed_up.session
    client.accounts.GetAccount(
        account_pb2.GetAccountRequest(), metadata=client.bearer(session.access_token)
    )
    failure_of(lambda: client.login(signed_up.account.email, "not the password at all"))
    failure_of(
        lambda: client.accounts.GetAccount(
            account_pb2.GetAccountRequest(), metadata=client.bearer("nonsense")
        )
    )
    app.connections.flush()

    mine = entries_of(app, account_id)
    assert [(e.method, e.code, e.reason) for e in mine] == [
        (f"{ACCOUNTS}/SignUp", "OK", None),
        (f"{ACCOUNTS}/GetAccount", "OK", None),
    ]
    assert all(e.client_ip == "127.0.0.1" for e in mine)
    assert mine[0].occurred_at <= mine[1].occurred_at
    anonymous = {(row.method, row.code, row.reason) for row in anonymous_rows(app)}
    assert (f"{AUTH}/PasswordLogin", "UNAUTHENTICATED", "INVALID_CREDENTIALS") in anonymous
    assert (f"{ACCOUNTS}/GetAccount", "UNAUTHENTICATED", "TOKEN_INVALID") in anonymous
    assert ("/idservice.v1.IdentityService/CompleteVerification", "OK", None) in anonymous


def test_a_login_and_a_refresh_are_the_account_s(app: App, client: Client) -> None:
    signed_up = client.sign_up()
    login = client.login(signed_up.account.email)
    client.auth.RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=login.session.refresh_token)
    )
    app.connections.flush()
    assert [e.method for e in entries_of(app, signed_up.account.id)] == [
        f"{ACCOUNTS}/SignUp",
        f"{AUTH}/PasswordLogin",
        f"{AUTH}/RefreshSession",
    ]


def test_the_background_thread_writes_within_about_a_second(app: App, client: Client) -> None:
    account_id = client.sign_up().account.id
    deadline = time.monotonic() + WRITE_WAIT_SECONDS
    while not entries_of(app, account_id):
        assert time.monotonic() < deadline, "the connection log was not written"
        time.sleep(0.1)


def test_the_request_id_is_echoed_or_made(client: Client) -> None:
    _, call = client.auth.GetJwks.with_call(
        auth_pb2.GetJwksRequest(), metadata=(("x-request-id", "req-0001.abc:XYZ"),)
    )
    assert trailing(call)["x-request-id"] == "req-0001.abc:XYZ"
    kept_ids = (
        "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        "f47ac10b-a017-4123-8456-0e02b2c3d479",  # a UUID with mobile-like digits: random
        "order-20261204-000123",
        "job:01012",
        "req-1733356800",  # a Unix time, not a 017 number
        "batch_2026_12_05_7",
        "order-20261204-000123-0001",
        # Times and counters whose digits a run of groups could read as a mobile number.
        "job_20261205_010203_0001",
        "batch-20261205-011234-5678",
        "req-2026-12-05T01:02:03.4567Z",
        "seq_0234567890",
        "req-2026-12-05T02:13:00.123Z",
    )
    for kept in kept_ids:
        _, call = client.auth.GetJwks.with_call(
            auth_pb2.GetJwksRequest(), metadata=(("x-request-id", kept),)
        )
        assert trailing(call)["x-request-id"] == kept
    insane_ids = (
        "short",
        "has space in it",
        "a" * 200,
        "hong@example.com",
        "010-1234-5678",
        "900101-1234567",
        "x900101-1234567",
        "hong.gildong.01012345678",  # a mobile number inside
        "req-010.9876.5432-x",
        "call:0161234567:abc",
        # International forms, without the national 0, and inside a longer number.
        "call:82-10-1234-5678",
        "call.821012345678",
        "tel:0082-10-1234-5678",
        "tel:008201012345678",  # the longest form: 0082, the national 0, 010, eight digits
        "x:82:10:1234:5678",
        "ab1012345678",
        "kim-10-1234-5678",
        "trace-20261204-01012345678",
        # Underscores join groups too; a long last group is still a written number.
        "req_010_1234_5678",
        "kim_82_10_1234_5678",
        "req-010-12345678",
    )
    for insane in insane_ids:
        _, call = client.auth.GetJwks.with_call(
            auth_pb2.GetJwksRequest(), metadata=(("x-request-id", insane),)
        )
        made = trailing(call)["x-request-id"]
        assert made != insane and uuid.UUID(made)
    # Errors carry it too, beside the rich status.
    with pytest.raises(grpc.RpcError) as info:
        client.accounts.GetAccount(
            account_pb2.GetAccountRequest(),
            metadata=(*client.bearer("nonsense"), ("x-request-id", "req-for-an-error")),
        )
    assert isinstance(info.value, grpc.Call)
    assert trailing(info.value)["x-request-id"] == "req-for-an-error"
    assert decode(info.value).reason == "TOKEN_INVALID"


def test_one_access_line_per_call_without_tokens(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="idservice.access")
    signed_up = client.sign_up()
    token = signed_up.session.access_token
    client.accounts.GetAccount(account_pb2.GetAccountRequest(), metadata=client.bearer(token))
    lines = [r for r in caplog.records if r.name == "idservice.access"]
    assert [getattr(r, "method", "") for r in lines][-2:] == [
        f"{ACCOUNTS}/SignUp",
        f"{ACCOUNTS}/GetAccount",
    ]
    last = lines[-1]
    assert (last.code, last.account_id, last.reason) == ("OK", signed_up.account.id, None)  # type: ignore[attr-defined]
    assert uuid.UUID(last.request_id) and last.duration_ms >= 0  # type: ignore[attr-defined]
    everything = " ".join(str(vars(r)) for r in caplog.records)
    for secret in (token, signed_up.session.refresh_token, signed_up.account.email):
        assert secret not in everything


def _proxied_settings(tmp_path: Path, database_url: str, trusted: str) -> Settings:
    networks = (ipaddress.ip_network(trusted),) if trusted else ()
    return make_settings(tmp_path, database_url, trusted_proxies=networks)


@pytest.mark.parametrize(
    ("trusted", "recorded"), [("127.0.0.0/8", "198.51.100.7"), ("", "127.0.0.1")]
)
def test_the_end_user_address_is_believed_only_from_a_trusted_proxy(
    tmp_path: Path, database_url: str, trusted: str, recorded: str
) -> None:
    with serving(_proxied_settings(tmp_path, database_url, trusted)) as (app, client):
        signed_up = client.accounts.SignUp(
            client.signup_request(new_person()),
            metadata=(("x-forwarded-for", "198.51.100.7"),),
        )
        app.connections.flush()
        (entry,) = entries_of(app, signed_up.account.id)
    assert entry.client_ip == recorded


def test_a_drain_writes_what_is_buffered(settings: Settings) -> None:
    app = build_app(settings)
    running = create_server(app, "127.0.0.1:0")
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        account_id = Client(channel).sign_up().account.id
    running.stop(grace=1.0)  # closes the app: nothing may be left in memory
    assert app.connections.pending() == 0
    reopened = build_app(settings)
    try:
        assert [e.method for e in entries_of(reopened, account_id)] == [f"{ACCOUNTS}/SignUp"]
    finally:
        reopened.close()
