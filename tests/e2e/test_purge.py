"""Retention and expiry: purge destroys what has expired; expired refresh tokens say so."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
from sqlalchemy import column, func, select, table

from idservice.service_layer import retention
from idservice.v1 import auth_pb2
from tests.conftest import make_settings
from tests.support.client import decode, new_person
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
        assert retention.purge(app.services) == {
            "expired verifications destroyed": 0,
            "expired idempotent responses deleted": 0,
            "ended sessions deleted": 0,
            "re-join holds released": 0,
        }
        clock.advance(timedelta(days=2))
        counts = retention.purge(app.services)
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
