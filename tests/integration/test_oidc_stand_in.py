"""The OIDC issuer stand-in (tests/fakes/oidc.py) over real HTTP, as the login tests use it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, UnsupportedAlgorithmError
from joserfc.jwk import KeySet

from tests.fakes.oidc import OidcIssuer
from tests.fakes.oidc_tokens import b64url, decode_unverified, pkce_s256

TIMEOUT = 10.0
REDIRECT_URI = "https://app.example.kr/login/callback"
CLIENT_ID = "client-1"
CLIENT_SECRET = "s3cret"
KAKAO_ACCOUNT: dict[str, object] = {
    "profile": {"nickname": "라이언", "profile_image_url": "https://k.kakaocdn.net/p/1.jpg"},
    "email": "ryan@kakao.example",
    "is_email_valid": True,
    "is_email_verified": True,
    "name": "홍길동",
    "phone_number": "+82 10-1234-5678",
    "birthyear": "1990",
    "birthday": "0115",
    "birthday_type": "SOLAR",
    "age_range": "30~39",
    "ci": "ci-value-1",
}


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT) as client:
        yield client


def verify(token: str, jwks: Any) -> jwt.Token:
    """What a correct relying party does: RS256 only, key chosen by kid from the JWKS."""
    return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"])


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


# -- discovery and keys ---------------------------------------------------------------------------


def test_discovery_document_names_the_endpoints(issuer: OidcIssuer, http: httpx.Client) -> None:
    assert issuer.discovery_url == f"{issuer.base_url}/.well-known/openid-configuration"
    assert issuer.base_url.startswith("http://127.0.0.1:")
    assert issuer.api_base == issuer.base_url
    response = http.get(issuer.discovery_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "max-age=3600"
    document = response.json()
    base = issuer.base_url
    assert document["issuer"] == issuer.issuer == base
    assert document["authorization_endpoint"] == f"{base}/authorize"
    assert document["token_endpoint"] == f"{base}/token"
    assert document["jwks_uri"] == f"{base}/jwks"
    assert document["userinfo_endpoint"] == f"{base}/userinfo"
    assert document["response_types_supported"] == ["code"]
    assert document["subject_types_supported"] == ["public"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["token_endpoint_auth_methods_supported"] == [
        "client_secret_post",
        "client_secret_basic",
    ]
    assert issuer.discovery_fetches == 1
    assert issuer.jwks_fetches == 0


def test_announced_issuer_and_cache_control_are_settable(http: httpx.Client) -> None:
    google = "https://accounts.google.com"
    with OidcIssuer(issuer=google, cache_control="public, max-age=19000") as issuer:
        response = http.get(issuer.discovery_url)
        assert response.json()["issuer"] == google
        assert response.json()["jwks_uri"] == f"{issuer.base_url}/jwks"
        assert response.headers["cache-control"] == "public, max-age=19000"
        assert decode_unverified(issuer.id_token())[1]["iss"] == google
        issuer.set_cache_control("no-cache")
        assert http.get(f"{issuer.base_url}/jwks").headers["cache-control"] == "no-cache"
        issuer.set_cache_control(None)
        assert "cache-control" not in http.get(issuer.discovery_url).headers


def test_jwks_publishes_the_public_key_that_signs_id_tokens(
    issuer: OidcIssuer, http: httpx.Client
) -> None:
    response = http.get(f"{issuer.base_url}/jwks")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "max-age=3600"
    jwks = response.json()
    [key] = jwks["keys"]
    assert key["kty"] == "RSA"
    assert (key["kid"], key["alg"], key["use"]) == (issuer.current_kid, "RS256", "sig")
    assert {"n", "e"} <= key.keys()
    assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()
    assert issuer.jwks_fetches == 1

    extra = {"email": "a@example.kr", "email_verified": True, "name": "김철수", "azp": "web"}
    token = issuer.id_token(sub="g-42", aud=CLIENT_ID, nonce="n-1", lifetime=600, extra=extra)
    decoded = verify(token, jwks)
    assert decoded.header == {"typ": "JWT", "alg": "RS256", "kid": issuer.current_kid}
    claims = decoded.claims
    assert (claims["iss"], claims["sub"], claims["aud"], claims["nonce"]) == (
        issuer.base_url,
        "g-42",
        CLIENT_ID,
        "n-1",
    )
    assert claims["exp"] - claims["iat"] == 600
    assert {k: claims[k] for k in extra} == extra


def test_id_token_claim_options(issuer: OidcIssuer) -> None:
    _, claims = decode_unverified(
        issuer.id_token(aud=["a", "b"], iat=1_700_000_000, lifetime=60, issuer="https://other")
    )
    assert claims == {
        "iss": "https://other",
        "sub": "sub-1",
        "aud": ["a", "b"],
        "iat": 1_700_000_000,
        "exp": 1_700_000_060,
    }
    _, overridden = decode_unverified(issuer.id_token(extra={"exp": "soon", "sub": "x"}))
    assert (overridden["exp"], overridden["sub"]) == ("soon", "x")


def test_rotation_publishes_both_keys_until_the_old_one_is_retired(
    issuer: OidcIssuer, http: httpx.Client
) -> None:
    old_kid = issuer.current_kid
    old_token = issuer.id_token()
    new_kid = issuer.rotate()
    assert new_kid != old_kid
    assert issuer.current_kid == new_kid
    new_token = issuer.id_token()
    assert decode_unverified(new_token)[0]["kid"] == new_kid

    both = http.get(f"{issuer.base_url}/jwks").json()
    assert [key["kid"] for key in both["keys"]] == [old_kid, new_kid]
    verify(old_token, both)
    verify(new_token, both)

    issuer.retire(old_kid)
    only_new = http.get(f"{issuer.base_url}/jwks").json()
    assert [key["kid"] for key in only_new["keys"]] == [new_kid] == issuer.published_kids
    verify(new_token, only_new)
    with pytest.raises(InvalidKeyIdError):
        verify(old_token, only_new)
    # A retired key still signs on request: a token from before the retirement, minted late.
    assert decode_unverified(issuer.id_token(kid=old_kid))[0]["kid"] == old_kid
    with pytest.raises(KeyError):
        issuer.retire("never-existed")


def test_forged_tokens_are_what_they_claim_and_fail_honest_verification(
    issuer: OidcIssuer,
) -> None:
    jwks = issuer.jwks()
    claims = issuer.claims(sub="victim", nonce="n-1")

    unsigned = issuer.unsigned_token(claims)
    assert unsigned.endswith(".")
    assert decode_unverified(unsigned) == ({"alg": "none", "typ": "JWT"}, claims)
    assert decode_unverified(issuer.unsigned_token(header={"alg": "None"}))[0]["alg"] == "None"
    with pytest.raises(UnsupportedAlgorithmError):
        verify(unsigned, jwks)

    confused = issuer.hs256_with_public_key(claims)
    header, payload = decode_unverified(confused)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": issuer.current_kid}
    assert payload == claims
    signing_input, _, signature = confused.rpartition(".")
    pem = issuer.public_pem()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    expected = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert signature == b64url(expected)  # a verifier using the PEM as HMAC key would accept it
    with pytest.raises(UnsupportedAlgorithmError):
        verify(confused, jwks)

    foreign = issuer.foreign_key_token(claims)
    assert decode_unverified(foreign)[0]["kid"] == issuer.current_kid
    with pytest.raises(BadSignatureError):
        verify(foreign, jwks)

    unknown = issuer.token_with_unknown_kid()
    assert decode_unverified(unknown)[0]["kid"] not in issuer.published_kids
    with pytest.raises(InvalidKeyIdError):
        verify(unknown, jwks)


# -- authorization code flow ----------------------------------------------------------------------


def register(issuer: OidcIssuer, code: str = "code-1", secret: str | None = CLIENT_SECRET) -> str:
    """Registers `code` for a fresh verifier; returns the verifier."""
    verifier = secrets.token_urlsafe(48)
    issuer.register_code(
        code,
        code_challenge=pkce_s256(verifier),
        redirect_uri=REDIRECT_URI,
        client_id=CLIENT_ID,
        client_secret=secret,
        id_token=issuer.id_token(sub="g-1", extra={"email": "a@example.kr"}),
        access_token="at-1",
    )
    return verifier


def token_form(verifier: str, code: str = "code-1") -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }


def test_token_endpoint_redeems_a_code_once(issuer: OidcIssuer, http: httpx.Client) -> None:
    verifier = register(issuer)
    form = token_form(verifier)
    response = http.post(f"{issuer.base_url}/token", data=form)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "id_token"}
    assert (body["access_token"], body["token_type"]) == ("at-1", "Bearer")
    assert isinstance(body["expires_in"], int)
    assert decode_unverified(body["id_token"])[1]["sub"] == "g-1"
    assert issuer.last_token_request == form
    assert issuer.token_requests == 1

    again = http.post(f"{issuer.base_url}/token", data=form)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert issuer.token_requests == 2


def test_token_endpoint_takes_http_basic_client_auth(
    issuer: OidcIssuer, http: httpx.Client
) -> None:
    secret = "s3c:r/t+ 한"  # RFC 6749 §2.3.1: form-urlencoded before base64
    verifier = register(issuer, secret=secret)
    form = {k: v for k, v in token_form(verifier).items() if k != "client_secret"}
    credentials = f"{quote_plus(CLIENT_ID)}:{quote_plus(secret)}".encode()
    basic = f"Basic {base64.b64encode(credentials).decode()}"
    response = http.post(f"{issuer.base_url}/token", data=form, headers={"Authorization": basic})
    assert response.status_code == 200, response.text
    assert "client_secret" not in issuer.last_token_request


def test_public_client_needs_no_secret(issuer: OidcIssuer, http: httpx.Client) -> None:
    verifier = register(issuer, secret=None)
    form = {k: v for k, v in token_form(verifier).items() if k != "client_secret"}
    assert http.post(f"{issuer.base_url}/token", data=form).status_code == 200


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"code_verifier": "w" * 43}, 400, "invalid_grant"),
        ({"code_verifier": None}, 400, "invalid_grant"),
        ({"code_verifier": "short"}, 400, "invalid_grant"),
        ({"redirect_uri": "https://evil.example/callback"}, 400, "invalid_grant"),
        ({"code": "never-issued"}, 400, "invalid_grant"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_secret": None}, 401, "invalid_client"),
        ({"client_id": "other-client"}, 401, "invalid_client"),
        ({"grant_type": "refresh_token"}, 400, "unsupported_grant_type"),
        ({"redirect_uri": None}, 400, "invalid_request"),
    ],
)
def test_token_endpoint_errors(
    issuer: OidcIssuer,
    http: httpx.Client,
    change: dict[str, str | None],
    status: int,
    error: str,
) -> None:
    form: dict[str, str | None] = {**token_form(register(issuer)), **change}
    data = {k: v for k, v in form.items() if v is not None}
    response = http.post(f"{issuer.base_url}/token", data=data)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["error_description"], str)
    assert response.headers["cache-control"] == "no-store"


def test_token_endpoint_refuses_bad_basic_auth_and_json(
    issuer: OidcIssuer, http: httpx.Client
) -> None:
    form = {k: v for k, v in token_form(register(issuer)).items() if k != "client_secret"}
    url = f"{issuer.base_url}/token"
    wrong = http.post(url, data=form, auth=(CLIENT_ID, "wrong"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic")
    as_json = http.post(url, json=form)
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    assert http.get(url).status_code == 405
    # None of those redeemed the code.
    assert http.post(url, data=form, auth=(CLIENT_ID, CLIENT_SECRET)).status_code == 200


def test_a_pkce_mismatch_burns_the_code(issuer: OidcIssuer, http: httpx.Client) -> None:
    form = token_form(register(issuer))
    bad = http.post(f"{issuer.base_url}/token", data={**form, "code_verifier": "x" * 43})
    assert bad.json()["error"] == "invalid_grant"
    assert http.post(f"{issuer.base_url}/token", data=form).json()["error"] == "invalid_grant"


def test_userinfo_answers_for_issued_access_tokens(issuer: OidcIssuer, http: httpx.Client) -> None:
    register(issuer)
    url = f"{issuer.base_url}/userinfo"
    response = http.get(url, headers={"Authorization": "Bearer at-1"})
    assert response.status_code == 200
    assert response.json() == {"sub": "g-1", "email": "a@example.kr"}
    refused = http.get(url, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


# -- Kakao ----------------------------------------------------------------------------------------


def test_kakao_token_info_and_user(issuer: OidcIssuer, http: httpx.Client) -> None:
    issuer.register_kakao_user(
        "kakao-at-1",
        user_id=1234567890,
        app_id=98765,
        kakao_account=KAKAO_ACCOUNT,
        properties={"nickname": "라이언"},
    )
    bearer = {"Authorization": "Bearer kakao-at-1"}
    info = http.get(f"{issuer.api_base}/v1/user/access_token_info", headers=bearer)
    assert info.status_code == 200
    assert info.json() == {"id": 1234567890, "expires_in": 7199, "app_id": 98765}
    me = http.get(f"{issuer.api_base}/v2/user/me", headers=bearer)
    assert me.status_code == 200
    body = me.json()
    assert set(body) == {"id", "connected_at", "properties", "kakao_account"}
    assert body["id"] == 1234567890
    assert body["connected_at"].endswith("Z")
    assert body["properties"] == {"nickname": "라이언"}
    assert body["kakao_account"] == KAKAO_ACCOUNT
    assert http.post(f"{issuer.api_base}/v2/user/me", headers=bearer).json() == body


@pytest.mark.parametrize("path", ["/v1/user/access_token_info", "/v2/user/me"])
@pytest.mark.parametrize("authorization", ["Bearer unknown", None])
def test_kakao_refuses_unknown_tokens(
    issuer: OidcIssuer, http: httpx.Client, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = http.get(f"{issuer.api_base}{path}", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"msg": "this access token does not exist", "code": -401}


# -- faults and lifecycle -------------------------------------------------------------------------


def test_fail_next_answers_the_next_requests_with_the_status(
    issuer: OidcIssuer, http: httpx.Client
) -> None:
    issuer.fail_next(2)
    jwks_url = f"{issuer.base_url}/jwks"
    assert http.get(issuer.discovery_url).status_code == 503
    assert http.get(jwks_url).status_code == 503
    assert http.get(jwks_url).status_code == 200
    issuer.fail_next(1, status=500)
    assert http.post(f"{issuer.base_url}/token", data={}).status_code == 500
    # The counters count the failed attempts too.
    assert (issuer.discovery_fetches, issuer.jwks_fetches, issuer.token_requests) == (1, 2, 1)
    assert issuer.last_token_request == {}  # the token endpoint never saw that request


def test_stop_refuses_connections_and_start_serves_on_the_same_port(
    issuer: OidcIssuer, http: httpx.Client
) -> None:
    base_url = issuer.base_url
    port = int(base_url.rsplit(":", 1)[1])
    assert http.get(issuer.discovery_url).status_code == 200  # a pooled keep-alive connection
    issuer.stop()
    issuer.stop()  # idempotent
    assert_refused(port)
    with pytest.raises(httpx.ConnectError):
        http.get(issuer.discovery_url)
    issuer.start()
    issuer.start()  # idempotent
    assert issuer.base_url == base_url
    assert http.get(issuer.discovery_url).json()["issuer"] == base_url
    assert issuer.discovery_fetches == 2


def test_leaving_the_context_stops_the_server(http: httpx.Client) -> None:
    with OidcIssuer() as issuer:
        port = int(issuer.base_url.rsplit(":", 1)[1])
        assert http.get(f"{issuer.base_url}/jwks").status_code == 200
    assert_refused(port)
    assert not [t for t in threading.enumerate() if t.name == "oidc-stand-in" and t.is_alive()]


def test_concurrent_fetches_during_rotation(issuer: OidcIssuer) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def fetch() -> None:
        with httpx.Client(timeout=TIMEOUT) as client:
            for _ in range(10):
                response = client.get(f"{issuer.base_url}/jwks")
                with lock:
                    statuses.append(response.status_code if response.json()["keys"] else 0)

    workers = [threading.Thread(target=fetch) for _ in range(4)]
    for worker in workers:
        worker.start()
    kids = [issuer.rotate() for _ in range(2)]
    for worker in workers:
        worker.join(TIMEOUT)
    assert statuses == [200] * 40
    assert issuer.jwks_fetches == 40
    assert issuer.published_kids[-2:] == kids
