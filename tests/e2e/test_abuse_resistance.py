"""Abuse cases: concurrent password guessing, idempotent replays, provider choice, profile edits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from sqlalchemy import column, select, table

from idservice.bootstrap import App
from idservice.v1 import account_pb2, auth_pb2, identity_pb2
from tests.conftest import make_settings
from tests.support.client import STRONG_PASSWORD, Client, decode, failure_of, new_person
from tests.support.serving import serving

accounts = table("accounts", column("id"), column("identity_verified"))


def reason_of(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as error:
        return decode(error).reason
    return "OK"


def test_concurrent_wrong_passwords_cannot_outrun_the_lock(client: Client, app: App) -> None:
    signed = client.sign_up()
    email = signed.account.email
    with ThreadPoolExecutor(max_workers=24) as pool:
        reasons = list(
            pool.map(
                lambda _: reason_of(lambda: client.login(email, "wrong guess " * 2)), range(24)
            )
        )
    guesses = reasons.count("INVALID_CREDENTIALS")
    assert guesses <= app.settings.lockout_threshold
    assert set(reasons) <= {"INVALID_CREDENTIALS", "ACCOUNT_LOCKED", "SERVER_BUSY", "RATE_LIMITED"}
    locked = failure_of(lambda: client.login(email))
    assert locked.reason == "ACCOUNT_LOCKED"
    # Times in error metadata use the same RFC 3339 `Z` form as events and JSON timestamps.
    assert locked.metadata["locked_until"].endswith("Z")
    assert datetime.fromisoformat(locked.metadata["locked_until"]) > datetime.now(UTC)


def test_concurrent_right_passwords_all_sign_in(client: Client) -> None:
    email = client.sign_up().account.email
    with ThreadPoolExecutor(max_workers=12) as pool:
        reasons = list(pool.map(lambda _: reason_of(lambda: client.login(email)), range(12)))
    assert reasons == ["OK"] * 12


def test_replay_after_rotation_hands_back_no_stale_tokens(client: Client) -> None:
    request = client.signup_request(new_person(), idempotency_key="replay-after-rotation")
    first = client.accounts.SignUp(request)
    rotated = client.auth.RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=first.session.refresh_token)
    ).session
    again = client.accounts.SignUp(request)
    assert again.account.id == first.account.id
    assert not again.HasField("session")
    # The person's current session survives the retry.
    client.auth.RefreshSession(auth_pb2.RefreshSessionRequest(refresh_token=rotated.refresh_token))


def test_replay_with_another_password_is_key_reused(client: Client) -> None:
    request = client.signup_request(new_person(), idempotency_key="replay-other-password")
    client.accounts.SignUp(request)
    request.password = "another horse battery staple"
    assert reason_of(lambda: client.accounts.SignUp(request)) == "IDEMPOTENCY_KEY_REUSED"


def test_sandbox_is_refused_when_portone_is_configured(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(
        tmp_path,
        database_url,
        identity_provider="portone",
        portone_api_secret="secret",
        portone_api_base="http://127.0.0.1:9",
    )
    with serving(settings) as (_, client), pytest.raises(grpc.RpcError) as info:
        client.identity.CompleteVerification(
            identity_pb2.CompleteVerificationRequest(
                provider=identity_pb2.VERIFICATION_PROVIDER_SANDBOX,
                verification_id=new_person().verification_id(),
            )
        )
    failure = decode(info.value)
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PROVIDER_NOT_CONFIGURED",
    )


def test_profile_cannot_turn_an_active_account_into_a_child(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url, require_identity_verification=False)
    with serving(settings) as (app, client):
        person = new_person()
        signed = client.accounts.SignUp(
            account_pb2.SignUpRequest(
                email="grown-up@example.com",
                password=STRONG_PASSWORD,
                name=person.name,
                phone_number=person.phone,
                birth_date="1990-01-01",
                consents=client.consents(),
            )
        )
        bearer = client.bearer(signed.session.access_token)
        update = account_pb2.UpdateProfileRequest(birth_date="2020-01-01")
        assert (
            reason_of(lambda: client.accounts.UpdateProfile(update, metadata=bearer))
            == "IDENTITY_VERIFICATION_REQUIRED"
        )
        token = client.verify(new_person()).verification_token
        renew = account_pb2.UpdateProfileRequest(name="다른이름", verification_token=token)
        assert (
            reason_of(lambda: client.accounts.UpdateProfile(renew, metadata=bearer))
            == "VALIDATION_FAILED"
        )
        with app.engine.connect() as connection:
            verified = connection.execute(select(accounts.c.identity_verified)).scalar_one()
        assert not verified


def test_sandbox_id_carrying_an_rrn_is_refused(client: Client) -> None:
    for verification_id in (
        "sandbox:900101-1234567:1990-01-01:010-2345-6789:seed-rrn",
        "sandbox:홍길동:1990-01-01:010-2345-6789:9001011234567",
    ):
        with pytest.raises(grpc.RpcError) as info:
            client.identity.CompleteVerification(
                identity_pb2.CompleteVerificationRequest(verification_id=verification_id)
            )
        failure = decode(info.value)
        assert (failure.reason, failure.fields) == ("VALIDATION_FAILED", ["verification_id"])


def test_replayed_signups_count_toward_the_lock(client: Client, app: App) -> None:
    request = client.signup_request(new_person(), idempotency_key="replay-guessing")
    client.accounts.SignUp(request)
    guess = account_pb2.SignUpRequest()
    guess.CopyFrom(request)
    for attempt in range(app.settings.lockout_threshold):
        guess.password = f"guess number {attempt} of many"
        assert reason_of(lambda: client.accounts.SignUp(guess)) == "IDEMPOTENCY_KEY_REUSED"
    assert reason_of(lambda: client.login(request.email)) == "ACCOUNT_LOCKED"


def test_unknown_provider_number_is_not_configured(client: Client) -> None:
    request = identity_pb2.CompleteVerificationRequest(
        provider=99,  # type: ignore[arg-type]
        verification_id=new_person().verification_id(),
    )
    assert reason_of(lambda: client.identity.CompleteVerification(request)) == (
        "PROVIDER_NOT_CONFIGURED"
    )
