"""The person's rights over gRPC: consents, export, withdrawal, and destruction that destroys."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import jsonschema
import pytest
from sqlalchemy import select, text

from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import ENCRYPTED_COLUMNS
from idservice.bootstrap import App
from idservice.service_layer.retention import Purge
from idservice.v1 import account_pb2, auth_pb2
from tests.conftest import make_settings
from tests.e2e.test_privacy_at_rest import all_rows
from tests.support.client import STRONG_PASSWORD, Client, failure_of, new_person, reason_or_ok
from tests.support.locks import account_row_held, queued_behind, row_held
from tests.support.serving import FakeClock, serving


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[tuple[App, Client, FakeClock]]:
    clock = FakeClock()
    with serving(make_settings(tmp_path, database_url), clock=clock) as (app, client):
        yield app, client, clock


def introspect(client: Client, token: str) -> auth_pb2.IntrospectTokenResponse:
    return client.auth.IntrospectToken(auth_pb2.IntrospectTokenRequest(access_token=token))


def test_consents_take_effect_at_once_and_are_recorded(
    served: tuple[App, Client, FakeClock],
) -> None:
    _app, client, _clock = served
    signed = client.sign_up(new_person())
    token = signed.session.access_token
    assert not introspect(client, token).marketing_opt_in
    updated = client.accounts.UpdateConsents(
        account_pb2.UpdateConsentsRequest(marketing_opt_in=True, third_party_provision_opt_in=True),
        metadata=client.bearer(token),
    ).consents
    assert updated.marketing_opt_in and updated.third_party_provision_opt_in
    seen = introspect(client, token)
    assert seen.marketing_opt_in and seen.third_party_provision_opt_in
    client.accounts.UpdateConsents(
        account_pb2.UpdateConsentsRequest(processing_suspended=True), metadata=client.bearer(token)
    )
    assert introspect(client, token).processing_suspended
    document = json.loads(
        client.accounts.ExportPersonalData(
            account_pb2.ExportPersonalDataRequest(), metadata=client.bearer(token)
        ).document_json
    )
    history = [(h["type"], h["granted"], h["channel"]) for h in document["consents"]["history"]]
    assert sorted(history) == sorted(
        [
            ("terms", True, "signup"),
            ("privacy_policy", True, "signup"),
            ("marketing", True, "update_consents"),
            ("third_party_provision", True, "update_consents"),
            ("processing_suspension", True, "update_consents"),
        ]
    )
    assert document["account"]["email"] == signed.account.email
    assert "ci" not in json.dumps(document["identity_verification"]).replace("ci_held", "")


def test_withdraw_needs_reauthentication(served: tuple[App, Client, FakeClock]) -> None:
    _app, client, _clock = served
    signed = client.sign_up(new_person())
    bearer = client.bearer(signed.session.access_token)
    failure = failure_of(
        lambda: client.accounts.Withdraw(account_pb2.WithdrawRequest(), metadata=bearer)
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "REAUTHENTICATION_REQUIRED",
    )
    wrong = account_pb2.WithdrawRequest(password="not the password at all")
    assert failure_of(lambda: client.accounts.Withdraw(wrong, metadata=bearer)).reason == (
        "INVALID_CREDENTIALS"
    )


def test_withdraw_destroys_and_holds_only_the_identity(
    served: tuple[App, Client, FakeClock],
) -> None:
    app, client, clock = served
    person = new_person(name="탈퇴자")
    email = f"leaving-{uuid.uuid4().hex[:8]}@example.com"
    signed = client.sign_up(person, email=email)
    token = signed.session.access_token
    secret_values = _ciphertexts(app)
    client.accounts.Withdraw(
        account_pb2.WithdrawRequest(password=STRONG_PASSWORD), metadata=client.bearer(token)
    )
    # Every session ends at once.
    assert not introspect(client, token).active
    # The email is free again at once; the person is held for the cooldown.
    other = client.sign_up(new_person(), email=email)
    assert other.account.email == email
    held = failure_of(lambda: client.sign_up(person))
    assert held.reason == "IDENTITY_ALREADY_REGISTERED"
    assert held.metadata["rejoin_allowed_after"].endswith("Z")
    # Purge, then nothing of the person is left: no plaintext, no ciphertext, raw or decoded.
    app.handle(Purge())
    rows, _counts = all_rows(app.engine)
    raw = rows
    if app.engine.dialect.name == "sqlite":
        path = Path(str(app.engine.url.database))
        raw += b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))).decode(
            "latin-1"
        )
    for needle in (person.name, person.phone.replace("-", "")[1:], *secret_values):
        assert needle not in raw
    with app.engine.connect() as connection:
        left = connection.execute(
            text("SELECT COUNT(*) FROM accounts WHERE withdrawn_at IS NOT NULL")
        ).scalar_one()
    assert left == 1  # the remains holding the CI/DI indexes, nothing else
    # After the cooldown the person may come back.
    clock.advance(app.settings.rejoin_cooldown)
    app.handle(Purge())
    assert client.sign_up(person).account.status


def _ciphertexts(app: App) -> list[str]:
    found: list[str] = []
    with app.engine.connect() as connection:
        for entry in ENCRYPTED_COLUMNS:
            if entry.table.name != "accounts":
                continue
            column = entry.table.c[entry.column]
            found += connection.execute(select(column).where(column.is_not(None))).scalars()
    return found


def test_the_export_matches_its_documented_schema(
    served: tuple[App, Client, FakeClock],
) -> None:
    app, client, _clock = served
    signed = client.sign_up(new_person())
    client.accounts.GetAccount(
        account_pb2.GetAccountRequest(), metadata=client.bearer(signed.session.access_token)
    )
    app.connections.flush()  # the connection log is written each second; now, for the test
    document = json.loads(
        client.accounts.ExportPersonalData(
            account_pb2.ExportPersonalDataRequest(),
            metadata=client.bearer(signed.session.access_token),
        ).document_json
    )
    schema = json.loads((Path(__file__).parents[2] / "docs" / "export-schema.json").read_text())
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    methods = [entry["method"] for entry in document["connection_log"]]
    assert "/idservice.v1.AccountService/GetAccount" in methods
    # Never the raw CI or DI: only whether they are held.
    assert document["identity_verification"] == {
        "verified": True,
        "ci_held": True,
        "di_held": True,
    }


def test_two_withdrawals_at_once_withdraw_once(served: tuple[App, Client, FakeClock]) -> None:
    """From two sessions of one account (PostgreSQL: both queued on the account's row): the
    second answers TOKEN_INVALID, as a call after the first does, and one account.withdrawn
    event is written."""
    app, client, _clock = served
    email = f"twice-{uuid.uuid4().hex[:8]}@example.com"
    signed = client.sign_up(new_person(), email=email)
    sessions = [signed.session.access_token, client.login(email).session.access_token]
    request = account_pb2.WithdrawRequest(password=STRONG_PASSWORD)

    def withdraw(token: str) -> str:
        return reason_or_ok(
            lambda: client.accounts.Withdraw(request, metadata=client.bearer(token))
        )

    outcomes = queued_behind(
        account_row_held(app, signed.account.id),
        lambda: withdraw(sessions[0]),
        lambda: withdraw(sessions[1]),
    )
    assert sorted(outcomes) == ["OK", "TOKEN_INVALID"]
    with app.engine.connect() as connection:
        events = connection.execute(
            select(t.outbox.c.id).where(
                t.outbox.c.type == "account.withdrawn", t.outbox.c.account_id == signed.account.id
            )
        ).all()
    assert len(events) == 1


def test_a_refresh_and_a_withdrawal_at_once(served: tuple[App, Client, FakeClock]) -> None:
    """The withdrawal first (PostgreSQL: both queued on the session's row, held FOR UPDATE by a
    third transaction). A refresh locks its token and then its session (the successor's
    foreign key); the withdrawal deletes the tokens before the sessions, so the two queue
    instead of deadlocking, and the refresh answers as one after the withdrawal would."""
    app, client, _clock = served
    signed = client.sign_up(new_person())
    with app.engine.connect() as connection:
        session_id = connection.execute(
            select(t.sessions.c.id).where(t.sessions.c.account_id == signed.account.id)
        ).scalar_one()
    withdraw = account_pb2.WithdrawRequest(password=STRONG_PASSWORD)
    refresh = auth_pb2.RefreshSessionRequest(refresh_token=signed.session.refresh_token)
    bearer = client.bearer(signed.session.access_token)
    withdrawing, refreshing = queued_behind(
        row_held(app, t.sessions, session_id, key_share=False),
        lambda: reason_or_ok(lambda: client.accounts.Withdraw(withdraw, metadata=bearer)),
        lambda: reason_or_ok(lambda: client.auth.RefreshSession(refresh)),
    )
    assert withdrawing == "OK"
    assert refreshing in (
        ("TOKEN_INVALID",) if app.engine.dialect.name == "postgresql" else ("TOKEN_INVALID", "OK")
    )
    with app.engine.connect() as connection:
        left = connection.execute(
            select(t.sessions.c.id).where(t.sessions.c.account_id == signed.account.id)
        ).all()
        tokens = connection.execute(select(t.refresh_tokens.c.token_hash)).all()
    assert left == [] and tokens == []
