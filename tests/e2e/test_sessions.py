"""Sessions over gRPC on both databases: token claims, introspection, rotation, lockout, rehash."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
from sqlalchemy import column, func, select, table

from idservice.bootstrap import App
from idservice.config import Settings
from idservice.v1 import account_pb2, auth_pb2, common_pb2
from tests.conftest import make_settings
from tests.support.client import STRONG_PASSWORD, Client, RpcFailure, failure_of, new_person
from tests.support.serving import FakeClock, serving

RPC_TIMEOUT = 30.0
ERROR_DOMAIN = "idservice.v1"
# contract.md §2: access tokens live at most 15 minutes.
MAX_ACCESS_TOKEN_SECONDS = 15 * 60
# The algorithms contract.md §1 allows for the signing key (Ed25519 or P-256).
ACCESS_TOKEN_ALGORITHMS = ["EdDSA", "ES256"]
BIRTH_DATE_CLAIMS = {"birth_date", "birthdate", "birthday", "dob", "date_of_birth"}
WRONG_PASSWORD = "not the right password at all"

C = grpc.StatusCode
outbox = table("outbox", column("type"))
accounts = table("accounts", column("id"), column("password_hash"))


def assert_failure(failure: RpcFailure, code: grpc.StatusCode, reason: str) -> None:
    assert (failure.code, failure.reason, failure.domain) == (code, reason, ERROR_DOMAIN)


def refresh(client: Client, refresh_token: str) -> common_pb2.Session:
    return client.auth.RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=refresh_token), timeout=RPC_TIMEOUT
    ).session


def get_account(client: Client, access_token: str) -> common_pb2.Account:
    return client.accounts.GetAccount(
        account_pb2.GetAccountRequest(), metadata=client.bearer(access_token), timeout=RPC_TIMEOUT
    ).account


def introspect(client: Client, access_token: str) -> auth_pb2.IntrospectTokenResponse:
    return client.auth.IntrospectToken(
        auth_pb2.IntrospectTokenRequest(access_token=access_token), timeout=RPC_TIMEOUT
    )


def verified_claims(client: Client, settings: Settings, token: str) -> dict[str, Any]:
    """Verify an access token with PyJWT against the service's published JWKS."""
    jwks = jwt.PyJWKSet.from_json(
        client.auth.GetJwks(auth_pb2.GetJwksRequest(), timeout=RPC_TIMEOUT).jwks_json
    )
    header = jwt.get_unverified_header(token)
    key = jwks[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key.key,
        algorithms=ACCESS_TOKEN_ALGORITHMS,
        audience=settings.access_token_audience,
        issuer=settings.issuer,
        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"]},
    )
    return claims


def outbox_count(app: App, event_type: str) -> int:
    query = select(func.count()).select_from(outbox).where(outbox.c.type == event_type)
    with app.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def stored_password_hash(app: App, account_id: str) -> str:
    query = select(accounts.c.password_hash).where(accounts.c.id == account_id)
    with app.engine.connect() as connection:
        return str(connection.execute(query).scalar_one())


# -- Access tokens ---------------------------------------------------------------------------


def test_access_token_claims_verify_against_the_jwks(client: Client, app: App) -> None:
    person = new_person(birth_date="1990-01-15")
    signed = client.sign_up(person)
    session = client.login(signed.account.email).session
    claims = verified_claims(client, app.settings, session.access_token)

    assert claims["iss"] == app.settings.issuer
    assert claims["sub"] == signed.account.id == session.account_id
    assert claims["aud"] == app.settings.access_token_audience
    assert isinstance(claims["iat"], int)
    assert isinstance(claims["exp"], int)
    assert 0 < claims["exp"] - claims["iat"] <= MAX_ACCESS_TOKEN_SECONDS
    assert claims["exp"] == session.access_token_expires_at.seconds
    assert isinstance(claims["jti"], str)
    assert claims["jti"]
    assert claims["amr"] == ["password"]
    assert claims["age_band"] == "adult"
    # The session id is the one introspection reports, and differs from the signup's session.
    assert claims["sid"] == introspect(client, session.access_token).session_id
    signup_claims = verified_claims(client, app.settings, signed.session.access_token)
    assert signup_claims["sid"] != claims["sid"]
    assert signup_claims["jti"] != claims["jti"]
    # No birth date in any form: only the age band.
    assert not BIRTH_DATE_CLAIMS & set(claims)
    text = json.dumps(claims)
    assert person.birth_date not in text
    assert person.birth_date.replace("-", "") not in text


