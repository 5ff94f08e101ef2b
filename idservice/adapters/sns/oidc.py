"""One OpenID Connect base for every SNS provider: discovery, JWKS, ID tokens, code exchange.

Each check is a small method citing OpenID Connect Core 1.0 §3.1.3.7 (ID Token Validation).
Providers subclass `OidcProvider` in one file each (`google.py`, `kakao.py`) and add what is
theirs: extra issuers, the profile they can read.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard

import authlib.deprecate  # noqa: F401 - imported first: it installs an "always" warning filter
import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from idservice.adapters.sns.http import (
    MIN_CACHE_SECONDS,
    BoundedTransport,
    Deadline,
    get_json,
    token_invalid,
    unavailable,
)
from idservice.adapters.trace_context import EVENT_HOOKS
from idservice.config import is_loopback_url
from idservice.domain.errors import DomainError
from idservice.domain.sns import BEARER_TOKEN, SnsProfile, SnsProvider
from idservice.service_layer.ports import SnsCredential, SnsIdentityProvider

with warnings.catch_warnings():
    # authlib prefers the `httpx2` fork and warns when it uses httpx, which this project pins.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import OAuth2Client, OAuthError

log = logging.getLogger(__name__)

# OIDC Core §3.1.3.7 item 6: providers sign ID tokens with RS256; nothing else is accepted
# (`none`, HS256 keyed with the public key and other algorithm tricks fail here).
ALGORITHM = "RS256"
# Clock skew allowed on exp and iat (the issue of SNS login: at most 5 minutes).
CLOCK_SKEW_SECONDS = 300
# An unknown `kid` makes the JWKS be fetched again at most this often: a rotated key is picked up,
# a flood of forged kids does not hammer the provider.
KID_REFETCH_SECONDS = 60.0
# Bounds on what a caller may hand us.
MAX_TOKEN_LENGTH = 16 * 1024
MAX_SUBJECT_LENGTH = 255
# The largest time claim taken as a time (9999-12-31T23:59:59Z, datetime's last second).
MAX_NUMERIC_DATE = 253_402_300_799


@dataclass(frozen=True)
class OidcSettings:
    """One provider's configuration (contract §1 IDSERVICE_<PROVIDER>_*)."""

    provider: SnsProvider
    discovery_url: str
    client_ids: tuple[str, ...]
    client_secret: str | None = None
    # Issuers accepted besides the discovery document's `issuer` (Google's legacy form).
    extra_issuers: tuple[str, ...] = ()


@dataclass
class _Cached:
    value: Any
    fresh_until: float
    fetched_at: float


@dataclass(frozen=True)
class VerifiedIdToken:
    """The claims of an ID token that passed every check."""

    claims: Mapping[str, Any] = field(repr=False)

    @property
    def subject(self) -> str:
        return str(self.claims["sub"])

    @property
    def signed_in_at(self) -> datetime:
        """When the person authenticated (OIDC Core §2 `auth_time`), else when the token was
        issued (`iat`, checked to be a number by `_check_times`)."""
        auth_time = self.claims.get("auth_time")
        moment = auth_time if _is_seconds(auth_time) else self.claims["iat"]
        return datetime.fromtimestamp(moment, tz=UTC)

    def text(self, name: str) -> str:
        """A string claim, or "" when absent; a claim of another type is a malformed answer."""
        value = self.claims.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise token_invalid(f"claim {name} is not a string")
        return value


