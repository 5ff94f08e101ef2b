"""Consent requests of children under 14; the guardian's name and contact are encrypted."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, delete, func, insert, or_, select, update

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import GUARDIAN_NAME, GUARDIAN_PHONE
from idservice.domain.guardian_consent import ConsentRequestStatus
from idservice.service_layer.ports import (
    AttemptGate,
    ConsentOutcome,
    ConsentRequest,
    NewConsentRequest,
)

PENDING = ConsentRequestStatus.PENDING.value
APPROVED = ConsentRequestStatus.APPROVED.value


class SqlGuardianConsentRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def _ci_index(self, ci: str) -> str:
        return self._cipher.blind_index(ci, purpose="guardian-ci")

    def add(self, request: NewConsentRequest) -> None:
        self._c.execute(
            insert(t.guardian_consent_requests).values(
                id=request.id,
                account_id=request.account_id,
                guardian_name_ct=GUARDIAN_NAME.encrypt(
                    self._cipher, request.id, request.guardian_name
                ),
                guardian_phone_ct=GUARDIAN_PHONE.encrypt(
                    self._cipher, request.id, request.guardian_phone
                ),
                code_hash=request.code_hash,
                status=PENDING,
                created_at=request.created_at,
                expires_at=request.expires_at,
                notifications_sent=1,
                last_notified_at=request.created_at,
            )
        )

    def get(self, request_id: str) -> ConsentRequest | None:
        c = t.guardian_consent_requests.c
        row = self._c.execute(select(t.guardian_consent_requests).where(c.id == request_id)).first()
        return None if row is None else self._request(row._mapping)

    def expired_pending(self, *, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(request id, child account id) of pending requests whose window has ended."""
        c = t.guardian_consent_requests.c
        rows = self._c.execute(
            select(c.id, c.account_id)
            .where(c.status == PENDING, c.expires_at <= now)
            .order_by(c.expires_at)
            .limit(limit)
        ).all()
        return [(row.id, row.account_id) for row in rows]

    def admit_code_attempt(
        self, request_id: str, *, now: datetime, max_attempts: int
    ) -> AttemptGate:
        c = t.guardian_consent_requests.c
        # The child's account first, shared (FOR KEY SHARE): the attempt updates the request's
        # row twice, and PostgreSQL checks the second update's foreign key against the account
        # (the row's last version is this transaction's own), so a rejection deleting the
        # account, waiting for the request's row, would deadlock with it. Taken first, the
        # account makes the rejection wait for the attempt instead; an approval's update of
        # the account (no key change) does not conflict with it.
        if self._c.dialect.name == "postgresql":
            self._c.execute(
                select(t.accounts.c.id)
                .join(t.guardian_consent_requests, c.account_id == t.accounts.c.id)
                .where(c.id == request_id)
                .with_for_update(key_share=True, of=t.accounts)
            )
        admitted = self._c.execute(
            update(t.guardian_consent_requests)
            .where(
                c.id == request_id,
                or_(c.code_locked_until.is_(None), c.code_locked_until <= now),
                c.failed_code_attempts < max_attempts,
            )
            .values(failed_code_attempts=c.failed_code_attempts + 1, code_locked_until=None)
        ).rowcount
        if admitted == 1:
            return AttemptGate(admitted=True)
        until = self._c.execute(
            select(c.code_locked_until).where(c.id == request_id)
        ).scalar_one_or_none()
        if isinstance(until, datetime) and until > now:
            return AttemptGate(admitted=False, blocked_until=until)
        # Attempts still in flight fill the bound: a moment, then retry.
        return AttemptGate(admitted=False, blocked_until=now + timedelta(seconds=1))

    def end_code_attempt(
        self, request_id: str, *, right: bool, now: datetime, max_attempts: int, pause: timedelta
    ) -> None:
        c = t.guardian_consent_requests.c
        if right:
            values: dict[str, Any] = {"failed_code_attempts": 0}
        else:
            reaches = c.failed_code_attempts >= max_attempts
            values = {
                "failed_code_attempts": case((reaches, 0), else_=c.failed_code_attempts),
                "code_locked_until": case((reaches, now + pause), else_=c.code_locked_until),
            }
        self._c.execute(
            update(t.guardian_consent_requests).where(c.id == request_id).values(values)
        )

    def replace_code(
        self,
        request_id: str,
        *,
        code_hash: str,
        now: datetime,
        sent_before: datetime | None = None,
        max_sent: int | None = None,
    ) -> bool:
        c = t.guardian_consent_requests.c
        bounds = []
        if sent_before is not None:
            bounds.append(func.coalesce(c.last_notified_at, c.created_at) <= sent_before)
        if max_sent is not None:
            bounds.append(c.notifications_sent < max_sent)
        result = self._c.execute(
            update(t.guardian_consent_requests)
            .where(c.id == request_id, c.status == PENDING, c.expires_at > now, *bounds)
            .values(
                code_hash=code_hash,
                notifications_sent=c.notifications_sent + 1,
                last_notified_at=now,
            )
        )
        return bool(result.rowcount == 1)

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
        c = t.guardian_consent_requests.c
        result = self._c.execute(
            update(t.guardian_consent_requests)
            .where(c.id == request_id, c.status == PENDING, c.expires_at > now)
            .values(
                status=APPROVED,
                decided_at=now,
                method=method,
                guardian_name_ct=GUARDIAN_NAME.encrypt(self._cipher, request_id, guardian_name),
                guardian_phone_ct=GUARDIAN_PHONE.encrypt(self._cipher, request_id, guardian_phone),
                guardian_ci_index=self._ci_index(guardian_ci),
                failed_code_attempts=0,
            )
        )
        return bool(result.rowcount == 1)

    def of_account(self, account_id: str) -> ConsentRequest | None:
        c = t.guardian_consent_requests.c
        row = self._c.execute(
            select(t.guardian_consent_requests)
            .where(c.account_id == account_id)
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(1)
        ).first()
        return None if row is None else self._request(row._mapping)

    def approved_wards(self, guardian_ci: str) -> list[str]:
        c = t.guardian_consent_requests.c
        rows = self._c.execute(
            select(c.account_id)
            .where(c.status == APPROVED, c.guardian_ci_index == self._ci_index(guardian_ci))
            .order_by(c.decided_at, c.account_id)
        ).scalars()
        return list(rows)

    def approved_guardian_is(self, account_id: str, guardian_ci: str) -> bool:
        c = t.guardian_consent_requests.c
        found = self._c.execute(
            select(c.id).where(
                c.account_id == account_id,
                c.status == APPROVED,
                c.guardian_ci_index == self._ci_index(guardian_ci),
            )
        ).first()
        return found is not None

    def add_outcome(
        self, request_id: str, *, status: ConsentRequestStatus, expires_at: datetime, now: datetime
    ) -> None:
        self._c.execute(
            insert(t.consent_outcomes).values(
                id=request_id, status=status.value, expires_at=expires_at, decided_at=now
            )
        )

    def outcome(self, request_id: str) -> ConsentOutcome | None:
        o = t.consent_outcomes.c
        row = self._c.execute(select(o.status, o.expires_at).where(o.id == request_id)).first()
        if row is None:
            return None
        return ConsentOutcome(status=ConsentRequestStatus(row.status), expires_at=row.expires_at)

    def purge_outcomes(self, *, before: datetime) -> int:
        o = t.consent_outcomes.c
        return self._c.execute(delete(t.consent_outcomes).where(o.decided_at < before)).rowcount

    def _request(self, m: Any) -> ConsentRequest:
        request_id: str = m["id"]

        def dec(column: Any) -> str:
            value = m[column.column]
            return "" if value is None else str(column.decrypt(self._cipher, request_id, value))

        return ConsentRequest(
            id=request_id,
            account_id=m["account_id"],
            status=ConsentRequestStatus(m["status"]),
            code_hash=m["code_hash"],
            guardian_name=dec(GUARDIAN_NAME),
            guardian_phone=dec(GUARDIAN_PHONE),
            created_at=m["created_at"],
            expires_at=m["expires_at"],
            decided_at=m["decided_at"],
            notifications_sent=m["notifications_sent"],
            last_notified_at=m["last_notified_at"],
            method=m["method"],
        )
