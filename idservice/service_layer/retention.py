"""Retention: destroy what is no longer needed (idservice purge, and periodically in serve)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from idservice.domain import events
from idservice.domain.consents import last_reconfirmation_due
from idservice.domain.events import EventType
from idservice.domain.guardian_consent import ConsentRequestStatus
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import Clock, UnitOfWork, UnitOfWorkFactory
from idservice.service_layer.use_cases import Command

# Revoked sessions are kept a day so that support can see why a person was signed out; their
# refresh tokens are unusable from the moment of revocation.
REVOKED_SESSION_RETENTION = timedelta(days=1)
# Delivered events are kept a day (for support), then deleted: payloads may hold personal data.
DELIVERED_EVENT_RETENTION = timedelta(days=1)
# Consent requests expired per purge run; the next run takes the rest.
EXPIRED_CONSENTS_PER_RUN = 500
# What became of a destroyed consent request (ids, status, times: nothing personal) is kept this
# long so that the app and the guardian can still ask; the request's window is 5 days by default.
CONSENT_OUTCOME_RETENTION = timedelta(days=30)
# Consent records are kept this long after they were made (전자상거래법 시행령 제6조: records of
# contracts 5 years), then destroyed.
CONSENT_RECORD_RETENTION = timedelta(days=5 * 365)
# Reconfirmation reminders written per purge run; the next run takes the rest.
RECONFIRMATIONS_PER_RUN = 1000
# Attempt counters outlive their windows (at most config_values.MAX_RATE_WINDOW) by this much.
ATTEMPT_COUNTER_RETENTION = timedelta(days=1)


@dataclass(frozen=True, slots=True, repr=False)
class Purge(Command[dict[str, int]]):
    pass


def purge(cmd: Purge, *, uow: UnitOfWorkFactory, policy: Policy, clock: Clock) -> dict[str, int]:
    """Run every destruction job once; returns counts only (never personal data)."""
    now = clock()
    with uow() as tx:
        counts = {
            "expired verifications destroyed": tx.verifications.purge_expired(now=now),
            "expired idempotent responses deleted": tx.idempotency.purge_expired(now=now),
            "ended sessions deleted": tx.sessions.purge_ended(
                now=now, revoked_before=now - REVOKED_SESSION_RETENTION
            ),
            "re-join holds released": tx.accounts.purge_rejoin_holds(now=now),
            "unconfirmed child accounts destroyed": _expire_guardian_consents(tx, now=now),
            "expired SNS signup tickets deleted": tx.signup_tickets.purge_expired(now=now),
            "consent outcomes deleted": tx.guardian_consents.purge_outcomes(
                before=now - CONSENT_OUTCOME_RETENTION
            ),
            "consent records deleted": tx.consent_records.purge(
                before=now - CONSENT_RECORD_RETENTION
            ),
            "marketing reconfirmations due": _marketing_reconfirmations(tx, now=now),
            "connection log entries deleted": tx.connection_log.purge(
                before=now - policy.connection_log_retention
            ),
            "attempt counters deleted": tx.attempt_counters.purge_expired(
                before=now - ATTEMPT_COUNTER_RETENTION
            ),
            "delivered events deleted": tx.outbox.purge_delivered(
                before=now - DELIVERED_EVENT_RETENTION
            ),
        }
        tx.commit()
    # In a short transaction of its own: the audit's tail is locked (guardian calls wait on it)
    # only while old records go, and no other lock is taken after it.
    with uow() as tx:
        counts["access audit records deleted"] = tx.access_audit.purge(
            before=now - policy.access_audit_retention
        )
        tx.commit()
    uow.make_deletions_final()
    return counts


def _marketing_reconfirmations(tx: UnitOfWork, *, now: datetime) -> int:
    """정보통신망법 제50조⑧: every two years from an opt-in (2, 4, 6 … years on, counted from
    its last re-confirmation), `reconfirmation_due`, once per anniversary."""
    # Coarse bound first (two anniversaries are at least 730 days apart: the opt-in and the one
    # last reminded are that old at least); the exact anniversary decides.
    candidates = tx.accounts.marketing_reconfirmation_due(
        now=now, opted_in_before=now - timedelta(days=365 * 2), limit=RECONFIRMATIONS_PER_RUN
    )
    due = 0
    for account_id, opted_in_at, reminded in candidates:
        anniversary = last_reconfirmation_due(opted_in_at, now)
        if anniversary is None or (reminded is not None and reminded >= anniversary):
            continue
        # Another process's purge may have reminded it meanwhile: one event per anniversary.
        if not tx.accounts.mark_reminded(account_id, opted_in_at=opted_in_at, due=anniversary):
            continue
        tx.outbox.add(
            events.marketing_reconfirmation_due(
                account_id=account_id, opted_in_at=opted_in_at, now=now
            )
        )
        due += 1
    return due


def _expire_guardian_consents(tx: UnitOfWork, *, now: datetime) -> int:
    """korea-rules Guardian 4: not confirmed in time → the child's pending data and the
    guardian's name and contact are destroyed, and `guardian_consent.expired` is recorded.

    The account row (with its encrypted fields and CI/DI indexes) and its consent request are
    deleted, and so is the undelivered `guardian_consent.requested` event, which holds the
    guardian's name, phone and consent code. The person may then sign up again.
    """
    expired = tx.guardian_consents.expired_pending(now=now, limit=EXPIRED_CONSENTS_PER_RUN)
    return destroy_expired_requests(tx, expired, now=now)


def destroy_expired_requests(
    tx: UnitOfWork, expired: Iterable[tuple[str, str]], *, now: datetime
) -> int:
    """Destroy these (request id, child account id) pairs of requests whose window has ended,
    as the purge does (also before a SignUp of the same child or email: see signup.py); how
    many were destroyed."""
    # By account id, whoever calls: the purge and a SignUp releasing two expired children lock
    # the accounts in one order, so neither waits for the other in a cycle.
    expired = sorted(expired, key=lambda pair: pair[1])
    windows = {
        request_id: request.expires_at
        for request_id, _ in expired
        if (request := tx.guardian_consents.get(request_id)) is not None
    }
    # Only requests whose child account is still pending are destroyed (one decided meanwhile
    # keeps its account, and its request event stays with it).
    destroyed = {
        request_id: account_id
        for request_id, account_id in expired
        if tx.accounts.delete_pending(account_id)
    }
    tx.outbox.delete_matching(
        EventType.GUARDIAN_CONSENT_REQUESTED.value,
        key="consent_request_id",
        values=set(destroyed),
    )
    for request_id, account_id in destroyed.items():
        tx.guardian_consents.add_outcome(
            request_id,
            status=ConsentRequestStatus.EXPIRED,
            expires_at=windows.get(request_id, now),
            now=now,
        )
        tx.outbox.add(
            events.guardian_consent_expired(
                consent_request_id=request_id, account_id=account_id, now=now
            )
        )
    return len(destroyed)