def test_access_token_age_band_of_a_youth(client: Client, app: App) -> None:
    today = datetime.now(UTC).date()
    # Born on 1 January sixteen years ago: 15 or 16 (만), a minor under civil law, not under 14.
    birth = date(today.year - 16, 1, 1).isoformat()
    signed = client.sign_up(new_person(birth_date=birth))
    assert signed.account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
    claims = verified_claims(client, app.settings, signed.session.access_token)
    assert claims["age_band"] == "youth"
    assert introspect(client, signed.session.access_token).age_band == "youth"


def test_introspect_live_token_is_active(client: Client) -> None:
    session = client.sign_up().session
    answer = introspect(client, session.access_token)
    assert answer.active
    assert answer.account_id == session.account_id
    assert answer.session_id
    assert answer.age_band == "adult"
    assert answer.expires_at == session.access_token_expires_at


def test_introspect_unusable_tokens_are_inactive_not_errors(client: Client) -> None:
    token = client.sign_up().session.access_token
    header, payload, signature = token.split(".")
    garbage = [
        "",
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.e30.",  # alg none
        f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}",
        f"{header}.{payload}",
        "x" * 10_000,
        "토큰",
    ]
    answers = {value[:40]: introspect(client, value) for value in garbage}
    assert {value: answer.active for value, answer in answers.items()} == dict.fromkeys(
        answers, False
    )
    assert all(not answer.account_id for answer in answers.values())


# -- Refresh tokens --------------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token(client: Client, app: App) -> None:
    first = client.sign_up().session
    second = refresh(client, first.refresh_token)
    third = refresh(client, second.refresh_token)
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    assert len({first.access_token, second.access_token, third.access_token}) == 3
    assert first.account_id == second.account_id == third.account_id
    sids = {
        verified_claims(client, app.settings, s.access_token)["sid"] for s in (first, second, third)
    }
    assert len(sids) == 1
    assert get_account(client, third.access_token).id == first.account_id


def test_reuse_of_a_rotated_refresh_token_revokes_the_whole_session(
    client: Client, app: App
) -> None:
    signed = client.sign_up()
    first = signed.session
    other = client.login(signed.account.email).session  # another session of the same account
    second = refresh(client, first.refresh_token)
    third = refresh(client, second.refresh_token)
    assert outbox_count(app, "session.reuse_detected") == 0

    # Replaying a rotated token is refused...
    assert_failure(
        failure_of(lambda: refresh(client, first.refresh_token)), C.UNAUTHENTICATED, "TOKEN_INVALID"
    )
    # ...and the token it was rotated into (the newest) is dead too: the session is revoked.
    assert_failure(
        failure_of(lambda: refresh(client, third.refresh_token)), C.UNAUTHENTICATED, "TOKEN_INVALID"
    )
    assert_failure(
        failure_of(lambda: get_account(client, third.access_token)),
        C.UNAUTHENTICATED,
        "TOKEN_INVALID",
    )
    assert not introspect(client, third.access_token).active
    assert outbox_count(app, "session.reuse_detected") == 1

    # Another replay of the dead session records no second event.
    assert_failure(
        failure_of(lambda: refresh(client, second.refresh_token)),
        C.UNAUTHENTICATED,
        "TOKEN_INVALID",
    )
    assert outbox_count(app, "session.reuse_detected") == 1

    # The account's other session is untouched.
    assert get_account(client, other.access_token).id == signed.account.id
    assert refresh(client, other.refresh_token).account_id == signed.account.id


