"""Google and Kakao login over gRPC against a local OIDC issuer on loopback (tests/fakes/oidc.py).

The provider code under test is unpatched: it fetches discovery and JWKS over HTTP, exchanges
codes through authlib, and reads Kakao's user API from the stand-in.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from idservice.adapters.db import tables as t
from idservice.adapters.identity.sandbox import sandbox_ci
from idservice.bootstrap import App
from idservice.config import Settings
from idservice.v1 import account_pb2, auth_pb2, common_pb2
from tests.conftest import make_settings
from tests.fakes.oidc import OidcIssuer
from tests.fakes.oidc_tokens import pkce_s256
from tests.support.client import (
    STRONG_PASSWORD,
    Client,
    failure_of,
    new_person,
    outcome_of,
    reason_or_ok,
)
from tests.support.locks import queued_behind, row_held
from tests.support.serving import serving

GOOGLE_CLIENT = "google-web-client"
KAKAO_NATIVE_KEY = "kakao-native-app-key"
KAKAO_REST_KEY = "kakao-rest-api-key"
KAKAO_APP_ID = 424242
NONCE = "n-0S6_WzA2Mj"
REDIRECT_URI = "https://app.example.com/oauth/callback"
GOOGLE = common_pb2.SNS_PROVIDER_GOOGLE
KAKAO = common_pb2.SNS_PROVIDER_KAKAO


@pytest.fixture
def google() -> Iterator[OidcIssuer]:
    with OidcIssuer() as issuer:
        yield issuer


@pytest.fixture
def kakao() -> Iterator[OidcIssuer]:
    with OidcIssuer() as issuer:
        yield issuer


@pytest.fixture
def sns(
    tmp_path: Path, database_url: str, google: OidcIssuer, kakao: OidcIssuer
) -> Iterator[tuple[App, Client]]:
    settings = make_settings(
        tmp_path,
        database_url,
        google_client_ids=(GOOGLE_CLIENT,),
        google_discovery_url=google.discovery_url,
        google_client_secret="google-secret",
        kakao_client_ids=(KAKAO_REST_KEY, KAKAO_NATIVE_KEY),
        kakao_discovery_url=kakao.discovery_url,
        kakao_api_base=kakao.api_base,
        kakao_app_id=str(KAKAO_APP_ID),
        kakao_client_secret="kakao-secret",
    )
    with serving(settings) as served:
        yield served


def google_token(google: OidcIssuer, sub: str = "", **extra: object) -> str:
    claims: dict[str, object] = {
        "email": f"g-{uuid.uuid4().hex[:10]}@example.com",
        "email_verified": True,
        "name": "김구글",
        "picture": "https://lh3.googleusercontent.com/a/photo.jpg",
    }
    claims.update(extra)
    return google.id_token(
        sub=sub or f"g-{uuid.uuid4().hex}", aud=GOOGLE_CLIENT, nonce=NONCE, extra=claims
    )


def login(
    client: Client,
    token: str,
    provider: common_pb2.SnsProvider = GOOGLE,
    **fields: str,
) -> auth_pb2.SnsLoginResponse:
    request = auth_pb2.SnsLoginRequest(provider=provider, id_token=token, nonce=NONCE)
    for name, value in fields.items():
        setattr(request, name, value)
    return client.auth.SnsLogin(request)


def code_login(
    client: Client,
    code: str,
    *,
    verifier: str = "w" * 43,
    redirect_uri: str = REDIRECT_URI,
    **fields: str,
) -> auth_pb2.SnsLoginResponse:
    """SnsLogin with Google's authorization code (the code flow, PKCE)."""
    request = auth_pb2.SnsLoginRequest(
        provider=GOOGLE, authorization_code=code, code_verifier=verifier, redirect_uri=redirect_uri
    )
    for name, value in fields.items():
        setattr(request, name, value)
    return client.auth.SnsLogin(request)


def reason(call: object) -> tuple[grpc.StatusCode, str]:
    failure = failure_of(call)  # type: ignore[arg-type]
    return failure.code, failure.reason


def sign_up_with_ticket(client: Client, ticket: str) -> account_pb2.SignUpResponse:
    person = new_person()
    return client.accounts.SignUp(
        account_pb2.SignUpRequest(
            sns_signup_ticket=ticket,
            verification_token=client.verify(person).verification_token,
            consents=client.consents(),
        )
    )


