"""An OpenID Connect issuer stand-in (Google-like, plus Kakao's REST API) on 127.0.0.1.

A real HTTP server speaking the wire formats an OIDC relying party meets: the discovery document
(OpenID Connect Discovery 1.0 §4), the JWKS (RFC 7517), RS256 ID tokens, the token endpoint of
the authorization-code flow with PKCE (RFC 6749 §4.1.3, §5; RFC 7636 §4.6), `/userinfo` for
the access tokens it issued, and Kakao's `/v1/user/access_token_info` and `/v2/user/me`::

    with OidcIssuer(issuer="https://accounts.google.com") as issuer:
        token = issuer.id_token(sub="g-1", aud="client-1", nonce="n-1", extra={"email": "a@b.kr"})
        challenge = pkce_s256(verifier)  # from tests.fakes.oidc_tokens
        issuer.register_code("code-1", code_challenge=challenge, redirect_uri=uri,
                             client_id="client-1", client_secret="s3cret", id_token=token)
        ... point the service at issuer.discovery_url ...
        issuer.rotate()           # new tokens under a new kid; the old key stays published
        issuer.fail_next(2)       # the next two requests (any path) answer 503
        issuer.stop(); issuer.start()   # down (connections refused), then up on the same port
        assert issuer.jwks_fetches == 1

Counters count every request to their path, including those `fail_next` answered. Standard
library and joserfc only, so it runs in the test process beside a server subprocess.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes import oidc_tokens as tokens

DISCOVERY_PATH = "/.well-known/openid-configuration"
KAKAO_TOKEN_INFO_PATH = "/v1/user/access_token_info"
KAKAO_ME_PATH = "/v2/user/me"
ACCESS_TOKEN_EXPIRES_IN = 3599
KAKAO_EXPIRES_IN = 7199
KAKAO_CONNECTED_AT = "2026-01-05T09:00:00Z"
_POLL_INTERVAL = 0.02
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
_NOT_USERINFO = frozenset({"iss", "aud", "exp", "iat", "nonce", "azp", "at_hash"})
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_METHODS = {
    DISCOVERY_PATH: ("GET",),
    "/jwks": ("GET",),
    "/token": ("POST",),
    "/userinfo": ("GET",),
    KAKAO_TOKEN_INFO_PATH: ("GET",),
    KAKAO_ME_PATH: ("GET", "POST"),  # Kakao takes both
}

# (HTTP status, extra headers, body)
Response = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class _Grant:
    code_challenge: str
    redirect_uri: str
    client_id: str
    id_token: str
    access_token: str


@dataclass(frozen=True)
class _KakaoUser:
    user_id: int
    app_id: int
    kakao_account: dict[str, object]
    properties: dict[str, object]


class _Server(ThreadingHTTPServer):
    """Tracks open connections so stop() can cut keep-alive ones too, as a dead host would."""

    daemon_threads = True
    allow_reuse_address = True  # SO_REUSEADDR: start() rebinds the port despite TIME_WAIT

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for connection in open_now:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (and stop() cutting connections) are normal; a bug still prints.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class OidcIssuer(tokens.SigningKeys):
    """A thread-served OIDC issuer on 127.0.0.1; start with `with` or start()/stop()."""

    def __init__(
        self,
        *,
        issuer: str | None = None,
        cache_control: str | None = "max-age=3600",
        port: int = 0,
    ) -> None:
        # `issuer`: the `iss` the discovery document announces (and ID tokens carry by default).
        # `cache_control`: the Cache-Control header of discovery and JWKS (None: no header).
        super().__init__()
        self._lock = threading.Lock()
        self._life = threading.Lock()
        self._issuer = issuer
        self._cache_control = cache_control
        self._grants: dict[str, _Grant] = {}
        self._clients: dict[str, str | None] = {}
        self._userinfo: dict[str, dict[str, object]] = {}
        self._kakao: dict[str, _KakaoUser] = {}
        self._failures: list[int] = []
        self._counts = {"discovery": 0, "jwks": 0, "token": 0}
        self._last_token_request: dict[str, str] = {}
        # Fields of the discovery document to announce instead (e.g. a plaintext jwks_uri).
        self.discovery_overrides: dict[str, str] = {}
        # `port` 0 picks a free one (tests); scripts/oidc_issuer.py asks for a fixed one.
        self._server: _Server | None = _Server(port, _make_handler(self))
        self._port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> OidcIssuer:
        """Serve (again): after stop(), the listening socket is rebound on the same port."""
        with self._life:
            if self._server is None:
                self._server = _Server(self._port, _make_handler(self))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": _POLL_INTERVAL},
                    name="oidc-stand-in",
                    daemon=True,
                )
                self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and cut open connections: clients get refused."""
        with self._life:
            server, self._server = self._server, None
            if server is None:
                return
            if self._thread is not None:
                server.shutdown()
                self._thread.join()
                self._thread = None
            server.server_close()
            server.drop_connections()

    def __enter__(self) -> OidcIssuer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses, counters, faults ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}{DISCOVERY_PATH}"

    @property
    def issuer(self) -> str:
        """The announced issuer: the constructor's `issuer`, else base_url."""
        return self._issuer if self._issuer is not None else self.base_url

    @property
    def api_base(self) -> str:
        """Base URL of the Kakao REST API paths (kapi.kakao.com in production)."""
        return self.base_url

    @property
    def discovery_fetches(self) -> int:
        with self._lock:
            return self._counts["discovery"]

    @property
    def jwks_fetches(self) -> int:
        with self._lock:
            return self._counts["jwks"]

    @property
    def token_requests(self) -> int:
        with self._lock:
            return self._counts["token"]

    @property
    def last_token_request(self) -> dict[str, str]:
        """The form fields of the last request the token endpoint handled (a copy)."""
        with self._lock:
            return dict(self._last_token_request)

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next `n` requests, whatever their path, with `status`."""
        with self._lock:
            self._failures.extend([status] * n)

    def set_cache_control(self, value: str | None) -> None:
        with self._lock:
            self._cache_control = value

    # -- authorization code flow ----------------------------------------------------------------

    def register_code(
        self,
        code: str,
        *,
        code_challenge: str,
        redirect_uri: str,
        client_id: str,
        client_secret: str | None,
        id_token: str,
        access_token: str | None = None,
    ) -> str:
        """Let `/token` redeem `code` once; returns the access token it will issue (default
        `at-<random>`), which `/userinfo` then accepts. `client_secret` None: a public client."""
        token = access_token if access_token is not None else f"at-{secrets.token_urlsafe(16)}"
        try:
            _, claims = tokens.decode_unverified(id_token)
        except ValueError:  # a deliberately malformed id_token
            claims = {}
        with self._lock:
            self._grants[code] = _Grant(code_challenge, redirect_uri, client_id, id_token, token)
            self._clients[client_id] = client_secret
            self._userinfo[token] = {k: v for k, v in claims.items() if k not in _NOT_USERINFO}
        return token

    def register_kakao_user(
        self,
        access_token: str,
        *,
        user_id: int,
        app_id: int,
        kakao_account: dict[str, object],
        properties: dict[str, object] | None = None,
    ) -> None:
        """Let the Kakao API paths accept `access_token` as this user's."""
        user = _KakaoUser(user_id, app_id, dict(kakao_account), dict(properties or {}))
        with self._lock:
            self._kakao[access_token] = user

    # -- serving --------------------------------------------------------------------------------

    def _respond(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Count, apply fail_next, then route to the endpoint."""
        counter = {DISCOVERY_PATH: "discovery", "/jwks": "jwks", "/token": "token"}.get(path)
        with self._lock:
            if counter is not None:
                self._counts[counter] += 1
            failure = self._failures.pop(0) if self._failures else None
            cache = {} if self._cache_control is None else {"Cache-Control": self._cache_control}
        if failure is not None:
            return _json(failure, {"error": "temporarily_unavailable"})
        allowed = _METHODS.get(path)
        if allowed is None:
            return _json(404, {"error": "not_found"})
        if method not in allowed:
            return _json(405, {"error": "method_not_allowed"}, {"Allow": ", ".join(allowed)})
        authorization = headers.get("authorization")
        if path == DISCOVERY_PATH:
            return _json(200, self._discovery(), cache)
        if path == "/jwks":
            return _json(200, self.jwks(), cache)
        if path == "/token":
            return self._token(headers.get("content-type", ""), authorization, body)
        if path == "/userinfo":
            return self._userinfo_answer(authorization)
        return self._kakao_answer(path, authorization)

    def _discovery(self) -> dict[str, object]:
        """The discovery document: where the endpoints are and what they support."""
        base = self.base_url
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/authorize",  # not served: tests register codes
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            **self.discovery_overrides,
        }

    def _token(self, content_type: str, authorization: str | None, body: bytes) -> Response:
        """Redeem an authorization code (RFC 6749 §4.1.3) checking client auth and PKCE S256."""
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        with self._lock:
            self._last_token_request = dict(form)
        if content_type.partition(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "The body must be form-encoded.")
        if "grant_type" not in form or "code" not in form:
            return _oauth_error(400, "invalid_request", "Missing grant_type or code.")
        if form["grant_type"] != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "Only authorization_code.")
        basic = tokens.basic_credentials(authorization)
        if basic is not None and "client_secret" in form:
            return _oauth_error(400, "invalid_request", "More than one client authentication.")
        client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
        with self._lock:
            known = client_id is not None and client_id in self._clients
            expected = self._clients.get(client_id or "")
        malformed_header = authorization is not None and basic is None
        if malformed_header or not known or (expected is not None and secret != expected):
            return _invalid_client(authorization)
        with self._lock:
            grant = self._grants.pop(form["code"], None)  # single use, whatever comes next
        if grant is None:
            return _oauth_error(400, "invalid_grant", "The code is unknown or already used.")
        if grant.client_id != client_id:
            return _oauth_error(400, "invalid_grant", "The code was issued to another client.")
        if "redirect_uri" not in form:
            return _oauth_error(400, "invalid_request", "Missing redirect_uri.")
        if form["redirect_uri"] != grant.redirect_uri:
            return _oauth_error(400, "invalid_grant", "redirect_uri does not match.")
        verifier = form.get("code_verifier")
        if verifier is None or not _VERIFIER.fullmatch(verifier):
            return _oauth_error(400, "invalid_grant", "Missing or malformed code_verifier.")
        if tokens.pkce_s256(verifier) != grant.code_challenge:
            return _oauth_error(400, "invalid_grant", "code_verifier does not match.")
        answer = {
            "access_token": grant.access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_EXPIRES_IN,
            "id_token": grant.id_token,
        }
        return _json(200, answer, _NO_STORE)

    def _userinfo_answer(self, authorization: str | None) -> Response:
        """The ID token's user claims for an access token /token issued (RFC 6750 errors)."""
        with self._lock:
            claims = self._userinfo.get(tokens.bearer_token(authorization) or "")
        if claims is None:
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return _json(401, {"error": "invalid_token"}, challenge)
        return _json(200, claims)

    def _kakao_answer(self, path: str, authorization: str | None) -> Response:
        """Kakao's token info (`id`, `expires_in`, `app_id`) or user (`/v2/user/me`) answers."""
        with self._lock:
            user = self._kakao.get(tokens.bearer_token(authorization) or "")
        if user is None:
            return _json(401, {"msg": "this access token does not exist", "code": -401})
        if path == KAKAO_TOKEN_INFO_PATH:
            info = {"id": user.user_id, "expires_in": KAKAO_EXPIRES_IN, "app_id": user.app_id}
            return _json(200, info)
        me = {
            "id": user.user_id,
            "connected_at": KAKAO_CONNECTED_AT,
            "properties": user.properties,
            "kakao_account": user.kakao_account,
        }
        return _json(200, me)


def _json(status: int, body: object, headers: Mapping[str, str] | None = None) -> Response:
    raw = json.dumps(body, ensure_ascii=False).encode()
    return status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, raw


def _oauth_error(status: int, error: str, description: str) -> Response:
    """RFC 6749 §5.2."""
    return _json(status, {"error": error, "error_description": description}, _NO_STORE)


def _invalid_client(authorization: str | None) -> Response:
    status, headers, body = _oauth_error(401, "invalid_client", "Client authentication failed.")
    if authorization is not None:
        headers["WWW-Authenticate"] = 'Basic realm="token"'
    return status, headers, body


def _make_handler(issuer: OidcIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so client connection pools are exercised
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            path = urlsplit(self.path).path
            status, extra, raw = issuer._respond(self.command, path, headers, body)
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except OSError:  # the client hung up, or stop() cut the connection
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
