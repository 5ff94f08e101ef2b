"""The OIDC providers against a local issuer: the ID-token matrix, caching, code exchange."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from idservice.adapters.sns.google import LEGACY_ISSUER, GoogleProvider
from idservice.adapters.sns.http import DEFAULT_CACHE_SECONDS, cache_seconds
from idservice.adapters.sns.kakao import KakaoProvider
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.ports import SnsCredential
from tests.fakes.oidc import OidcIssuer
from tests.fakes.oidc_tokens import pkce_s256

CLIENT = "client-1"
NONCE = "nonce-123"
TIMEOUT = 5.0


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as running:
        yield running


@pytest.fixture
def google(issuer: OidcIssuer) -> Iterator[GoogleProvider]:
    provider = GoogleProvider(
        discovery_url=issuer.discovery_url, client_ids=(CLIENT,), client_secret="s"
    )
    yield provider
    provider.close()


def refused(provider: GoogleProvider | KakaoProvider, credential: SnsCredential) -> Reason:
    with pytest.raises(DomainError) as caught:
        provider.authenticate(credential, timeout=TIMEOUT)
    return caught.value.reason


def with_token(token: str, nonce: str = NONCE) -> SnsCredential:
    return SnsCredential(id_token=token, nonce=nonce)


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_a_valid_token_gives_the_profile(issuer: OidcIssuer, google: GoogleProvider) -> None:
    token = issuer.id_token(
        sub="g-1",
        aud=CLIENT,
        nonce=NONCE,
        extra={
            "email": "a@example.com",
            "email_verified": True,
            "name": "김",
            "picture": "https://p",
        },
    )
    profile = google.authenticate(with_token(token), timeout=TIMEOUT)
    assert (profile.subject, profile.email, profile.name, profile.picture_url) == (
        "g-1",
        "a@example.com",
        "김",
        "https://p",
    )


def test_the_sign_in_time_is_auth_time_else_iat(issuer: OidcIssuer, google: GoogleProvider) -> None:
    """Withdraw asks for a recent sign-in: the profile says when the person signed in."""
    now = int(time.time())
    plain = issuer.id_token(aud=CLIENT, nonce=NONCE, iat=now - 60)
    with_auth_time = issuer.id_token(aud=CLIENT, nonce=NONCE, extra={"auth_time": now - 7200})
    odd_auth_time = issuer.id_token(
        aud=CLIENT, nonce=NONCE, iat=now - 30, extra={"auth_time": float("nan")}
    )
    signed_in = [
        google.authenticate(with_token(token), timeout=TIMEOUT).signed_in_at
        for token in (plain, with_auth_time, odd_auth_time)
    ]
    assert signed_in == [
        datetime.fromtimestamp(moment, tz=UTC) for moment in (now - 60, now - 7200, now - 30)
    ]


def test_an_unverified_email_is_not_taken(issuer: OidcIssuer, google: GoogleProvider) -> None:
    token = issuer.id_token(
        aud=CLIENT, nonce=NONCE, extra={"email": "a@example.com", "email_verified": False}
    )
    assert google.authenticate(with_token(token), timeout=TIMEOUT).email == ""


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda i: i.id_token(
                aud=CLIENT, nonce=NONCE, iat=int(time.time()) - 4000, lifetime=3600
            ),
            id="expired",
        ),
        pytest.param(
            lambda i: i.id_token(aud=CLIENT, nonce=NONCE, iat=int(time.time()) + 900),
            id="issued-in-the-future",
        ),
        pytest.param(
            lambda i: i.id_token(aud=CLIENT, nonce=NONCE, extra={"iat": float("nan")}),
            id="iat-nan",
        ),
        pytest.param(
            lambda i: i.id_token(aud=CLIENT, nonce=NONCE, extra={"exp": float("inf")}),
            id="exp-infinite",
        ),
        pytest.param(
            lambda i: i.id_token(aud=CLIENT, nonce=NONCE, extra={"iat": -1.0e300}),
            id="iat-before-any-calendar",
        ),
        pytest.param(
            lambda i: i.id_token(aud=CLIENT, nonce=NONCE, issuer="https://evil.example"),
            id="wrong-iss",
        ),
        pytest.param(lambda i: i.id_token(aud="someone-else", nonce=NONCE), id="wrong-aud"),
        pytest.param(
            lambda i: i.id_token(aud=[CLIENT, "other"], nonce=NONCE), id="several-aud-without-azp"
        ),
        pytest.param(
            lambda i: i.id_token(aud=CLIENT, nonce=NONCE, extra={"azp": "other"}), id="foreign-azp"
        ),
        pytest.param(lambda i: i.id_token(aud=CLIENT), id="missing-nonce"),
        pytest.param(lambda i: i.id_token(aud=CLIENT, nonce="other-nonce"), id="wrong-nonce"),
        pytest.param(lambda i: i.unsigned_token(i.claims(aud=CLIENT, nonce=NONCE)), id="alg-none"),
        pytest.param(
            lambda i: i.unsigned_token(i.claims(aud=CLIENT, nonce=NONCE), {"alg": "None"}),
            id="alg-None",
        ),
        pytest.param(
            lambda i: i.hs256_with_public_key(i.claims(aud=CLIENT, nonce=NONCE)),
            id="hs256-keyed-with-the-public-key",
        ),
        pytest.param(
            lambda i: i.foreign_key_token(i.claims(aud=CLIENT, nonce=NONCE)),
            id="signed-by-a-foreign-key",
        ),
        pytest.param(lambda i: tampered(i.id_token(aud=CLIENT, nonce=NONCE)), id="tampered"),
        pytest.param(lambda i: "not.a.jwt", id="garbage"),
    ],
)
def test_the_id_token_matrix(issuer: OidcIssuer, google: GoogleProvider, make: object) -> None:
    token = make(issuer)  # type: ignore[operator]
    assert refused(google, with_token(token)) is Reason.SNS_TOKEN_INVALID


def test_a_nonce_the_app_did_not_send_is_refused(
    issuer: OidcIssuer, google: GoogleProvider
) -> None:
    token = issuer.id_token(aud=CLIENT, nonce=NONCE)
    assert refused(google, with_token(token, nonce="")) is Reason.SNS_TOKEN_INVALID


def test_azp_and_several_audiences(issuer: OidcIssuer, google: GoogleProvider) -> None:
    token = issuer.id_token(aud=[CLIENT, "other"], nonce=NONCE, extra={"azp": CLIENT})
    assert google.authenticate(with_token(token), timeout=TIMEOUT).subject == "sub-1"


def test_googles_legacy_issuer_is_accepted(issuer: OidcIssuer, google: GoogleProvider) -> None:
    token = issuer.id_token(aud=CLIENT, nonce=NONCE, issuer=LEGACY_ISSUER)
    assert google.authenticate(with_token(token), timeout=TIMEOUT).subject == "sub-1"


def test_kakao_accepts_both_configured_app_keys(issuer: OidcIssuer) -> None:
    kakao = KakaoProvider(
        discovery_url=issuer.discovery_url,
        client_ids=("rest-key", "native-key"),
        api_base=issuer.api_base,
        app_id="1",
    )
    try:
        for key in ("rest-key", "native-key"):
            token = issuer.id_token(aud=key, nonce=NONCE, extra={"nickname": "라이언"})
            assert kakao.authenticate(with_token(token), timeout=TIMEOUT).nickname == "라이언"
        # Kakao's legacy issuer forms are not Google's: only the discovery issuer counts.
        token = issuer.id_token(aud="rest-key", nonce=NONCE, issuer=LEGACY_ISSUER)
        assert refused(kakao, with_token(token)) is Reason.SNS_TOKEN_INVALID
    finally:
        kakao.close()


@pytest.mark.parametrize(
    ("verified", "email"),
    [(None, "k@example.com"), (True, "k@example.com"), (False, ""), ("false", "")],
)
def test_a_kakao_id_token_email_marked_unverified_is_not_taken(
    issuer: OidcIssuer, verified: object, email: str
) -> None:
    kakao = KakaoProvider(
        discovery_url=issuer.discovery_url,
        client_ids=("rest-key",),
        api_base=issuer.api_base,
        app_id="1",
    )
    claims: dict[str, object] = {"email": "k@example.com"}
    if verified is not None:
        claims["email_verified"] = verified
    try:
        token = issuer.id_token(aud="rest-key", nonce=NONCE, extra=claims)
        assert kakao.authenticate(with_token(token), timeout=TIMEOUT).email == email
    finally:
        kakao.close()


def test_discovery_and_keys_are_fetched_once_and_cached(
    issuer: OidcIssuer, google: GoogleProvider
) -> None:
    for _ in range(3):
        google.authenticate(with_token(issuer.id_token(aud=CLIENT, nonce=NONCE)), timeout=TIMEOUT)
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


def test_outages_keep_cached_keys_working(issuer: OidcIssuer, google: GoogleProvider) -> None:
    google.authenticate(with_token(issuer.id_token(aud=CLIENT, nonce=NONCE)), timeout=TIMEOUT)
    issuer.stop()
    try:
        token = issuer.id_token(aud=CLIENT, nonce=NONCE)
        assert google.authenticate(with_token(token), timeout=TIMEOUT).subject == "sub-1"
    finally:
        issuer.start()


def test_a_provider_never_reached_is_unavailable(
    issuer: OidcIssuer, google: GoogleProvider
) -> None:
    token = issuer.id_token(aud=CLIENT, nonce=NONCE)
    issuer.stop()
    try:
        assert refused(google, with_token(token)) is Reason.UPSTREAM_UNAVAILABLE
    finally:
        issuer.start()
    issuer.fail_next(2, status=503)
    assert refused(google, with_token(token)) is Reason.UPSTREAM_UNAVAILABLE


def test_code_exchange_with_pkce(issuer: OidcIssuer, google: GoogleProvider) -> None:
    verifier = "x" * 43
    issuer.register_code(
        "c1",
        code_challenge=pkce_s256(verifier),
        redirect_uri="https://app/cb",
        client_id=CLIENT,
        client_secret="s",
        id_token=issuer.id_token(
            aud=CLIENT, extra={"email": "c@example.com", "email_verified": True}
        ),
    )
    credential = SnsCredential(
        authorization_code="c1", code_verifier=verifier, redirect_uri="https://app/cb"
    )
    assert google.authenticate(credential, timeout=TIMEOUT).email == "c@example.com"
    assert issuer.last_token_request["client_secret"] == "s"
    # Used once.
    assert refused(google, credential) is Reason.SNS_TOKEN_INVALID


def well_formed_token() -> str:
    def b64(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'RS256', 'kid': 'k1'})}.{b64({'sub': 's'})}.c2ln"


def test_a_trickling_provider_is_cut_off_at_the_callers_deadline() -> None:
    """httpx's timeouts bound each read; the provider bounds the whole answer by the deadline."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{")
            while not stop.wait(0.1):
                try:
                    connection.sendall(b" ")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    provider = GoogleProvider(
        discovery_url=f"http://127.0.0.1:{port}/.well-known/openid-configuration",
        client_ids=(CLIENT,),
    )
    started = time.monotonic()
    try:
        with pytest.raises(DomainError) as caught:
            provider.authenticate(with_token(well_formed_token()), timeout=1.0)
        # The answer never completes; without the bound this call would hang for as long as
        # the provider trickles.
        assert caught.value.reason is Reason.UPSTREAM_UNAVAILABLE
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        provider.close()
        listener.close()


