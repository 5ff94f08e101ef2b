"""In-memory security ports: a fast password hasher, opaque access tokens, keyed secrets, a clock.

Each keeps the observable rules of its real adapter (`idservice.adapters.hashing`, `.tokens`,
`.crypto`) that use cases depend on, without the cost: NFKC passwords, whole-second token
expiry, purpose-separated hashes, seals that open only with the same secret and context.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import unicodedata
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

from idservice.domain.age import AgeBand
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.ports import AccessClaims, IssuedToken, TokenPurpose, VerifyOutcome

_FAKE_HASH_PREFIX = "fake-argon2"


def _done(outcome: VerifyOutcome) -> Future[VerifyOutcome]:
    future: Future[VerifyOutcome] = Future()
    future.set_result(outcome)
    return future


class FakePasswordHasher:
    """Salted-looking SHA-256 "hashes", deterministic per instance (the salt is a counter).

    `version` stands for the cost parameters: a hash made under another version verifies with
    `needs_rehash=True`, as an Argon2 hash with old parameters does. `calls` counts each method.
    """

    def __init__(self, *, version: int = 1) -> None:
        self.version = version
        self.calls: Counter[str] = Counter()
        self._salts = itertools.count(1)
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        with self._lock:
            self.calls["hash"] += 1
            salt = f"{next(self._salts):016x}"
        return f"{_FAKE_HASH_PREFIX}$v{self.version}${salt}${_digest(salt, password)}"

    def verify(self, encoded: str, password: str) -> VerifyOutcome:
        self._count("verify")
        return self._check(encoded, password)

    def verify_later(self, encoded: str, password: str) -> Future[VerifyOutcome]:
        self._count("verify_later")
        return _done(self._check(encoded, password))

    def burn_later(self, password: str) -> Future[VerifyOutcome]:
        self._count("burn_later")
        return _done(VerifyOutcome(ok=False, needs_rehash=False))

    def burn(self, password: str) -> None:
        self._count("burn")

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def _check(self, encoded: str, password: str) -> VerifyOutcome:
        """Never raises: a malformed stored hash is a mismatch, as with argon2-cffi."""
        parts = encoded.split("$")
        if len(parts) != 4 or parts[0] != _FAKE_HASH_PREFIX:
            return VerifyOutcome(ok=False, needs_rehash=False)
        _, version, salt, digest = parts
        if not hmac.compare_digest(digest, _digest(salt, password)):
            return VerifyOutcome(ok=False, needs_rehash=False)
        return VerifyOutcome(ok=True, needs_rehash=version != f"v{self.version}")


def _digest(salt: str, password: str) -> str:
    normalized = unicodedata.normalize("NFKC", password)
    return hashlib.sha256(f"{salt}:{normalized}".encode()).hexdigest()


def _whole_seconds(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return datetime.fromtimestamp(int(now.timestamp() // 1), UTC)


class FakeTokenIssuer:
    """Opaque random access tokens remembered with their claims (no signatures).

    Like the JWT issuer: whole-second `iat`/`exp`, TOKEN_EXPIRED at or after `exp`, TOKEN_INVALID
    for anything it did not issue, and ValueError for claims it would refuse to sign.
    """

    def __init__(self, *, ttl: timedelta = timedelta(minutes=15)) -> None:
        self.ttl = ttl
        self.issued: dict[str, AccessClaims] = {}
        self._lock = threading.Lock()

    def issue(
        self,
        *,
        account_id: str,
        session_id: str,
        amr: Sequence[str],
        age_band: str,
        now: datetime,
    ) -> IssuedToken:
        if not account_id or not session_id:
            raise ValueError("account_id and session_id must not be empty")
        if isinstance(amr, str) or not amr or not all(isinstance(m, str) and m for m in amr):
            raise ValueError("amr must be a non-empty sequence of method names")
        if age_band not in {band.value for band in AgeBand}:
            raise ValueError(f"unknown age_band {age_band!r}")
        issued_at = _whole_seconds(now)
        claims = AccessClaims(
            account_id=account_id,
            session_id=session_id,
            jti=secrets.token_urlsafe(16),
            amr=tuple(amr),
            age_band=age_band,
            issued_at=issued_at,
            expires_at=issued_at + self.ttl,
        )
        token = f"fake-at.{secrets.token_urlsafe(24)}"
        with self._lock:
            self.issued[token] = claims
        return IssuedToken(token=token, jti=claims.jti, expires_at=claims.expires_at)

    def verify(self, token: str, *, now: datetime) -> AccessClaims:
        instant = _whole_seconds(now)
        with self._lock:
            claims = self.issued.get(token)
        if claims is None:
            raise DomainError(Reason.TOKEN_INVALID, "access token is malformed or unknown")
        if instant >= claims.expires_at:
            raise DomainError(Reason.TOKEN_EXPIRED, "access token has expired")
        return claims

    def jwks_json(self) -> str:
        return json.dumps({"keys": [{"kty": "oct", "kid": "fake", "use": "sig"}]})


class FakeSecretsCipher:
    """Keyed SHA-256 stand-ins for the AES/HMAC `FieldCipher`.

    `token_hash` is an HMAC over "<purpose>:<value>", so purposes never collide. `seal` XORs the
    plaintext with a keystream of (key, secret, context, nonce) and appends a MAC of the same;
    `unseal` raises ValueError for a wrong secret or context, as FieldDecryptError does.
    """

    NONCE_BYTES = 12
    TAG_BYTES = 16

    def __init__(self, key: bytes = b"fake-secrets-cipher-key") -> None:
        self._key = key

    def token_hash(self, value: str, *, purpose: TokenPurpose) -> str:
        text = f"{TokenPurpose(purpose).value}:{value}"
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def seal(self, plaintext: str, *, secret: str, context: str) -> str:
        if not context:
            raise ValueError("encryption context must not be empty")
        data = plaintext.encode("utf-8")
        nonce = secrets.token_bytes(self.NONCE_BYTES)
        sealed = bytes(
            a ^ b
            for a, b in zip(data, self._stream(nonce, secret, context, len(data)), strict=True)
        )
        tag = self._tag(nonce, sealed, secret, context)
        return base64.urlsafe_b64encode(nonce + sealed + tag).decode("ascii").rstrip("=")

    def unseal(self, token: str, *, secret: str, context: str) -> str:
        if not context:
            raise ValueError("encryption context must not be empty")
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            raise ValueError("sealed value is not base64url") from None
        if len(blob) < self.NONCE_BYTES + self.TAG_BYTES:
            raise ValueError("sealed value is too short")
        nonce, sealed = blob[: self.NONCE_BYTES], blob[self.NONCE_BYTES : -self.TAG_BYTES]
        if not hmac.compare_digest(
            blob[-self.TAG_BYTES :], self._tag(nonce, sealed, secret, context)
        ):
            raise ValueError("sealed value failed authentication")
        stream = self._stream(nonce, secret, context, len(sealed))
        return bytes(a ^ b for a, b in zip(sealed, stream, strict=True)).decode("utf-8")

    def _stream(self, nonce: bytes, secret: str, context: str, size: int) -> bytes:
        material = b"\0".join([self._key, nonce, secret.encode(), context.encode()])
        return hashlib.shake_256(material).digest(size)

    def _tag(self, nonce: bytes, sealed: bytes, secret: str, context: str) -> bytes:
        message = b"\0".join([nonce, sealed, secret.encode(), context.encode()])
        return hmac.new(self._key, message, hashlib.sha256).digest()[: self.TAG_BYTES]


class FakeClock:
    """A settable time source: call it for "now" (aware, UTC); `advance` and `set` move it."""

    def __init__(self, start: datetime = datetime(2025, 6, 2, 3, 0, tzinfo=UTC)) -> None:
        self._now = self._aware(start)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = self._aware(instant)

    def advance(self, delta: timedelta = timedelta(0), **parts: float) -> datetime:
        """Move forward by `delta` plus timedelta(**parts); returns the new now."""
        with self._lock:
            self._now += delta + timedelta(**parts)
            return self._now

    @staticmethod
    def _aware(instant: datetime) -> datetime:
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError("the clock keeps aware datetimes only")
        return instant.astimezone(UTC)
