"""Accounts, sessions and verifications as plain records, with their state rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum


class AccountStatus(StrEnum):
    """Life-cycle of an account (contract §2)."""

    ACTIVE = "active"
    PENDING_GUARDIAN_CONSENT = "pending_guardian_consent"


class SignInMethod(StrEnum):
    """How an account signs in; the strings are contract values."""

    PASSWORD = "password"
    GOOGLE = "google"
    KAKAO = "kakao"


@dataclass(slots=True)
class Consents:
    """What the person agreed to, and when (korea-rules Rights 3)."""

    terms_version: str
    privacy_policy_version: str
    accepted_at: datetime
    marketing_opt_in: bool
    marketing_updated_at: datetime
    processing_suspended: bool = False


@dataclass(slots=True)
class Account:
    """One person's account, in plaintext; the database adapter encrypts personal fields."""

    id: str
    status: AccountStatus
    email: str | None
    name: str
    phone_number: str
    birth_date: date
    identity_verified: bool
    consents: Consents
    created_at: datetime
    password_hash: str | None = None
    ci: str | None = None
    di: str | None = None
    failed_logins: int = 0
    locked_until: datetime | None = None
    sns_providers: tuple[str, ...] = ()

    @property
    def sign_in_methods(self) -> list[str]:
        methods = [SignInMethod.PASSWORD.value] if self.password_hash else []
        return methods + sorted(self.sns_providers)


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """Consecutive password failures before a lock, and its length (안전성 확보조치 기준 제5조⑥)."""

    threshold: int
    duration: timedelta


@dataclass(slots=True)
class Session:
    """A signed-in session; its refresh tokens rotate."""

    id: str
    account_id: str
    amr: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


@dataclass(slots=True)
class OutboxEvent:
    """A state change other systems must act on, written in the same transaction."""

    id: str
    type: str
    payload: dict[str, object]
    created_at: datetime
