"""Retention: destroy what is no longer needed (idservice purge, and periodically in serve)."""

from __future__ import annotations

from datetime import timedelta

from idservice.service_layer.services import Services

# Revoked sessions are kept a day so that support can see why a person was signed out; their
# refresh tokens are unusable from the moment of revocation.
REVOKED_SESSION_RETENTION = timedelta(days=1)


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
        }
        uow.commit()
    return counts
