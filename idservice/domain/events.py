"""The event catalogue (contract §4): every outbox event type and the one builder of its payload.

Nothing else builds event documents. Each event is written to the outbox in the transaction of
the state change it reports and delivered at least once as `Event.document()`; receivers
de-duplicate by `event_id`. Payloads carry ids only, except `guardian_consent.requested`, which
is the trigger for the SMS/AlimTalk sender and so carries the guardian's name, phone and code.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from idservice.domain.instants import utc_text


class EventType(StrEnum):
    """Contract §4: the event types other systems act on."""

    ACCOUNT_CREATED = "account.created"
    ACCOUNT_ACTIVATED = "account.activated"
    ACCOUNT_WITHDRAWN = "account.withdrawn"
    GUARDIAN_CONSENT_REQUESTED = "guardian_consent.requested"
    GUARDIAN_CONSENT_APPROVED = "guardian_consent.approved"
    GUARDIAN_CONSENT_REJECTED = "guardian_consent.rejected"
    GUARDIAN_CONSENT_EXPIRED = "guardian_consent.expired"
    MARKETING_RECONFIRMATION_DUE = "marketing_consent.reconfirmation_due"
    # Beyond contract §4: other systems must stop marketing (or provision) at once.
    CONSENTS_UPDATED = "consents.updated"
    SESSION_REUSE_DETECTED = "session.reuse_detected"
    # Beyond contract §4: a way into the account was added or removed; the app tells its owner
    # ("Kakao sign-in was added to your account"), who may not have done it.
    SNS_IDENTITY_LINKED = "sns_identity.linked"
    SNS_IDENTITY_UNLINKED = "sns_identity.unlinked"


# Event types whose payload holds personal data (the outbox encrypts every payload anyway; these
# are also destroyed with the data they carry).
CARRIES_PERSONAL_DATA = frozenset({EventType.GUARDIAN_CONSENT_REQUESTED})


@dataclass(frozen=True, slots=True)
class Event:
    """One state change other systems must act on."""

    type: EventType
    data: Mapping[str, object]
    occurred_at: datetime
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def document(self) -> str:
        """The JSON document delivered: {event_id, type, occurred_at, data}."""
        return json.dumps(
            {
                "event_id": self.id,
                "type": self.type.value,
                "occurred_at": utc_text(self.occurred_at),
                "data": dict(self.data),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )


def account_created(
    *, account_id: str, status: str, identity_verified: bool, now: datetime
) -> Event:
    return Event(
        EventType.ACCOUNT_CREATED,
        {"account_id": account_id, "status": status, "identity_verified": identity_verified},
        now,
    )


def account_activated(*, account_id: str, now: datetime) -> Event:
    return Event(EventType.ACCOUNT_ACTIVATED, {"account_id": account_id}, now)


def account_withdrawn(*, account_id: str, now: datetime) -> Event:
    return Event(EventType.ACCOUNT_WITHDRAWN, {"account_id": account_id}, now)


def guardian_consent_requested(
    *,
    consent_request_id: str,
    account_id: str,
    guardian_name: str,
    guardian_phone_number: str,
    consent_code: str,
    expires_at: datetime,
    now: datetime,
) -> Event:
    """The SMS/AlimTalk sender's trigger: the only event that carries personal data."""
    return Event(
        EventType.GUARDIAN_CONSENT_REQUESTED,
        {
            "consent_request_id": consent_request_id,
            "account_id": account_id,
            "guardian_name": guardian_name,
            "guardian_phone_number": guardian_phone_number,
            "consent_code": consent_code,
            "expires_at": utc_text(expires_at),
        },
        now,
    )


def guardian_consent_approved(*, consent_request_id: str, account_id: str, now: datetime) -> Event:
    return Event(
        EventType.GUARDIAN_CONSENT_APPROVED,
        {"consent_request_id": consent_request_id, "account_id": account_id},
        now,
    )


def guardian_consent_rejected(*, consent_request_id: str, account_id: str, now: datetime) -> Event:
    return Event(
        EventType.GUARDIAN_CONSENT_REJECTED,
        {"consent_request_id": consent_request_id, "account_id": account_id},
        now,
    )


def guardian_consent_expired(*, consent_request_id: str, account_id: str, now: datetime) -> Event:
    return Event(
        EventType.GUARDIAN_CONSENT_EXPIRED,
        {
            "consent_request_id": consent_request_id,
            "account_id": account_id,
            "expired_at": utc_text(now),
        },
        now,
    )


def marketing_reconfirmation_due(*, account_id: str, opted_in_at: datetime, now: datetime) -> Event:
    return Event(
        EventType.MARKETING_RECONFIRMATION_DUE,
        {"account_id": account_id, "opted_in_at": utc_text(opted_in_at)},
        now,
    )


def consents_updated(
    *,
    account_id: str,
    marketing_opt_in: bool,
    third_party_provision_opt_in: bool,
    processing_suspended: bool,
    now: datetime,
) -> Event:
    return Event(
        EventType.CONSENTS_UPDATED,
        {
            "account_id": account_id,
            "marketing_opt_in": marketing_opt_in,
            "third_party_provision_opt_in": third_party_provision_opt_in,
            "processing_suspended": processing_suspended,
        },
        now,
    )


def session_reuse_detected(*, account_id: str, session_id: str, now: datetime) -> Event:
    return Event(
        EventType.SESSION_REUSE_DETECTED, {"account_id": account_id, "session_id": session_id}, now
    )


def sns_identity_linked(*, account_id: str, provider: str, now: datetime) -> Event:
    return Event(
        EventType.SNS_IDENTITY_LINKED, {"account_id": account_id, "provider": provider}, now
    )


def sns_identity_unlinked(*, account_id: str, provider: str, now: datetime) -> Event:
    return Event(
        EventType.SNS_IDENTITY_UNLINKED, {"account_id": account_id, "provider": provider}, now
    )
