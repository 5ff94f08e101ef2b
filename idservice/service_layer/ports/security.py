"""Security ports: the password hasher, the access-token issuer and keyed secrets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    """Result of checking a password: `needs_rehash` means the stored hash uses old parameters."""

    ok: bool
    needs_rehash: bool


class PendingCheck(Protocol):
    """A password check queued on the hasher's pool (a concurrent.futures.Future)."""

    def result(self, timeout: float | None = None) -> VerifyOutcome: ...

    def cancel(self) -> bool: ...


class PasswordHasher(Protocol):
    """Slow, salted one-way password hashing (korea-rules Storage 1: Argon2id).

    `*_later` queue the work at once (SERVER_BUSY is decided there) and are collected later, so
    an attempt can be admitted against the lock between queueing and reading the outcome.
    `burn` spends a real verification's work where there is no account (timing parity).
    """

    def hash(self, password: str) -> str: ...

    def verify(self, encoded: str, password: str) -> VerifyOutcome: ...

    def verify_later(self, encoded: str, password: str) -> PendingCheck: ...

    def burn_later(self, password: str) -> PendingCheck: ...

    def burn(self, password: str) -> None: ...


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed access token."""

    token: str = field(repr=False)
    jti: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified contents of an access token."""

    account_id: str
    session_id: str
    jti: str
    amr: tuple[str, ...]
    age_band: str
    issued_at: datetime
    expires_at: datetime


class TokenIssuer(Protocol):
    """Signs and verifies the service's access tokens (JWTs) and publishes their keys.

    `verify` raises DomainError TOKEN_EXPIRED or TOKEN_INVALID.
    """

    def issue(
        self,
        *,
        account_id: str,
        session_id: str,
        amr: Sequence[str],
        age_band: str,
        now: datetime,
    ) -> IssuedToken: ...

    def verify(self, token: str, *, now: datetime) -> AccessClaims: ...

    def jwks_json(self) -> str: ...


class TokenPurpose(StrEnum):
    """What a keyed token hash is for; hashes of different purposes never collide."""

    REFRESH_TOKEN = "refresh-token"
    VERIFICATION_TOKEN = "verification-token"
    VERIFICATION_SOURCE = "verification-source"
    SIGNUP_KEY = "signup-key"
    SIGNUP_BODY = "signup-body"
    CONSENT_CODE = "consent-code"
    SNS_SIGNUP_TICKET = "sns-signup-ticket"
    CLIENT_ADDRESS = "client-address"


class SecretsCipher(Protocol):
    """Keyed hashes of bearer secrets, and sealing of values only their holder may open.

    `token_hash` is how tokens, codes and idempotency keys are stored (never in the clear).
    `seal` encrypts under a key derived from the data keys *and* `secret`, which is never
    stored; `unseal` raises ValueError for a wrong secret or context.
    """

    def token_hash(self, value: str, *, purpose: TokenPurpose) -> str: ...

    def seal(self, plaintext: str, *, secret: str, context: str) -> str: ...

    def unseal(self, token: str, *, secret: str, context: str) -> str: ...