def test_first_login_ticket_signup_then_second_login_gives_a_session(
    sns: tuple[App, Client], google: OidcIssuer
) -> None:
    _app, client = sns
    sub = f"g-{uuid.uuid4().hex}"
    first = login(client, google_token(google, sub=sub, email="first@example.com"))
    assert first.WhichOneof("result") == "signup_required"
    required = first.signup_required
    assert required.prefill.email == "first@example.com" and required.prefill.name == "김구글"
    signed = sign_up_with_ticket(client, required.sns_signup_ticket)
    assert signed.account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
    assert list(signed.account.sign_in_methods) == ["google"]
    assert signed.account.email == "first@example.com"
    assert signed.session.access_token
    # The ticket is single use.
    assert reason(lambda: sign_up_with_ticket(client, required.sns_signup_ticket)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "SNS_TOKEN_INVALID",
    )
    second = login(client, google_token(google, sub=sub, email="first@example.com"))
    assert second.WhichOneof("result") == "session"
    assert second.session.account_id == signed.account.id


def test_an_sns_login_with_a_password_accounts_email_does_not_log_into_it(
    sns: tuple[App, Client], google: OidcIssuer
) -> None:
    _app, client = sns
    owner = client.sign_up(new_person())
    token = google_token(google, email=owner.account.email)
    failure = failure_of(lambda: login(client, token))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "IDENTITY_ALREADY_REGISTERED",
    )
    assert failure.metadata["sign_in_methods"] == "password"
    assert failure.metadata["masked_email"].endswith("@example.com")
    assert owner.account.email not in str(failure.metadata)


def test_a_kakao_ci_is_a_duplicate_like_a_portone_ci(
    sns: tuple[App, Client], kakao: OidcIssuer
) -> None:
    _app, client = sns
    person = new_person()
    client.sign_up(person)
    user_id = 10_000 + int(uuid.uuid4().int % 1_000_000)
    kakao.register_kakao_user(
        "kakao-at-dup",
        user_id=user_id,
        app_id=KAKAO_APP_ID,
        kakao_account={"ci": sandbox_ci(person.seed), "profile": {"nickname": "길동"}},
    )
    token = kakao.id_token(sub=str(user_id), aud=KAKAO_NATIVE_KEY, nonce=NONCE)
    assert reason(lambda: login(client, token, KAKAO, kakao_access_token="kakao-at-dup")) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "IDENTITY_ALREADY_REGISTERED",
    )


def test_kakao_profile_from_user_me(sns: tuple[App, Client], kakao: OidcIssuer) -> None:
    _app, client = sns
    user_id = 20_000 + int(uuid.uuid4().int % 1_000_000)
    kakao.register_kakao_user(
        "kakao-at-1",
        user_id=user_id,
        app_id=KAKAO_APP_ID,
        kakao_account={
            "profile": {"nickname": "라이언", "profile_image_url": "https://k.kakaocdn.net/p.jpg"},
            "email": "ryan@example.com",
            "is_email_valid": True,
            "is_email_verified": True,
            "name": "김라이언",
            "phone_number": "+82 010-2345-6789",
            "birthyear": "1995",
            "birthday": "0704",
            "birthday_type": "SOLAR",
            "age_range": "30~39",
        },
    )
    token = kakao.id_token(sub=str(user_id), aud=KAKAO_REST_KEY, nonce=NONCE)
    prefill = login(client, token, KAKAO, kakao_access_token="kakao-at-1").signup_required.prefill
    assert (prefill.email, prefill.name, prefill.birth_date) == (
        "ryan@example.com",
        "김라이언",
        "1995-07-04",
    )


def test_a_lunar_birthday_is_never_a_solar_birth_date(
    sns: tuple[App, Client], kakao: OidcIssuer
) -> None:
    _app, client = sns
    user_id = 30_000 + int(uuid.uuid4().int % 1_000_000)
    kakao.register_kakao_user(
        "kakao-at-lunar",
        user_id=user_id,
        app_id=KAKAO_APP_ID,
        kakao_account={
            "birthyear": "2015",
            "birthday": "0101",
            "birthday_type": "LUNAR",
            "age_range": "20~29",
        },
    )
    token = kakao.id_token(sub=str(user_id), aud=KAKAO_REST_KEY, nonce=NONCE)
    prefill = login(
        client, token, KAKAO, kakao_access_token="kakao-at-lunar"
    ).signup_required.prefill
    assert prefill.birth_date == ""