class _TokenEndpoint(ThreadingHTTPServer):
    """Discovery pointing at itself, and a token endpoint answering as `answer` says."""

    daemon_threads = True

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.stop = threading.Event()
        super().__init__(("127.0.0.1", 0), _TokenHandler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _TokenHandler(BaseHTTPRequestHandler):
    server: _TokenEndpoint

    def do_GET(self) -> None:
        base = self.server.base
        self._send(
            json.dumps(
                {
                    "issuer": base,
                    "jwks_uri": base + "/jwks",
                    "token_endpoint": base + "/token",
                    "authorization_endpoint": base + "/auth",
                }
            ).encode()
        )

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        answer = self.server.answer
        token = {"access_token": "at", "token_type": "Bearer", "id_token": "x.y.z"}
        if answer == "huge":
            self._send(json.dumps({**token, "padding": "x" * (2 * 1024 * 1024)}).encode())
        elif answer == "nested":
            self._send(b"[" * 100_000 + b"]" * 100_000)
        elif answer == "expires_in_list":
            self._send(json.dumps({**token, "expires_in": [1]}).encode())
        elif answer == "expires_in_infinite":
            self._send(json.dumps({**token, "expires_in": float("inf")}).encode())
        elif answer == "trickle":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{")
            while not self.server.stop.wait(0.1):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    "answer", ["huge", "nested", "expires_in_list", "expires_in_infinite", "trickle"]
)
def test_a_token_endpoint_answering_badly_is_unavailable_within_bounds(answer: str) -> None:
    """authlib reads the token answer: it is still cut off past the size bound or at the
    caller's deadline, and a malformed one is the provider's fault, never an INTERNAL."""
    server = _TokenEndpoint(answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    provider = GoogleProvider(
        discovery_url=server.base + "/.well-known/openid-configuration", client_ids=(CLIENT,)
    )
    credential = SnsCredential(
        authorization_code="c1", code_verifier="x" * 43, redirect_uri="https://app/cb"
    )
    started = time.monotonic()
    try:
        with pytest.raises(DomainError) as caught:
            provider.authenticate(credential, timeout=1.0)
        assert caught.value.reason is Reason.UPSTREAM_UNAVAILABLE
        assert time.monotonic() - started < 10  # a hang guard: trickling ends at the deadline
    finally:
        server.stop.set()
        provider.close()
        server.shutdown()
        server.server_close()


def test_a_cache_lifetime_in_other_digits_is_the_default() -> None:
    """`str.isdigit` is true of superscript digits that `float` refuses."""
    assert cache_seconds(httpx.Headers([(b"cache-control", "max-age=\u00b2".encode())])) == (
        DEFAULT_CACHE_SECONDS
    )
    assert cache_seconds(httpx.Headers({"cache-control": "max-age=120"})) == 120.0
