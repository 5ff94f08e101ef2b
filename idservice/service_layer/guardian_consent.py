"""Guardian consent requests: opened by a child's SignUp (approval and the guardian's rights
over the ward will live here too)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from idservice.domain import events
from idservice.domain.accounts import Account
from idservice.domain.guardian_consent import GuardianContact, new_consent_code
from idservice.domain.ids import new_id
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    NewConsentRequest,
    SecretsCipher,
    TokenPurpose,
    UnitOfWork,
)


@dataclass(frozen=True, slots=True)
class ConsentRequestRef:
    id: str
    expires_at: datetime


def code_hash(request_id: str, code: str, *, cipher: SecretsCipher) -> str:
    """Consent codes are stored only as keyed hashes bound to their request."""
    return cipher.token_hash(f"{request_id}:{code}", purpose=TokenPurpose.CONSENT_CODE)


def open_request(
    tx: UnitOfWork,
    child: Account,
    guardian: GuardianContact,
    *,
    now: datetime,
    cipher: SecretsCipher,
    policy: Policy,
) -> ConsentRequestRef:
    """Open the child's consent request and ask the sender to reach the guardian (one event)."""
    request_id = new_id()
    code = new_consent_code()
    expires_at = now + policy.guardian_consent_window
    tx.guardian_consents.add(
        NewConsentRequest(
            id=request_id,
            account_id=child.id,
            guardian_name=guardian.name,
            guardian_phone=guardian.phone_number,
            code_hash=code_hash(request_id, code, cipher=cipher),
            created_at=now,
            expires_at=expires_at,
        )
    )
    tx.outbox.add(
        events.guardian_consent_requested(
            consent_request_id=request_id,
            account_id=child.id,
            guardian_name=guardian.name,
            guardian_phone_number=guardian.phone_number,
            consent_code=code,
            expires_at=expires_at,
            now=now,
        )
    )
    return ConsentRequestRef(id=request_id, expires_at=expires_at)
