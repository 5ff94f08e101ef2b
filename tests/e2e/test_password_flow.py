"""SignUp → PasswordLogin → GetAccount → RefreshSession → Logout over gRPC, on both databases."""

from __future__ import annotations

import grpc
import pytest
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from sqlalchemy import select

from idservice.adapters.db.tables import accounts
from idservice.bootstrap import App
from idservice.v1 import account_pb2, auth_pb2, common_pb2
from tests.support.client import STRONG_PASSWORD, Client, decode, new_person


def test_signup_login_account_refresh_logout(client: Client) -> None:
    person = new_person()
    signed = client.sign_up(person, email="Hong.GilDong@Example.com")
    assert signed.account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
    assert signed.account.identity_verified
    assert signed.session.access_token and signed.session.refresh_token

    login = client.login("hong.gildong@example.com")
    bearer = client.bearer(login.session.access_token)
    account = client.accounts.GetAccount(account_pb2.GetAccountRequest(), metadata=bearer).account
    assert account.id == signed.account.id
    assert account.name == person.name
    assert account.birth_date == person.birth_date
    assert account.phone_number.startswith("+8210")
    assert account.age_band == "adult"
    assert list(account.sign_in_methods) == ["password"]

    refreshed = client.auth.RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=login.session.refresh_token)
    ).session
    assert refreshed.refresh_token != login.session.refresh_token

    client.auth.Logout(auth_pb2.LogoutRequest(refresh_token=refreshed.refresh_token))
    with pytest.raises(grpc.RpcError) as info:
        client.auth.RefreshSession(
            auth_pb2.RefreshSessionRequest(refresh_token=refreshed.refresh_token)
        )
    assert decode(info.value).reason == "TOKEN_INVALID"
    introspection = client.auth.IntrospectToken(
        auth_pb2.IntrospectTokenRequest(access_token=refreshed.access_token)
    )
    assert not introspection.active


def test_wrong_password_and_unknown_email_fail_alike(client: Client) -> None:
    signed = client.sign_up()
    with pytest.raises(grpc.RpcError) as wrong:
        client.login(signed.account.email, "not the right password at all")
    with pytest.raises(grpc.RpcError) as unknown:
        client.login("nobody-here@example.com", STRONG_PASSWORD)
    a, b = decode(wrong.value), decode(unknown.value)
    assert (a.code, a.reason, a.message) == (b.code, b.reason, b.message)
    assert a.code == grpc.StatusCode.UNAUTHENTICATED
    assert a.reason == "INVALID_CREDENTIALS"


def test_stored_hash_verifies_with_a_second_argon2_implementation(client: Client, app: App) -> None:
    signed = client.sign_up(new_person(), email="second.argon2@example.com")
    with app.engine.connect() as connection:
        stored = connection.execute(
            select(accounts.c.password_hash).where(accounts.c.id == signed.account.id)
        ).scalar_one()
    assert stored.startswith("$argon2id$v=19$")
    # cryptography's Argon2id (OpenSSL), not argon2-cffi, reads the PHC string from the database.
    Argon2id.verify_phc_encoded(STRONG_PASSWORD.encode(), stored)
    with pytest.raises(InvalidKey):
        Argon2id.verify_phc_encoded(b"not the password", stored)