def test_a_kakao_access_token_of_another_app_is_refused(
    sns: tuple[App, Client], kakao: OidcIssuer
) -> None:
    _app, client = sns
    kakao.register_kakao_user("kakao-at-other", user_id=77, app_id=1, kakao_account={})
    token = kakao.id_token(sub="77", aud=KAKAO_REST_KEY, nonce=NONCE)
    assert reason(lambda: login(client, token, KAKAO, kakao_access_token="kakao-at-other")) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "SNS_TOKEN_INVALID",
    )


@pytest.mark.parametrize("access", ["토큰", "kakao-é", "kakao at", "kakao\tat", "=kakao"])
def test_a_kakao_access_token_that_is_no_bearer_token_is_invalid(
    sns: tuple[App, Client], kakao: OidcIssuer, access: str
) -> None:
    """It would go into an Authorization header: refused as input before any provider call."""
    _app, client = sns
    token = kakao.id_token(sub="78", aud=KAKAO_REST_KEY, nonce=NONCE)
    owner = client.sign_up(new_person())
    for call in (
        lambda: login(client, token, KAKAO, kakao_access_token=access),
        lambda: client.auth.LinkSnsIdentity(
            auth_pb2.LinkSnsIdentityRequest(
                provider=KAKAO, id_token=token, nonce=NONCE, kakao_access_token=access
            ),
            metadata=client.bearer(owner.session.access_token),
        ),
    ):
        failure = failure_of(call)
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION_FAILED",
        )
        assert failure.fields == ["kakao_access_token"]


@pytest.mark.parametrize(
    "bad_field",
    [
        {"name": "김\n라이언"},
        {"name": "x" * 5000},
        {"phone_number": "900101-1234567"},
        {"birthyear": "0001", "birthday": "0101", "birthday_type": "SOLAR"},
        {"birthyear": "2999", "birthday": "0101", "birthday_type": "SOLAR"},
        {"name": {"nested": "object"}},
    ],
)
def test_a_bad_kakao_answer_is_upstream_unavailable_and_stores_nothing(
    sns: tuple[App, Client], kakao: OidcIssuer, bad_field: dict[str, object]
) -> None:
    app, client = sns
    user_id = 40_000 + int(uuid.uuid4().int % 1_000_000)
    access = f"kakao-at-{user_id}"
    kakao.register_kakao_user(access, user_id=user_id, app_id=KAKAO_APP_ID, kakao_account=bad_field)
    token = kakao.id_token(sub=str(user_id), aud=KAKAO_REST_KEY, nonce=NONCE)
    assert reason(lambda: login(client, token, KAKAO, kakao_access_token=access)) == (
        grpc.StatusCode.UNAVAILABLE,
        "UPSTREAM_UNAVAILABLE",
    )
    with app.engine.connect() as connection:
        from sqlalchemy import func, select

        from idservice.adapters.db import tables

        count = connection.execute(select(func.count()).select_from(tables.sns_signup_tickets))
        assert count.scalar_one() == 0


def test_the_code_flow_with_pkce(sns: tuple[App, Client], google: OidcIssuer) -> None:
    _app, client = sns
    verifier = "v" * 20 + uuid.uuid4().hex + "-._~"
    token = google_token(google, email="code@example.com")
    google.register_code(
        "code-1",
        code_challenge=pkce_s256(verifier),
        redirect_uri=REDIRECT_URI,
        client_id=GOOGLE_CLIENT,
        client_secret="google-secret",
        id_token=token,
    )
    answer = client.auth.SnsLogin(
        auth_pb2.SnsLoginRequest(
            provider=GOOGLE,
            authorization_code="code-1",
            code_verifier=verifier,
            redirect_uri=REDIRECT_URI,
            nonce=NONCE,
        )
    )
    assert answer.signup_required.prefill.email == "code@example.com"
    sent = google.last_token_request
    assert sent["code_verifier"] == verifier and sent["redirect_uri"] == REDIRECT_URI
    # A code is single use, and a wrong verifier gets nothing.
    google.register_code(
        "code-2",
        code_challenge=pkce_s256(verifier),
        redirect_uri=REDIRECT_URI,
        client_id=GOOGLE_CLIENT,
        client_secret="google-secret",
        id_token=token,
    )
    assert reason(lambda: code_login(client, "code-2", nonce=NONCE)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "SNS_TOKEN_INVALID",
    )


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "not a url",
        "/oauth/callback",
        "app.example.com/cb",
        "https://app.example.com/cb#x",
        "ftp:",
        "https://app.example.com/\x01cb",  # named once, though two rules refuse it
    ],
)
def test_a_redirect_uri_that_is_no_absolute_uri_is_invalid_input(
    sns: tuple[App, Client], google: OidcIssuer, redirect_uri: str
) -> None:
    """RFC 6749 §3.1.2: refused as input, before the code is sent to the provider."""
    _app, client = sns
    before = google.token_requests
    failure = failure_of(lambda: code_login(client, "code-x", redirect_uri=redirect_uri))
    assert (failure.code, failure.reason, failure.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
        ["redirect_uri"],
    )
    assert google.token_requests == before


