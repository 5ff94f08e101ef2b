"""Guardian consent for children under 14: the request's states and the rules it must meet.

korea-rules "Guardian consent for children under 14" and Age 4/6: a child's account waits for
the legal guardian, who must be an adult, another person than the child, and reachable at the
contact the child gave; a request not confirmed within its window is destroyed.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from idservice.domain.age import ADULT_AGE, CHILD_CONSENT_AGE, age_on
from idservice.domain.errors import DomainError, Reason
from idservice.domain.identity import VerifiedPerson

# Consent codes: 8 digits sent to the guardian's phone (≈ 26.6 bits; attempts are limited by
# the request's life and rate limits).
CONSENT_CODE_DIGITS = 8


class ConsentRequestStatus(StrEnum):
    """A consent request's life-cycle (contract §2 GetConsentRequest)."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class GuardianContact:
    """What a child may give about the guardian before consent (시행령 제17조의2②): no more."""

    name: str
    phone_number: str


def needs_guardian_consent(birth: date, today: date) -> bool:
    """korea-rules Age 6: under 만 14 on Seoul's today."""
    return age_on(birth, today) < CHILD_CONSENT_AGE


def require_guardian_contact(
    guardian: GuardianContact | None, *, child_phone: str
) -> GuardianContact:
    """A child's signup names the guardian, whose contact must not be the child's own."""
    if guardian is None or not guardian.name or not guardian.phone_number:
        raise DomainError(
            Reason.GUARDIAN_INFO_REQUIRED,
            "a child under 14 needs the legal guardian's name and phone number",
        )
    if guardian.phone_number == child_phone:
        raise DomainError(
            Reason.GUARDIAN_SAME_PERSON, "the guardian's contact must not be the child's own"
        )
    return guardian


def new_consent_code() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(CONSENT_CODE_DIGITS))


def check_open(status: ConsentRequestStatus, expires_at: datetime, now: datetime) -> None:
    """A request can be decided only while pending and inside its window."""
    if status is not ConsentRequestStatus.PENDING:
        raise request_closed(status)
    if expires_at <= now:
        raise request_closed(ConsentRequestStatus.EXPIRED)


def request_closed(status: ConsentRequestStatus) -> DomainError:
    """Why a request in `status` (not pending) can no longer be decided."""
    if status is ConsentRequestStatus.EXPIRED:
        return DomainError(Reason.CONSENT_REQUEST_EXPIRED, "the consent request has expired")
    return DomainError(Reason.CONSENT_REQUEST_CLOSED, "the consent request is already closed")


def check_guardian(
    guardian: VerifiedPerson,
    *,
    guardian_phone: str,
    child_ci: str | None,
    child_di: str | None,
    contact_phone: str,
    today: date,
) -> None:
    """korea-rules Guardian 3: an adult (Age 4), not the child (the same CI, or the same DI as
    one-person-one-account matches), at the given contact."""
    if age_on(guardian.birth_date, today) < ADULT_AGE:
        raise DomainError(Reason.GUARDIAN_NOT_ADULT, "the legal guardian must be an adult")
    if _same(guardian.ci, child_ci) or _same(guardian.di, child_di):
        raise DomainError(Reason.GUARDIAN_SAME_PERSON, "the guardian must be another person")
    if not hmac.compare_digest(guardian_phone.encode(), contact_phone.encode()):
        raise DomainError(
            Reason.GUARDIAN_MISMATCH, "the verified phone is not the contact the child gave"
        )


def _same(one: str | None, other: str | None) -> bool:
    return bool(one and other and hmac.compare_digest(one.encode(), other.encode()))


# Resends: one a minute, and a bounded number in all (each is an SMS to someone's phone).
RESEND_INTERVAL = timedelta(minutes=1)
MAX_NOTIFICATIONS = 5


def check_resend_allowed(
    sent: int, last_sent_at: datetime, *, expires_at: datetime, now: datetime
) -> None:
    """RATE_LIMITED (with the wait) once `sent` messages are all a request may send, or the
    last went out under RESEND_INTERVAL ago."""
    if sent >= MAX_NOTIFICATIONS:
        raise DomainError(
            Reason.RATE_LIMITED,
            "the consent message was sent as often as it may be",
            retry_after_seconds=max((expires_at - now).total_seconds(), 1.0),
        )
    if last_sent_at + RESEND_INTERVAL > now:
        raise DomainError(
            Reason.RATE_LIMITED,
            "the consent message was just sent; wait before resending",
            retry_after_seconds=max((last_sent_at + RESEND_INTERVAL - now).total_seconds(), 1.0),
        )
