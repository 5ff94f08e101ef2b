"""The in-memory guardian consent and attempt counter repositories: the same answers as
`idservice.adapters.db.repositories.guardian_consents` and `.attempt_counters` (the contract
suite pins them to those, in tests/integration/test_repository_contract_consents.py).

The SQL row keeps a blind index of the approved guardian's CI; the fake keeps the CI itself,
which answers the same (only equality is ever asked of it).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from idservice.domain.guardian_consent import ConsentRequestStatus
from idservice.service_layer.ports import (
    AttemptGate,
    ConsentOutcome,
    ConsentRequest,
    NewConsentRequest,
)
from tests.fakes.storage_state import (
    ConsentRow,
    CounterRow,
    FakeIntegrityError,
    OutcomeRow,
    StateAccess,
    utc,
)

PENDING = ConsentRequestStatus.PENDING.value
APPROVED = ConsentRequestStatus.APPROVED.value
# While attempts in flight fill the bound, the gate says to retry after this long.
IN_FLIGHT_RETRY = timedelta(seconds=1)


def _request(request_id: str, row: ConsentRow) -> ConsentRequest:
    r = row.request
    return ConsentRequest(
        id=request_id,
        account_id=r.account_id,
        status=ConsentRequestStatus(row.status),
        code_hash=r.code_hash,
        guardian_name=r.guardian_name,
        guardian_phone=r.guardian_phone,
        created_at=r.created_at,
        expires_at=r.expires_at,
        decided_at=row.decided_at,
        notifications_sent=row.notifications_sent,
        last_notified_at=row.last_notified_at,
        method=row.method,
    )


def _open(row: ConsentRow | None, now: datetime) -> ConsentRow | None:
    """The row if it is pending and inside its window (the SQL updates' WHERE clause)."""
    if row is None or row.status != PENDING or row.request.expires_at <= now:
        return None
    return row


class FakeGuardianConsentRepository:
    def __init__(self, access: StateAccess) -> None:
        self._access = access

    # -- requests ------------------------------------------------------------------------
    def add(self, request: NewConsentRequest) -> None:
        state = self._access.write()
        if request.account_id not in state.accounts:
            raise FakeIntegrityError("fk_guardian_consent_requests_account_id_accounts")
        if request.id in state.consent_requests:
            raise FakeIntegrityError("pk_guardian_consent_requests")
        created_at = utc(request.created_at)
        stored = dataclasses.replace(
            request, created_at=created_at, expires_at=utc(request.expires_at)
        )
        state.consent_requests[request.id] = ConsentRow(
            request=stored, notifications_sent=1, last_notified_at=created_at
        )

    def get(self, request_id: str) -> ConsentRequest | None:
        row = self._access.read().consent_requests.get(request_id)
        return None if row is None else _request(request_id, row)

    def of_account(self, account_id: str) -> ConsentRequest | None:
        rows = [
            (request_id, row)
            for request_id, row in self._access.read().consent_requests.items()
            if row.request.account_id == account_id
        ]
        if not rows:
            return None
        # As the SQL one: the newest, ties by the highest id.
        request_id, row = max(rows, key=lambda item: (item[1].request.created_at, item[0]))
        return _request(request_id, row)

    def expired_pending(self, *, now: datetime, limit: int) -> list[tuple[str, str]]:
        now = utc(now)
        expired = sorted(
            (
                row.request
                for row in self._access.read().consent_requests.values()
                if row.status == PENDING and row.request.expires_at <= now
            ),
            key=lambda request: request.expires_at,
        )
        return [(request.id, request.account_id) for request in expired[: max(limit, 0)]]

    # -- consent codes -------------------------------------------------------------------
    def admit_code_attempt(
        self, request_id: str, *, now: datetime, max_attempts: int
    ) -> AttemptGate:
        now = utc(now)
        row = self._access.write().consent_requests.get(request_id)
        if row is None:
            return AttemptGate(admitted=False, blocked_until=now + IN_FLIGHT_RETRY)
        until = row.code_locked_until
        if (until is None or until <= now) and row.failed_code_attempts < max_attempts:
            row.failed_code_attempts += 1
            row.code_locked_until = None
            return AttemptGate(admitted=True)
        if until is not None and until > now:
            return AttemptGate(admitted=False, blocked_until=until)
        return AttemptGate(admitted=False, blocked_until=now + IN_FLIGHT_RETRY)

    def end_code_attempt(
        self, request_id: str, *, right: bool, now: datetime, max_attempts: int, pause: timedelta
    ) -> None:
        now = utc(now)
        row = self._access.write().consent_requests.get(request_id)
        if row is None:
            return
        if right:
            row.failed_code_attempts = 0
        elif row.failed_code_attempts >= max_attempts:
            row.failed_code_attempts, row.code_locked_until = 0, now + pause

    def replace_code(
        self,
        request_id: str,
        *,
        code_hash: str,
        now: datetime,
        sent_before: datetime | None = None,
        max_sent: int | None = None,
    ) -> bool:
        now = utc(now)
        row = _open(self._access.write().consent_requests.get(request_id), now)
        if row is None:
            return False
        last = row.last_notified_at or row.request.created_at
        if sent_before is not None and last > utc(sent_before):
            return False
        if max_sent is not None and row.notifications_sent >= max_sent:
            return False
        row.request = dataclasses.replace(row.request, code_hash=code_hash)
        row.notifications_sent += 1
        row.last_notified_at = now
        return True

    # -- decisions -----------------------------------------------------------------------
    def approve(
        self,
        request_id: str,
        *,
        guardian_name: str,
        guardian_phone: str,
        guardian_ci: str,
        method: str,
        now: datetime,
    ) -> bool:
        now = utc(now)
        row = _open(self._access.write().consent_requests.get(request_id), now)
        if row is None:
            return False
        row.request = dataclasses.replace(
            row.request, guardian_name=guardian_name, guardian_phone=guardian_phone
        )
        row.status, row.decided_at, row.method = APPROVED, now, method
        row.guardian_ci, row.failed_code_attempts = guardian_ci, 0
        return True

    def approved_wards(self, guardian_ci: str) -> list[str]:
        approved = sorted(
            (
                row
                for row in self._access.read().consent_requests.values()
                if row.status == APPROVED and row.guardian_ci == guardian_ci
            ),
            key=lambda row: (row.decided_at or row.request.created_at, row.request.account_id),
        )
        return [row.request.account_id for row in approved]

    def approved_guardian_is(self, account_id: str, guardian_ci: str) -> bool:
        return any(
            row.request.account_id == account_id
            and row.status == APPROVED
            and row.guardian_ci == guardian_ci
            for row in self._access.read().consent_requests.values()
        )

    # -- outcomes of destroyed requests --------------------------------------------------
    def add_outcome(
        self, request_id: str, *, status: ConsentRequestStatus, expires_at: datetime, now: datetime
    ) -> None:
        state = self._access.write()
        if request_id in state.consent_outcomes:
            raise FakeIntegrityError("pk_consent_outcomes")
        state.consent_outcomes[request_id] = OutcomeRow(
            status=ConsentRequestStatus(status).value,
            expires_at=utc(expires_at),
            decided_at=utc(now),
        )

    def outcome(self, request_id: str) -> ConsentOutcome | None:
        row = self._access.read().consent_outcomes.get(request_id)
        if row is None:
            return None
        return ConsentOutcome(status=ConsentRequestStatus(row.status), expires_at=row.expires_at)

    def purge_outcomes(self, *, before: datetime) -> int:
        before = utc(before)
        state = self._access.write()
        old = [key for key, row in state.consent_outcomes.items() if row.decided_at < before]
        for key in old:
            del state.consent_outcomes[key]
        return len(old)


class FakeAttemptCounterRepository:
    """Attempts per (scope, key) in fixed windows; past the limit, blocked for a while."""

    def __init__(self, access: StateAccess) -> None:
        self._access = access

    def hit(
        self,
        scope: str,
        key_hash: str,
        *,
        now: datetime,
        window: timedelta,
        limit: int,
        block_for: timedelta | None,
    ) -> AttemptGate:
        now = utc(now)
        counters = self._access.write().attempt_counters
        row = counters.get((scope, key_hash))
        if row is None:
            counters[(scope, key_hash)] = CounterRow(window_start=now, count=1)
            return AttemptGate(admitted=True)
        if row.blocked_until is not None and row.blocked_until > now:
            return AttemptGate(admitted=False, blocked_until=row.blocked_until)
        if row.window_start + window <= now:
            row.window_start, row.count, row.blocked_until = now, 1, None
            return AttemptGate(admitted=True)
        row.count += 1
        if row.count <= limit:
            return AttemptGate(admitted=True)
        if block_for is None:  # refused while at the limit, the refusal not counted
            row.count -= 1
            return AttemptGate(admitted=False, blocked_until=row.window_start + window)
        row.blocked_until = now + block_for
        return AttemptGate(admitted=False, blocked_until=row.blocked_until)

    def release(self, scope: str, key_hash: str, *, counted_at: datetime) -> None:
        row = self._access.write().attempt_counters.get((scope, key_hash))
        if row is not None and row.window_start <= utc(counted_at) and row.count > 0:
            row.count -= 1

    def purge_expired(self, *, before: datetime) -> int:
        before = utc(before)
        counters = self._access.write().attempt_counters
        old = [
            key
            for key, row in counters.items()
            if row.window_start < before
            and (row.blocked_until is None or row.blocked_until < before)
        ]
        for key in old:
            del counters[key]
        return len(old)