def test_an_apps_own_scheme_is_a_redirect_uri(sns: tuple[App, Client], google: OidcIssuer) -> None:
    """An app's custom scheme (RFC 8252 §7.1) passes the input check; the provider decides."""
    _app, client = sns
    own_scheme = "com.example.app:/oauth2redirect"
    assert reason(lambda: code_login(client, "unknown-code", redirect_uri=own_scheme)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "SNS_TOKEN_INVALID",
    )


def test_with_the_issuer_down_cached_keys_work_and_the_rest_is_unavailable(
    sns: tuple[App, Client], google: OidcIssuer
) -> None:
    _app, client = sns
    sub = f"g-{uuid.uuid4().hex}"
    first = login(client, google_token(google, sub=sub))
    sign_up_with_ticket(client, first.signup_required.sns_signup_ticket)
    google.stop()
    try:
        # Keys and discovery are cached: a known person still logs in.
        assert login(client, google_token(google, sub=sub)).WhichOneof("result") == "session"
        # A code exchange needs the provider.
        assert reason(lambda: code_login(client, "code-x", verifier="v" * 43)) == (
            grpc.StatusCode.UNAVAILABLE,
            "UPSTREAM_UNAVAILABLE",
        )
    finally:
        google.start()


@pytest.mark.parametrize("field", ["jwks_uri", "token_endpoint"])
def test_a_discovery_document_cannot_send_keys_or_codes_in_the_clear(
    sns: tuple[App, Client], google: OidcIssuer, field: str
) -> None:
    """The stand-in's discovery URL is loopback http (allowed, as a local stand-in); a URL it
    lists must be https or loopback too: a provider's document never downgrades a fetch to
    plaintext to another host. (0.0.0.0 is no loopback address, yet Linux connects it to the
    stand-in: without the rule the keys would be fetched and the login would succeed.)"""
    _app, client = sns
    path = {"jwks_uri": "/jwks", "token_endpoint": "/token"}[field]
    everywhere = google.base_url.replace("//127.0.0.1:", "//0.0.0.0:")
    google.discovery_overrides[field] = everywhere + path
    failure = failure_of(lambda: login(client, google_token(google)))
    assert (failure.code, failure.reason, failure.metadata.get("provider")) == (
        grpc.StatusCode.UNAVAILABLE,
        "UPSTREAM_UNAVAILABLE",
        "google",
    )
    assert (google.jwks_fetches, google.token_requests) == (0, 0)


