"""Consents: what a person agreed to, each grant and withdrawal recorded (korea-rules Rights 3).

Marketing is optional and separate, and refusing it never blocks signup (정보통신망법 제50조);
an opt-in is re-confirmed every 2 years (제50조⑧). Provision to third parties (privacy policy
제4조) is its own optional consent. Suspending processing (처리정지, 개인정보 보호법 제37조)
stops consent-based processing such as marketing at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from idservice.domain.age import SEOUL
from idservice.domain.ids import new_id

# 정보통신망법 제50조⑧ (시행령 제62조의3): an opt-in is re-confirmed every two years from the
# day it was given.
MARKETING_RECONFIRMATION_YEARS = 2


class ConsentType(StrEnum):
    TERMS = "terms"
    PRIVACY_POLICY = "privacy_policy"
    MARKETING = "marketing"
    THIRD_PARTY_PROVISION = "third_party_provision"
    PROCESSING_SUSPENSION = "processing_suspension"
    # A legal guardian's consent for a child under 14 (개인정보 보호법 제22조의2).
    LEGAL_GUARDIAN = "legal_guardian"


class ConsentChannel(StrEnum):
    """Where a consent was given or withdrawn."""

    SIGNUP = "signup"
    UPDATE_CONSENTS = "update_consents"
    # The guardian's mobile-phone identity verification (시행령 제17조의2① 3호): how a legal
    # guardian's consent was confirmed.
    MOBILE_IDENTITY_VERIFICATION = "mobile_identity_verification"


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    id: str
    account_id: str
    consent_type: ConsentType
    version: str | None
    granted: bool
    channel: ConsentChannel
    recorded_at: datetime


def anniversary(at: datetime, years: int) -> datetime:
    """`at` moved `years` years on by Seoul's calendar (29 February → 1 March in a year that has
    none), in `at`'s own time zone."""
    local = at.astimezone(SEOUL)
    try:
        moved = local.replace(year=local.year + years)
    except ValueError:  # 29 February in a year that has none
        moved = local.replace(year=local.year + years, month=3, day=1)
    return moved.astimezone(at.tzinfo)


def last_reconfirmation_due(opted_in_at: datetime, now: datetime) -> datetime | None:
    """The latest two-year anniversary of an opt-in (2, 4, 6 … years on) at or before `now`;
    None before the first. A reminder sent before it is for an earlier one."""
    years = now.astimezone(SEOUL).year - opted_in_at.astimezone(SEOUL).year
    years -= years % MARKETING_RECONFIRMATION_YEARS
    while years > 0:
        due = anniversary(opted_in_at, years)
        if due <= now:
            return due
        years -= MARKETING_RECONFIRMATION_YEARS
    return None


def may_receive_marketing(*, opted_in: bool, suspended: bool) -> bool:
    return opted_in and not suspended


def legal_guardian_consent(account_id: str, *, now: datetime) -> ConsentRecord:
    """korea-rules Guardian 3: a child's legal guardian consented, confirmed by mobile-phone
    identity verification, at `now` — kept as a consent record, for the records' own period."""
    return ConsentRecord(
        id=new_id(),
        account_id=account_id,
        consent_type=ConsentType.LEGAL_GUARDIAN,
        version=None,
        granted=True,
        channel=ConsentChannel.MOBILE_IDENTITY_VERIFICATION,
        recorded_at=now,
    )
