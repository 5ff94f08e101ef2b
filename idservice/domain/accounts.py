"""Accounts: their life-cycle states and transitions, sign-in methods and consents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum


class AccountStatus(StrEnum):
    """Life-cycle of an account (contract §2)."""

    ACTIVE = "active"
    PENDING_GUARDIAN_CONSENT = "pending_guardian_consent"

    @property
    def may_sign_in(self) -> bool:
        """korea-rules Guardian 2: a pending child cannot log in or get tokens."""
        return self is AccountStatus.ACTIVE


# The transitions an account may take. A pending child becomes active when the guardian
# approves; rejection, expiry and withdrawal destroy the account instead of changing its status.
TRANSITIONS: dict[AccountStatus, frozenset[AccountStatus]] = {
    AccountStatus.PENDING_GUARDIAN_CONSENT: frozenset({AccountStatus.ACTIVE}),
    AccountStatus.ACTIVE: frozenset(),
}


class InvalidTransition(ValueError):
    """A status change the life-cycle does not allow (a bug in the caller, never input)."""


def initial_status(*, needs_guardian_consent: bool) -> AccountStatus:
    """A child under 14 starts pending (korea-rules Age 6, Guardian 2); everyone else active."""
    return (
        AccountStatus.PENDING_GUARDIAN_CONSENT if needs_guardian_consent else AccountStatus.ACTIVE
    )


def transition(current: AccountStatus, new: AccountStatus) -> AccountStatus:
    """`new` if the life-cycle allows moving there from `current`; else InvalidTransition."""
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"an account cannot go from {current} to {new}")
    return new


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
    third_party_opt_in: bool = False
    third_party_updated_at: datetime | None = None


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
        return sign_in_methods(has_password=self.password_hash is not None, sns=self.sns_providers)


def sign_in_methods(*, has_password: bool, sns: tuple[str, ...]) -> list[str]:
    """How an account signs in: "password" first if it has one, then its SNS providers."""
    methods = [SignInMethod.PASSWORD.value] if has_password else []
    return methods + sorted(sns)


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """An account as its owner is shown it (GetAccount): no CI, DI or password hash is read to
    make it."""

    id: str
    status: AccountStatus
    email: str | None
    name: str
    phone_number: str
    birth_date: date
    identity_verified: bool
    consents: Consents
    created_at: datetime
    sign_in_methods: tuple[str, ...]

    @classmethod
    def of(cls, account: Account) -> AccountProfile:
        return cls(
            id=account.id,
            status=account.status,
            email=account.email,
            name=account.name,
            phone_number=account.phone_number,
            birth_date=account.birth_date,
            identity_verified=account.identity_verified,
            consents=account.consents,
            created_at=account.created_at,
            sign_in_methods=tuple(account.sign_in_methods),
        )
