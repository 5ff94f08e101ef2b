"""Concurrent SignUps over gRPC on both databases: one email, one account; one key, one result."""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from pathlib import Path

import grpc
from sqlalchemy import column, func, select, table

from idservice.bootstrap import App, build_app
from idservice.entrypoints.grpc.server import create_server
from idservice.v1 import account_pb2
from tests.conftest import make_settings
from tests.support.client import Client, RpcFailure, decode, new_person
from tests.support.locks import at_once

# Generous bounds so a loaded CI machine never hangs the suite; no duration is asserted.
RPC_TIMEOUT = 60.0
ERROR_DOMAIN = "idservice.v1"

accounts = table("accounts", column("id"))
outbox = table("outbox", column("type"))


def account_count(app: App) -> int:
    query = select(func.count()).select_from(accounts)
    with app.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def event_count(app: App, event_type: str) -> int:
    query = select(func.count()).select_from(outbox).where(outbox.c.type == event_type)
    with app.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def race(
    client: Client, requests: list[account_pb2.SignUpRequest]
) -> list[account_pb2.SignUpResponse | RpcFailure]:
    """Send every request at once from its own thread; each answer or decoded error, in order."""

    def call(request: account_pb2.SignUpRequest) -> account_pb2.SignUpResponse | RpcFailure:
        try:
            return client.accounts.SignUp(request, timeout=RPC_TIMEOUT)
        except grpc.RpcError as error:
            return decode(error)

    return at_once(*(functools.partial(call, request) for request in requests))


def describe(failures: list[RpcFailure]) -> Counter[tuple[str, str, str]]:
    return Counter((f.code.name, f.reason, f.domain) for f in failures)


def test_concurrent_signups_with_one_email_create_one_account(client: Client, app: App) -> None:
    email = f"race-{uuid.uuid4().hex[:10]}@example.com"
    # Fifty different people (each verified), all asking for the same email.
    requests = [client.signup_request(new_person(), email=email) for _ in range(50)]
    results = race(client, requests)

    created = [r for r in results if isinstance(r, account_pb2.SignUpResponse)]
    failures = [r for r in results if isinstance(r, RpcFailure)]
    assert len(created) == 1, describe(failures)
    assert describe(failures) == Counter(
        {(grpc.StatusCode.ALREADY_EXISTS.name, "EMAIL_TAKEN", ERROR_DOMAIN): 49}
    )
    assert account_count(app) == 1
    assert event_count(app, "account.created") == 1
    assert client.login(email).session.account_id == created[0].account.id


def test_concurrent_signups_with_one_idempotency_key_return_one_result(
    client: Client, app: App
) -> None:
    request = client.signup_request(new_person(), idempotency_key=f"signup-{uuid.uuid4()}")
    results = race(client, [request] * 20)

    failures = [r for r in results if isinstance(r, RpcFailure)]
    assert not failures, describe(failures)
    answers = [r for r in results if isinstance(r, account_pb2.SignUpResponse)]
    assert len({a.account.id for a in answers}) == 1
    assert len({a.session.refresh_token for a in answers}) == 1
    assert account_count(app) == 1
    assert event_count(app, "account.created") == 1


def test_concurrent_unverified_signups_with_one_idempotency_key_return_one_result(
    tmp_path: Path, database_url: str
) -> None:
    # Without a verification token in the body (verification not required), so the race is
    # decided by the email's unique index alone.
    settings = make_settings(tmp_path, database_url, require_identity_verification=False)
    app = build_app(settings)
    try:
        running = create_server(app, "127.0.0.1:0")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                client = Client(channel, terms_version=settings.terms_version)
                request = client.signup_request(
                    new_person(),
                    verification_token="",
                    idempotency_key=f"signup-{uuid.uuid4()}",
                    name="이영희",
                    phone_number="010-2222-3333",
                    birth_date="1995-05-05",
                )
                results = race(client, [request] * 20)
        finally:
            running.halt()
        failures = [r for r in results if isinstance(r, RpcFailure)]
        assert not failures, describe(failures)
        answers = [r for r in results if isinstance(r, account_pb2.SignUpResponse)]
        assert len({a.account.id for a in answers}) == 1
        assert account_count(app) == 1
    finally:
        app.close()