def test_link_and_unlink(sns: tuple[App, Client], google: OidcIssuer) -> None:
    app, client = sns
    owner = client.sign_up(new_person())
    bearer = client.bearer(owner.session.access_token)
    sub = f"g-{uuid.uuid4().hex}"
    linked = client.auth.LinkSnsIdentity(
        auth_pb2.LinkSnsIdentityRequest(
            provider=GOOGLE, id_token=google_token(google, sub=sub), nonce=NONCE
        ),
        metadata=bearer,
    )
    assert list(linked.sign_in_methods) == ["password", "google"]
    # Now the Google identity logs into the password account.
    assert login(client, google_token(google, sub=sub)).session.account_id == owner.account.id
    # The same identity cannot be linked to a second account.
    other = client.sign_up(new_person())
    assert reason(
        lambda: client.auth.LinkSnsIdentity(
            auth_pb2.LinkSnsIdentityRequest(
                provider=GOOGLE, id_token=google_token(google, sub=sub), nonce=NONCE
            ),
            metadata=client.bearer(other.session.access_token),
        )
    ) == (grpc.StatusCode.ALREADY_EXISTS, "SNS_IDENTITY_ALREADY_LINKED")
    # Unlinking names a provider (it needs no configured one): none named is invalid.
    for unnamed in (common_pb2.SNS_PROVIDER_UNSPECIFIED, 99):
        assert reason(
            lambda unnamed=unnamed: client.auth.UnlinkSnsIdentity(
                auth_pb2.UnlinkSnsIdentityRequest(provider=unnamed),
                metadata=bearer,
            )
        ) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED")
    by_google = login(client, google_token(google, sub=sub)).session
    by_password = client.login(owner.account.email).session
    unlinked = client.auth.UnlinkSnsIdentity(
        auth_pb2.UnlinkSnsIdentityRequest(provider=GOOGLE), metadata=bearer
    )
    assert list(unlinked.sign_in_methods) == ["password"]
    # The sessions Google opened end with the link; the caller's and the password's go on.
    assert reason(
        lambda: client.accounts.GetAccount(
            account_pb2.GetAccountRequest(), metadata=client.bearer(by_google.access_token)
        )
    ) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    assert reason(
        lambda: client.auth.RefreshSession(
            auth_pb2.RefreshSessionRequest(refresh_token=by_google.refresh_token)
        )
    ) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    with app.engine.connect() as connection:
        reasons = connection.execute(
            select(t.sessions.c.revoked_reason).where(
                t.sessions.c.account_id == owner.account.id,
                t.sessions.c.revoked_at.is_not(None),
            )
        ).scalars()
        # Both Google sessions (the one opened after linking, and by_google).
        assert list(reasons) == ["sign_in_unlinked"] * 2
    for live in (owner.session, by_password):
        assert (
            client.accounts.GetAccount(
                account_pb2.GetAccountRequest(), metadata=client.bearer(live.access_token)
            ).account.id
            == owner.account.id
        )


def test_the_last_sign_in_method_stays(sns: tuple[App, Client], google: OidcIssuer) -> None:
    _app, client = sns
    first = login(client, google_token(google))
    signed = sign_up_with_ticket(client, first.signup_required.sns_signup_ticket)
    assert reason(
        lambda: client.auth.UnlinkSnsIdentity(
            auth_pb2.UnlinkSnsIdentityRequest(provider=GOOGLE),
            metadata=client.bearer(signed.session.access_token),
        )
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "LAST_SIGN_IN_METHOD")


def test_an_unconfigured_provider(tmp_path: Path, database_url: str) -> None:
    with serving(make_settings(tmp_path, database_url)) as (_app, client):
        assert reason(lambda: login(client, "a.b.c")) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "PROVIDER_NOT_CONFIGURED",
        )
        assert reason(lambda: login(client, "a.b.c", common_pb2.SNS_PROVIDER_UNSPECIFIED)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "PROVIDER_NOT_CONFIGURED",
        )


def test_key_rotation_and_the_kid_refetch_limit(
    sns: tuple[App, Client], google: OidcIssuer
) -> None:
    _app, client = sns
    login(client, google_token(google))  # discovery and keys are now cached
    fetches = google.jwks_fetches
    google.rotate()
    # The new kid is unknown to the cache: one refetch picks it up.
    assert login(client, google_token(google)).WhichOneof("result") == "signup_required"
    assert google.jwks_fetches == fetches + 1
    # Garbage kids are refused without hammering the provider (at most one refetch a minute).
    for _ in range(5):
        assert reason(lambda: login(client, google.token_with_unknown_kid())) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "SNS_TOKEN_INVALID",
        )
    assert google.jwks_fetches == fetches + 1
    time.sleep(0)  # the limit is per minute; the suite does not wait it out


def test_one_unused_ticket_per_person(sns: tuple[App, Client], google: OidcIssuer) -> None:
    _app, client = sns
    sub = f"g-{uuid.uuid4().hex}"
    first = login(client, google_token(google, sub=sub)).signup_required.sns_signup_ticket
    second = login(client, google_token(google, sub=sub)).signup_required.sns_signup_ticket
    assert reason(lambda: sign_up_with_ticket(client, first)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "SNS_TOKEN_INVALID",
    )
    assert sign_up_with_ticket(client, second).account.sign_in_methods == ["google"]


def test_a_google_display_name_that_is_no_name_does_not_block_login(
    sns: tuple[App, Client], google: OidcIssuer
) -> None:
    _app, client = sns
    answer = login(client, google_token(google, name="Minsu 2 (민수)", picture="http://x"))
    assert answer.signup_required.prefill.name == ""