def test_logout_needs_no_bearer_and_ends_the_session(client: Client) -> None:
    session = client.sign_up().session
    client.auth.Logout(
        auth_pb2.LogoutRequest(refresh_token=session.refresh_token), timeout=RPC_TIMEOUT
    )
    assert_failure(
        failure_of(lambda: refresh(client, session.refresh_token)),
        C.UNAUTHENTICATED,
        "TOKEN_INVALID",
    )
    assert_failure(
        failure_of(lambda: get_account(client, session.access_token)),
        C.UNAUTHENTICATED,
        "TOKEN_INVALID",
    )
    assert not introspect(client, session.access_token).active


# -- Lockout ---------------------------------------------------------------------------------


def test_lockout_after_five_failures_and_unlock_after_the_duration(
    tmp_path: Path, database_url: str
) -> None:
    clock = FakeClock()
    settings = make_settings(tmp_path, database_url)
    threshold, duration = settings.lockout_threshold, settings.lockout_duration
    assert (threshold, duration) == (5, timedelta(minutes=15))  # the contract's defaults
    with serving(settings, clock=clock) as (_app, client):
        email = client.sign_up().account.email
        for _ in range(threshold):
            failure = failure_of(lambda: client.login(email, WRONG_PASSWORD))
            assert_failure(failure, C.UNAUTHENTICATED, "INVALID_CREDENTIALS")
        # Locked: even the right password is refused, and so is a wrong one.
        assert_failure(
            failure_of(lambda: client.login(email, STRONG_PASSWORD)),
            C.PERMISSION_DENIED,
            "ACCOUNT_LOCKED",
        )
        assert_failure(
            failure_of(lambda: client.login(email, WRONG_PASSWORD)),
            C.PERMISSION_DENIED,
            "ACCOUNT_LOCKED",
        )
        clock.advance(duration - timedelta(seconds=1))
        assert_failure(
            failure_of(lambda: client.login(email, STRONG_PASSWORD)),
            C.PERMISSION_DENIED,
            "ACCOUNT_LOCKED",
        )
        clock.advance(timedelta(seconds=2))
        session = client.login(email, STRONG_PASSWORD).session
        assert get_account(client, session.access_token).email == email
        # The count starts afresh: fewer failures than the threshold do not lock.
        for _ in range(threshold - 1):
            failure = failure_of(lambda: client.login(email, WRONG_PASSWORD))
            assert_failure(failure, C.UNAUTHENTICATED, "INVALID_CREDENTIALS")
        assert client.login(email, STRONG_PASSWORD).session.access_token


def test_success_resets_the_failure_count(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url)
    with serving(settings, clock=FakeClock()) as (_app, client):
        email = client.sign_up().account.email
        for _ in range(2):
            for _ in range(settings.lockout_threshold - 1):
                failure = failure_of(lambda: client.login(email, WRONG_PASSWORD))
                assert_failure(failure, C.UNAUTHENTICATED, "INVALID_CREDENTIALS")
            assert client.login(email, STRONG_PASSWORD).session.access_token


# -- Password rehash -----------------------------------------------------------------------


def test_login_rehashes_when_argon2_parameters_change(
    client: Client, app: App, settings: Settings
) -> None:
    signed = client.sign_up()
    before = stored_password_hash(app, signed.account.id)
    assert f"t={settings.argon2_time_cost}," in before
    stronger = dataclasses.replace(settings, argon2_time_cost=settings.argon2_time_cost + 1)
    with serving(stronger) as (new_app, new_client):
        session = new_client.login(signed.account.email).session
        assert session.account_id == signed.account.id
        after = stored_password_hash(new_app, signed.account.id)
        assert after != before
        assert after.startswith("$argon2id$")
        assert f"t={stronger.argon2_time_cost}," in after
        assert f"m={stronger.argon2_memory_cost}," in after
        # The rehashed password still logs in.
        assert new_client.login(signed.account.email).session.account_id == signed.account.id
