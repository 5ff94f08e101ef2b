"""The person's rights over their data: the export document and withdrawal (탈퇴).

One implementation serves the person (ExportPersonalData, Withdraw) and the legal guardian of a
child under 14 (ExportWardData, WithdrawWard; privacy policy 제6조).
"""

from __future__ import annotations

from datetime import datetime

from idservice.domain import events
from idservice.domain.accounts import Account
from idservice.domain.age import age_band, seoul_today
from idservice.domain.ids import new_id
from idservice.domain.instants import utc_text
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import UnitOfWork

# Version of the export document's shape (docs: the JSON Schema of the export).
EXPORT_FORMAT = "idservice.export/1"


def _time(value: datetime | None) -> str | None:
    return utc_text(value) if value is not None else None


def export_document(tx: UnitOfWork, account: Account, *, now: datetime) -> dict[str, object]:
    """Everything held about the account, as one JSON-ready document (never raw CI/DI)."""
    c = account.consents
    request = tx.guardian_consents.of_account(account.id)
    guardian: dict[str, object] | None = None
    if request is not None:
        guardian = {
            "name": request.guardian_name,
            "phone_number": request.guardian_phone,
            "consent_status": request.status.value,
            "requested_at": _time(request.created_at),
            "decided_at": _time(request.decided_at),
        }
    return {
        "format": EXPORT_FORMAT,
        "exported_at": utc_text(now),
        "account": {
            "id": account.id,
            "status": account.status.value,
            "email": account.email,
            "name": account.name,
            "phone_number": account.phone_number,
            "birth_date": account.birth_date.isoformat(),
            "age_band": age_band(account.birth_date, seoul_today(now)).value,
            "created_at": _time(account.created_at),
        },
        "consents": {
            "terms_version": c.terms_version,
            "privacy_policy_version": c.privacy_policy_version,
            "accepted_at": _time(c.accepted_at),
            "marketing_opt_in": c.marketing_opt_in,
            "marketing_updated_at": _time(c.marketing_updated_at),
            "processing_suspended": c.processing_suspended,
        },
        "sign_in_methods": account.sign_in_methods,
        "sns_identities": [
            {
                "provider": link.provider.value,
                "nickname": link.nickname,
                "picture_url": link.picture_url,
                "linked_at": _time(link.created_at),
                "last_login_at": _time(link.last_login_at),
            }
            for link in tx.sns_identities.of_account(account.id)
        ],
        "identity_verification": {
            "verified": account.identity_verified,
            "ci_held": account.ci is not None,
            "di_held": account.di is not None,
        },
        "guardian": guardian,
        "sessions": [
            {
                "id": session.id,
                "methods": list(session.amr),
                "created_at": _time(session.created_at),
                "expires_at": _time(session.expires_at),
                "revoked_at": _time(session.revoked_at),
            }
            for session in tx.sessions.of_account(account.id)
        ],
    }


def withdraw(tx: UnitOfWork, account: Account, *, now: datetime, policy: Policy) -> None:
    """탈퇴 in the caller's transaction: the account and everything under it is deleted (sessions
    end at once); only the CI/DI blind indexes stay, for the re-join cooldown."""
    if account.ci or account.di:
        tx.accounts.add_rejoin_hold(
            new_id(), ci=account.ci, di=account.di, until=now + policy.rejoin_cooldown
        )
    tx.accounts.delete(account.id)
    tx.outbox.add(events.account_withdrawn(account_id=account.id, now=now))