def test_an_sns_signup_replay_returns_no_tokens(
    sns: tuple[App, Client], google: OidcIssuer
) -> None:
    _app, client = sns
    ticket = login(client, google_token(google)).signup_required.sns_signup_ticket
    person = new_person()
    request = account_pb2.SignUpRequest(
        idempotency_key=str(uuid.uuid4()),
        sns_signup_ticket=ticket,
        verification_token=client.verify(person).verification_token,
        consents=client.consents(),
    )
    first = client.accounts.SignUp(request)
    assert first.session.access_token
    replayed = client.accounts.SignUp(request)
    assert replayed.account.id == first.account.id and not replayed.HasField("session")


def test_a_kakao_ci_of_another_account_cannot_be_linked(
    sns: tuple[App, Client], kakao: OidcIssuer
) -> None:
    _app, client = sns
    owner = new_person()
    client.sign_up(owner)
    other = client.sign_up(new_person())
    user_id = 50_000 + int(uuid.uuid4().int % 1_000_000)
    kakao.register_kakao_user(
        "kakao-at-link",
        user_id=user_id,
        app_id=KAKAO_APP_ID,
        kakao_account={"ci": sandbox_ci(owner.seed)},
    )
    # The other account is verified too, with its own CI: a different person.
    request = auth_pb2.LinkSnsIdentityRequest(
        provider=KAKAO,
        id_token=kakao.id_token(sub=str(user_id), aud=KAKAO_REST_KEY, nonce=NONCE),
        nonce=NONCE,
        kakao_access_token="kakao-at-link",
    )
    assert reason(
        lambda: client.auth.LinkSnsIdentity(
            request, metadata=client.bearer(other.session.access_token)
        )
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "VERIFICATION_MISMATCH")


@pytest.mark.parametrize("access", ["kakao-at-code", "카카오-토큰"], ids=["ascii", "not-a-bearer"])
def test_kakao_code_flow_needs_no_app_id(
    tmp_path: Path, database_url: str, kakao: OidcIssuer, access: str
) -> None:
    """The access token Kakao's token endpoint issues goes into an Authorization header: one
    that is no bearer token is Kakao's malformed answer (it answered INTERNAL)."""
    settings = make_settings(
        tmp_path,
        database_url,
        kakao_client_ids=(KAKAO_REST_KEY,),
        kakao_discovery_url=kakao.discovery_url,
        kakao_api_base=kakao.api_base,
        kakao_client_secret="kakao-secret",
    )
    user_id = 60_000 + int(uuid.uuid4().int % 1_000_000)
    kakao.register_kakao_user(
        access,
        user_id=user_id,
        app_id=KAKAO_APP_ID,
        kakao_account={"profile": {"nickname": "어피치"}},
    )
    verifier = "k" * 43
    kakao.register_code(
        "kakao-code",
        code_challenge=pkce_s256(verifier),
        redirect_uri=REDIRECT_URI,
        client_id=KAKAO_REST_KEY,
        client_secret="kakao-secret",
        id_token=kakao.id_token(sub=str(user_id), aud=KAKAO_REST_KEY),
        access_token=access,
    )
    request = auth_pb2.SnsLoginRequest(
        provider=KAKAO,
        authorization_code="kakao-code",
        code_verifier=verifier,
        redirect_uri=REDIRECT_URI,
    )
    with serving(settings) as (_app, client):
        if access.isascii():
            answer = client.auth.SnsLogin(request)
            assert answer.WhichOneof("result") == "signup_required"
            return
        failure = failure_of(lambda: client.auth.SnsLogin(request))
    assert (failure.code, failure.reason, failure.metadata.get("provider")) == (
        grpc.StatusCode.UNAVAILABLE,
        "UPSTREAM_UNAVAILABLE",
        "kakao",
    )


def kakao_without_required_verification(
    tmp_path: Path, database_url: str, kakao: OidcIssuer
) -> Settings:
    """Settings with Kakao login (the stand-in issuer) and identity verification optional."""
    return make_settings(
        tmp_path,
        database_url,
        require_identity_verification=False,
        kakao_client_ids=(KAKAO_REST_KEY,),
        kakao_discovery_url=kakao.discovery_url,
        kakao_api_base=kakao.api_base,
        kakao_app_id=str(KAKAO_APP_ID),
    )


