"""Retention and expiry: purge destroys what has expired; expired refresh tokens say so."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import grpc
from sqlalchemy import column, func, select, table

from idservice.adapters.db import tables
from idservice.service_layer.retention import Purge
from idservice.v1 import auth_pb2, common_pb2
from tests.conftest import make_settings
from tests.support.client import decode, failure_of, new_person
from tests.support.serving import FakeClock, serving

verifications = table("verifications", column("person_ct"))
idempotency_keys = table("idempotency_keys", column("key_hash"))
sessions = table("sessions", column("id"))


def test_purge_destroys_what_has_expired(tmp_path: Path, database_url: str) -> None:
    clock = FakeClock()
    with serving(make_settings(tmp_path, database_url), clock=clock) as (app, client):
        client.verify(new_person())  # never used
        signed = client.sign_up(idempotency_key="purge-me")
        client.auth.Logout(auth_pb2.LogoutRequest(refresh_token=signed.session.refresh_token))
        assert app.handle(Purge()) == {
            "expired verifications destroyed": 0,
            "expired idempotent responses deleted": 0,
            "ended sessions deleted": 0,
            "re-join holds released": 0,
            "unconfirmed child accounts destroyed": 0,
            "expired SNS signup tickets deleted": 0,
            "consent outcomes deleted": 0,
            "consent records deleted": 0,
            "marketing reconfirmations due": 0,
            "connection log entries deleted": 0,
            "attempt counters deleted": 0,
            "delivered events deleted": 0,
            "access audit records deleted": 0,
        }
        clock.advance(timedelta(days=2))
        counts = app.handle(Purge())
        assert counts["expired verifications destroyed"] == 1
        assert counts["expired idempotent responses deleted"] == 1
        assert counts["ended sessions deleted"] == 1
        with app.engine.connect() as connection:
            assert (
                connection.execute(
                    select(func.count())
                    .select_from(verifications)
                    .where(verifications.c.person_ct.is_not(None))
                ).scalar_one()
                == 0
            )
            assert (
                connection.execute(select(func.count()).select_from(idempotency_keys)).scalar_one()
                == 0
            )
            assert connection.execute(select(func.count()).select_from(sessions)).scalar_one() == 0


def test_an_expired_refresh_token_is_token_expired(tmp_path: Path, database_url: str) -> None:
    clock = FakeClock()
    with serving(make_settings(tmp_path, database_url), clock=clock) as (_, client):
        signed = client.sign_up()
        clock.advance(timedelta(days=31))
        try:
            client.auth.RefreshSession(
                auth_pb2.RefreshSessionRequest(refresh_token=signed.session.refresh_token)
            )
        except grpc.RpcError as error:
            assert decode(error).reason == "TOKEN_EXPIRED"
        else:
            raise AssertionError("an expired refresh token was accepted")


def outbox_types(app: object) -> list[str]:
    with app.engine.connect() as connection:  # type: ignore[attr-defined]
        return sorted(connection.execute(select(tables.outbox.c.type)).scalars())


def test_unconfirmed_child_signup_is_destroyed_when_the_window_ends(
    tmp_path: Path, database_url: str
) -> None:
    clock = FakeClock()
    settings = make_settings(tmp_path, database_url)
    guardian = common_pb2.Guardian(name="정보호", phone_number="010-2468-1357")
    with serving(settings, clock=clock) as (app, client):
        child = new_person(birth_date="2016-05-05")
        waiting = client.sign_up(child, email="child-expires@example.com", guardian=guardian)
        assert waiting.account.status == common_pb2.ACCOUNT_STATUS_PENDING_GUARDIAN_CONSENT
        clock.advance(settings.guardian_consent_window - timedelta(minutes=1))
        other = client.sign_up(new_person(birth_date="2016-06-06"), guardian=guardian)
        assert app.handle(Purge())["unconfirmed child accounts destroyed"] == 0

        clock.advance(timedelta(minutes=2))  # the first child's window has ended
        assert app.handle(Purge())["unconfirmed child accounts destroyed"] == 1
        with app.engine.connect() as connection:
            ids = set(connection.execute(select(tables.accounts.c.id)).scalars())
            requests = set(
                connection.execute(select(tables.guardian_consent_requests.c.account_id)).scalars()
            )
            expired = connection.execute(
                select(tables.outbox.c.id, tables.outbox.c.payload_ct).where(
                    tables.outbox.c.type == "guardian_consent.expired"
                )
            ).one()
        assert ids == requests == {other.account.id}
        # The guardian's name, phone and code went with the request event; one is left (the
        # other child's), and the expiry is recorded with ids only.
        assert outbox_types(app).count("guardian_consent.requested") == 1
        body = json.loads(app.cipher.decrypt(expired.payload_ct, context=f"outbox:{expired.id}"))
        assert set(body["data"]) == {"consent_request_id", "account_id", "expired_at"}
        assert body["data"]["account_id"] == waiting.account.id
        assert body["data"]["consent_request_id"] == waiting.guardian_consent_request.id

        # Nothing is left of the child: the same person is no duplicate and may sign up again,
        # and the old email is free.
        again = client.verify(child)
        assert not again.duplicate.exists
        login = failure_of(lambda: client.login("child-expires@example.com"))
        assert login.reason == "INVALID_CREDENTIALS"
        renewed = client.sign_up(child, email="child-expires@example.com", guardian=guardian)
        assert renewed.account.status == common_pb2.ACCOUNT_STATUS_PENDING_GUARDIAN_CONSENT
        assert app.handle(Purge())["unconfirmed child accounts destroyed"] == 0