class OidcProvider(SnsIdentityProvider):
    """Verifies a provider's ID tokens and exchanges its authorization codes."""

    def __init__(self, settings: OidcSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.provider = settings.provider
        self._clock = clock
        self._http = httpx.Client(follow_redirects=False, event_hooks=EVENT_HOOKS)
        self._lock = threading.Lock()
        self._discovery: _Cached | None = None
        self._jwks: _Cached | None = None
        # When an unknown kid last made us fetch the JWKS (rotation), on the monotonic clock.
        self._kid_refetched_at: float | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def close(self) -> None:
        self._http.close()

    # -- the port ----------------------------------------------------------------------------
    def authenticate(self, credential: SnsCredential, *, timeout: float) -> SnsProfile:
        deadline = Deadline.after(timeout)
        access_token = credential.kakao_access_token
        exchanged = False
        if credential.id_token:
            token = self.verify_id_token(
                credential.id_token, nonce=credential.nonce, deadline=deadline
            )
        else:
            id_token, access_token = self.exchange_code(credential, deadline=deadline)
            exchanged = True
            token = self.verify_id_token(id_token, nonce=credential.nonce, deadline=deadline)
        profile = self.profile(
            token, access_token=access_token, exchanged=exchanged, deadline=deadline
        )
        return dataclasses.replace(profile, signed_in_at=token.signed_in_at)

    def profile(
        self, token: VerifiedIdToken, *, access_token: str, exchanged: bool, deadline: Deadline
    ) -> SnsProfile:
        """What the provider says about the person (subclasses read more)."""
        return SnsProfile(provider=self.provider, subject=token.subject)

    # -- ID tokens (OIDC Core §3.1.3.7) ------------------------------------------------------
    def verify_id_token(self, token: str, *, nonce: str, deadline: Deadline) -> VerifiedIdToken:
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise token_invalid("not a compact JWT")
        header = _header(token)
        self._check_header(header)
        key = self._key(str(header["kid"]), deadline)
        try:
            decoded = jwt.decode(token, key, algorithms=[ALGORITHM])
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise token_invalid(f"signature or payload ({type(exc).__name__})") from None
        claims = decoded.claims
        discovery = self._discovery_document(deadline)
        self._check_issuer(claims, str(discovery["issuer"]))
        self._check_audience(claims)
        self._check_times(claims)
        self._check_nonce(claims, nonce)
        self._check_subject(claims)
        return VerifiedIdToken(claims)

    @staticmethod
    def _check_header(header: Mapping[str, Any]) -> None:
        """§3.1.3.7 item 7: the algorithm is the one the provider uses (RS256), named with a kid."""
        if header.get("alg") != ALGORITHM:
            raise token_invalid("alg is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise token_invalid("no usable kid")
        if "crit" in header or "jku" in header or "jwk" in header or "x5u" in header:
            raise token_invalid("header names keys or extensions we do not honour")

    def _check_issuer(self, claims: Mapping[str, Any], issuer: str) -> None:
        """§3.1.3.7 item 2: iss exactly the discovery document's issuer (or a legacy form)."""
        accepted = (issuer, *self.settings.extra_issuers)
        if claims.get("iss") not in accepted:
            raise token_invalid("iss")

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        """§3.1.3.7 items 3-5: aud holds one of our client ids; with several, azp is ours."""
        ours = self.settings.client_ids
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise token_invalid("aud is malformed")
        if not any(a in ours for a in audiences):
            raise token_invalid("aud is not ours")
        azp = claims.get("azp")
        if len(audiences) > 1 and azp is None:
            raise token_invalid("several audiences without azp")
        if azp is not None and azp not in ours:
            raise token_invalid("azp is not ours")

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        """§3.1.3.7 items 9-10: not expired, not issued in the future (5 minutes of skew)."""
        now = self._clock()
        exp, iat = claims.get("exp"), claims.get("iat")
        if not _is_seconds(exp) or not _is_seconds(iat):
            raise token_invalid("exp or iat missing or not a number")
        if now >= exp + CLOCK_SKEW_SECONDS:
            raise token_invalid("expired")
        if iat > now + CLOCK_SKEW_SECONDS:
            raise token_invalid("issued in the future")
        nbf = claims.get("nbf")
        if nbf is not None and (not _is_seconds(nbf) or nbf > now + CLOCK_SKEW_SECONDS):
            raise token_invalid("not yet valid")

    @staticmethod
    def _check_nonce(claims: Mapping[str, Any], nonce: str) -> None:
        """§3.1.3.7 item 11: the nonce the app sent must come back; one we did not send fails."""
        returned = claims.get("nonce")
        if not nonce and returned is None:
            return
        if not nonce or not isinstance(returned, str):
            raise token_invalid("nonce missing on one side")
        if not hmac.compare_digest(returned.encode(), nonce.encode()):
            raise token_invalid("nonce differs")

    @staticmethod
    def _check_subject(claims: Mapping[str, Any]) -> None:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT_LENGTH:
            raise token_invalid("sub")
        if not sub.isprintable():
            raise token_invalid("sub is not printable")

    # -- authorization code (RFC 6749 §4.1.3, RFC 7636) ----------------------------------------
    def exchange_code(self, credential: SnsCredential, *, deadline: Deadline) -> tuple[str, str]:
        """The ID token and access token of an authorization code, exchanged with PKCE."""
        endpoint = str(self._discovery_document(deadline)["token_endpoint"])
        client = OAuth2Client(
            client_id=self.settings.client_ids[0],
            client_secret=self.settings.client_secret,
            token_endpoint_auth_method="client_secret_post"
            if self.settings.client_secret
            else "none",
            timeout=max(deadline.left(), 0.05),
            follow_redirects=False,
            # The answer is read by authlib: bounded in size and by the deadline all the same.
            transport=BoundedTransport(deadline),
        )
        try:
            with client:
                token = client.fetch_token(
                    endpoint,
                    grant_type="authorization_code",
                    code=credential.authorization_code,
                    code_verifier=credential.code_verifier,
                    redirect_uri=credential.redirect_uri,
                )
        except OAuthError as exc:
            raise token_invalid(f"token endpoint refused the code ({exc.error})") from None
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code < 500:
                raise token_invalid(f"token endpoint answered {exc.response.status_code}") from None
            raise unavailable(self.provider, f"token endpoint {exc.response.status_code}") from None
        except (httpx.HTTPError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            # authlib reads the answer's JSON and fields (`expires_in`) as they come: a
            # malformed answer is the provider's fault, never an INTERNAL.
            raise unavailable(self.provider, f"token endpoint ({type(exc).__name__})") from None
        id_token, access_token = token.get("id_token"), token.get("access_token", "")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise unavailable(self.provider, "token response without an id_token")
        if access_token and not BEARER_TOKEN.fullmatch(access_token):
            # It would go into an Authorization header (Kakao's user API).
            raise unavailable(self.provider, "token response's access_token is no bearer token")
        return id_token, access_token

    # -- discovery and keys ----------------------------------------------------------------------
    def _may_follow(self, url: str) -> bool:
        """A URL the discovery document gives is followed over https, or over http to loopback
        (a local stand-in). Plaintext to another host only when the discovery document itself
        came that way, which production refuses (IDSERVICE_*_DISCOVERY_URL): keys and codes
        never travel in the clear because a provider's document said so."""
        if url.lower().startswith("https://") or (
            url.lower().startswith("http://") and is_loopback_url(url)
        ):
            return True
        discovery = self.settings.discovery_url
        return url.lower().startswith("http://") and (
            discovery.lower().startswith("http://") and not is_loopback_url(discovery)
        )

    def _discovery_document(self, deadline: Deadline) -> Mapping[str, Any]:
        with self._lock:
            cached = self._discovery
        if cached is not None and cached.fresh_until > time.monotonic():
            return dict(cached.value)
        try:
            document, max_age = self.get_json(self.settings.discovery_url, deadline)
            for name in ("issuer", "jwks_uri", "token_endpoint"):
                if not isinstance(document.get(name), str) or not document[name]:
                    raise ValueError(f"discovery document has no {name}")
            for name in ("jwks_uri", "token_endpoint"):
                if not self._may_follow(document[name]):
                    raise ValueError(f"discovery document's {name} is plaintext http")
        except (DomainError, ValueError) as exc:
            if cached is None:
                if isinstance(exc, DomainError):
                    raise
                raise unavailable(self.provider, str(exc)) from None
            # Stale beats nothing while the provider is down; ask again in a minute, not on
            # every call (each would wait for the provider).
            cached.fresh_until = time.monotonic() + MIN_CACHE_SECONDS
            return dict(cached.value)
        now = time.monotonic()
        with self._lock:
            self._discovery = _Cached(document, now + max_age, now)
        return document

    def _key(self, kid: str, deadline: Deadline) -> RSAKey:
        """The RS256 key `kid` from the JWKS; an unknown kid refetches at most once a minute."""
        with self._lock:
            cached = self._jwks
            now = time.monotonic()
            stale = cached is None or cached.fresh_until <= now
            unknown = cached is None or _find(cached.value, kid) is None
            refetch_for_kid = (
                unknown
                and not stale
                and (
                    self._kid_refetched_at is None
                    or now - self._kid_refetched_at >= KID_REFETCH_SECONDS
                )
            )
            if refetch_for_kid:
                self._kid_refetched_at = now
        if stale or refetch_for_kid:
            try:
                cached = self._fetch_jwks(deadline)
            except DomainError:
                if cached is None or _find(cached.value, kid) is None:
                    raise
                # The provider is down: the keys we hold still verify, and are kept another
                # minute before the next try (each try would make a login wait for it).
                cached.fresh_until = time.monotonic() + MIN_CACHE_SECONDS
        assert cached is not None
        key = _find(cached.value, kid)
        if key is None:
            raise token_invalid("unknown kid")
        return key

    def _fetch_jwks(self, deadline: Deadline) -> _Cached:
        uri = str(self._discovery_document(deadline)["jwks_uri"])
        document, max_age = self.get_json(uri, deadline)
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise unavailable(self.provider, "JWKS has no keys")
        usable = []
        for entry in entries:
            # A key of a type or shape we do not use (a new algorithm the provider publishes)
            # is skipped; it must not make the other keys unusable.
            if not isinstance(entry, dict) or entry.get("kty") != "RSA":
                continue
            try:
                usable.append(RSAKey.import_key(entry))
            except (JoseError, ValueError, TypeError, KeyError):
                continue
        keys = KeySet(usable)  # type: ignore[arg-type]
        now = time.monotonic()
        fetched = _Cached(keys, now + max_age, now)
        with self._lock:
            self._jwks = fetched
        return fetched

    def get_json(
        self, url: str, deadline: Deadline, *, bearer: str = ""
    ) -> tuple[dict[str, Any], float]:
        """GET a JSON object from this provider within the deadline (see `http.get_json`)."""
        return get_json(self._http, url, deadline, provider=self.provider, bearer=bearer)


def _header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWT, read before any key is chosen."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise token_invalid("not three parts")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw)
    except (ValueError, RecursionError):
        raise token_invalid("header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise token_invalid("header is not an object")
    return header


def _find(keys: KeySet, kid: str) -> RSAKey | None:
    """The RSA signing key with this kid, if the set has one."""
    for key in keys:
        if key.kid != kid or not isinstance(key, RSAKey):
            continue
        if key.get("use", "sig") != "sig" or key.get("alg", ALGORITHM) != ALGORITHM:
            continue
        return key
    return None


def _is_seconds(value: object) -> TypeGuard[int | float]:
    """A NumericDate (RFC 7519 §2) a datetime can hold: JSON parsing also yields NaN, infinities
    and numbers far past any calendar."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_NUMERIC_DATE
    )