def test_without_verification_a_kakao_birth_date_cannot_be_typed_away(
    tmp_path: Path, database_url: str, kakao: OidcIssuer
) -> None:
    settings = kakao_without_required_verification(tmp_path, database_url, kakao)
    kakao.register_kakao_user(
        "kakao-at-child",
        user_id=70_001,
        app_id=KAKAO_APP_ID,
        kakao_account={
            "name": "김어린",
            "phone_number": "+82 10-2345-6789",
            "birthyear": "2016",
            "birthday": "0101",
            "birthday_type": "SOLAR",
        },
    )
    token = kakao.id_token(sub="70001", aud=KAKAO_REST_KEY, nonce=NONCE)
    with serving(settings) as (_app, client):
        ticket = login(
            client, token, KAKAO, kakao_access_token="kakao-at-child"
        ).signup_required.sns_signup_ticket
        adult = account_pb2.SignUpRequest(
            sns_signup_ticket=ticket, birth_date="1990-01-01", consents=client.consents()
        )
        assert reason(lambda: client.accounts.SignUp(adult)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "VERIFICATION_MISMATCH",
        )
        child = account_pb2.SignUpRequest(sns_signup_ticket=ticket, consents=client.consents())
        assert reason(lambda: client.accounts.SignUp(child)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "GUARDIAN_INFO_REQUIRED",
        )


def test_withdraw_by_sns_takes_a_fresh_sign_in_of_an_identity_of_the_account(
    sns: tuple[App, Client], google: OidcIssuer
) -> None:
    _app, client = sns
    sub = f"g-{uuid.uuid4().hex}"
    ticket = login(client, google_token(google, sub=sub)).signup_required.sns_signup_ticket
    signed = sign_up_with_ticket(client, ticket)
    bearer = client.bearer(signed.session.access_token)

    def withdraw(id_token: str) -> object:
        credential = common_pb2.SnsCredential(provider=GOOGLE, id_token=id_token, nonce=NONCE)
        return client.accounts.Withdraw(
            account_pb2.WithdrawRequest(sns_credential=credential), metadata=bearer
        )

    refused = (grpc.StatusCode.UNAUTHENTICATED, "REAUTHENTICATION_REQUIRED")
    # Unexpired (an hour's lifetime) but issued 11 minutes ago: an old sign-in kept around.
    issued_long_ago = int(time.time()) - 11 * 60
    stale = google.id_token(
        sub=sub, aud=GOOGLE_CLIENT, nonce=NONCE, lifetime=3600, iat=issued_long_ago
    )
    assert reason(lambda: withdraw(stale)) == refused
    # A recent `auth_time` counts, whatever the token's `iat`; an old one does not.
    old_auth = google_token(google, sub=sub, auth_time=issued_long_ago)
    assert reason(lambda: withdraw(old_auth)) == refused
    # A fresh sign-in of another person's identity.
    assert reason(lambda: withdraw(google_token(google))) == refused
    assert client.accounts.GetAccount(account_pb2.GetAccountRequest(), metadata=bearer).account.id
    withdraw(google_token(google, sub=sub))
    assert reason(
        lambda: client.accounts.GetAccount(account_pb2.GetAccountRequest(), metadata=bearer)
    ) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


def test_a_kakao_ci_linked_to_an_unverified_account_is_that_persons_one_account(
    tmp_path: Path, database_url: str, kakao: OidcIssuer
) -> None:
    """Without required verification an account may start with no CI. Linking a Kakao identity
    that carries the person's CI stores it on the account, so the same person verified later
    (here by the sandbox, whose CI is that one) cannot open a second account."""
    settings = kakao_without_required_verification(tmp_path, database_url, kakao)
    person = new_person()
    user_id = 80_000 + int(uuid.uuid4().int % 1_000_000)
    kakao.register_kakao_user(
        "kakao-at-adopt",
        user_id=user_id,
        app_id=KAKAO_APP_ID,
        kakao_account={"ci": sandbox_ci(person.seed)},
    )
    with serving(settings) as (_app, client):
        unverified = client.accounts.SignUp(
            account_pb2.SignUpRequest(
                idempotency_key=str(uuid.uuid4()),
                email=f"u-{uuid.uuid4().hex[:10]}@example.com",
                password=STRONG_PASSWORD,
                name=person.name,
                phone_number=person.phone,
                birth_date=person.birth_date,
                consents=client.consents(),
            )
        )
        assert not unverified.account.identity_verified
        link = auth_pb2.LinkSnsIdentityRequest(
            provider=KAKAO,
            id_token=kakao.id_token(sub=str(user_id), aud=KAKAO_REST_KEY, nonce=NONCE),
            nonce=NONCE,
            kakao_access_token="kakao-at-adopt",
        )
        bearer = client.bearer(unverified.session.access_token)
        assert "kakao" in client.auth.LinkSnsIdentity(link, metadata=bearer).sign_in_methods
        failure = failure_of(lambda: client.sign_up(person))
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "IDENTITY_ALREADY_REGISTERED",
        )
        assert set(failure.metadata["sign_in_methods"].split(",")) == {"password", "kakao"}


