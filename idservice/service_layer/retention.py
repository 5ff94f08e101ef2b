"""Retention: destroy what is no longer needed (idservice purge, and periodically in serve)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from idservice.domain.model import OutboxEvent
from idservice.service_layer.services import Services, new_id

if TYPE_CHECKING:
    from idservice.adapters.db.unit_of_work import SqlUnitOfWork

# Revoked sessions are kept a day so that support can see why a person was signed out; their
# refresh tokens are unusable from the moment of revocation.
REVOKED_SESSION_RETENTION = timedelta(days=1)
# Delivered events are kept a day (for support), then deleted: payloads may hold personal data.
DELIVERED_EVENT_RETENTION = timedelta(days=1)
# Consent requests expired per purge run; the next run takes the rest.
EXPIRED_CONSENTS_PER_RUN = 500


def purge(svc: Services) -> dict[str, int]:
    """Run every destruction job once; returns counts only (never personal data)."""
    now = svc.clock()
    with svc.uow() as uow:
        counts = {
            "expired verifications destroyed": uow.verifications.purge_expired(now=now),
            "expired idempotent responses deleted": uow.idempotency.purge_expired(now=now),
            "ended sessions deleted": uow.sessions.purge_ended(
                now=now, revoked_before=now - REVOKED_SESSION_RETENTION
            ),
            "re-join holds released": uow.accounts.purge_rejoin_holds(now=now),
            "unconfirmed child accounts destroyed": _expire_guardian_consents(uow, now=now),
            "delivered events deleted": uow.outbox.purge_delivered(
                before=now - DELIVERED_EVENT_RETENTION
            ),
        }
        uow.commit()
    return counts


def _expire_guardian_consents(uow: SqlUnitOfWork, *, now: datetime) -> int:
    """korea-rules Guardian 4: not confirmed in time → the child's pending data and the
    guardian's name and contact are destroyed, and `guardian_consent.expired` is recorded.

    The account row (with its encrypted fields and CI/DI indexes) and its consent request are
    deleted, and so is the undelivered `guardian_consent.requested` event, which holds the
    guardian's name, phone and consent code. The person may then sign up again.
    """
    destroyed = 0
    expired = uow.guardian_consents.expired_pending(now=now, limit=EXPIRED_CONSENTS_PER_RUN)
    uow.outbox.delete_matching(
        "guardian_consent.requested",
        key="consent_request_id",
        values={request_id for request_id, _ in expired},
    )
    for request_id, account_id in expired:
        if not uow.accounts.delete_pending(account_id):
            continue  # decided meanwhile: the account is no longer pending
        uow.outbox.add(
            OutboxEvent(
                id=new_id(),
                type="guardian_consent.expired",
                payload={
                    "consent_request_id": request_id,
                    "account_id": account_id,
                    "expired_at": now.isoformat(),
                },
                created_at=now,
            )
        )
        destroyed += 1
    return destroyed