def google_account_leaving(
    client: Client, google: OidcIssuer
) -> tuple[account_pb2.SignUpResponse, str, Callable[[], object]]:
    """An account signed up with a Google identity, that identity's subject, and the account's
    Withdraw re-authenticated by a fresh Google sign-in (not yet called)."""
    sub = f"g-{uuid.uuid4().hex}"
    ticket = login(client, google_token(google, sub=sub)).signup_required.sns_signup_ticket
    signed = sign_up_with_ticket(client, ticket)
    bearer = client.bearer(signed.session.access_token)
    credential = common_pb2.SnsCredential(
        provider=GOOGLE, id_token=google_token(google, sub=sub), nonce=NONCE
    )
    withdraw = account_pb2.WithdrawRequest(sns_credential=credential)
    return signed, sub, lambda: client.accounts.Withdraw(withdraw, metadata=bearer)


def test_an_sns_login_and_a_withdrawal_at_once(sns: tuple[App, Client], google: OidcIssuer) -> None:
    """The withdrawal first (PostgreSQL: both queued on the account's row, held FOR UPDATE by a
    third transaction). The login takes the account's row before its link's, as the withdrawal
    does, so the two queue instead of deadlocking; the login then answers as one after the
    withdrawal would: the identity is no one's, so a sign-up ticket."""
    app, client = sns
    signed, sub, withdraw_by_google = google_account_leaving(client, google)
    relogin = google_token(google, sub=sub)
    withdrawn, answer = queued_behind(
        row_held(app, t.accounts, signed.account.id, key_share=False),
        lambda: outcome_of(withdraw_by_google),
        lambda: outcome_of(lambda: login(client, relogin)),
    )
    assert isinstance(withdrawn, account_pb2.WithdrawResponse), withdrawn
    if app.engine.dialect.name == "postgresql":
        assert isinstance(answer, auth_pb2.SnsLoginResponse), answer
        assert answer.WhichOneof("result") == "signup_required", answer
    with app.engine.connect() as connection:
        left = connection.execute(
            select(t.sessions.c.id).where(t.sessions.c.account_id == signed.account.id)
        ).all()
    assert left == []


def test_a_link_and_a_withdrawal_at_once(
    sns: tuple[App, Client], google: OidcIssuer, kakao: OidcIssuer
) -> None:
    """The withdrawal first (PostgreSQL: both queued on the account's row, held FOR UPDATE by a
    third transaction): the link then finds the account withdrawn, adds nothing to its remains
    and answers TOKEN_INVALID, as a link after the withdrawal would."""
    app, client = sns
    signed, _sub, withdraw_by_google = google_account_leaving(client, google)
    bearer = client.bearer(signed.session.access_token)
    user_id = 90_000 + int(uuid.uuid4().int % 1_000_000)
    access = f"kakao-at-{user_id}"
    kakao.register_kakao_user(access, user_id=user_id, app_id=KAKAO_APP_ID, kakao_account={})
    link = auth_pb2.LinkSnsIdentityRequest(
        provider=KAKAO,
        id_token=kakao.id_token(sub=str(user_id), aud=KAKAO_REST_KEY, nonce=NONCE),
        nonce=NONCE,
        kakao_access_token=access,
    )
    withdrawn, linked = queued_behind(
        row_held(app, t.accounts, signed.account.id, key_share=False),
        lambda: reason_or_ok(withdraw_by_google),
        lambda: reason_or_ok(lambda: client.auth.LinkSnsIdentity(link, metadata=bearer)),
    )
    assert withdrawn == "OK"
    if app.engine.dialect.name == "postgresql":
        assert linked == "TOKEN_INVALID"
    with app.engine.connect() as connection:
        links = connection.execute(
            select(t.sns_identities.c.id).where(t.sns_identities.c.account_id == signed.account.id)
        ).all()
    assert links == []
