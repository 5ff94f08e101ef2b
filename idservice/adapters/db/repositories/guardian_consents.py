"""Consent requests of children under 14; the guardian's name and contact are encrypted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import GUARDIAN_NAME, GUARDIAN_PHONE
from idservice.domain.guardian_consent import ConsentRequestStatus
from idservice.service_layer.ports import NewConsentRequest


class SqlGuardianConsentRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

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
                status=ConsentRequestStatus.PENDING.value,
                created_at=request.created_at,
                expires_at=request.expires_at,
            )
        )

    def expired_pending(self, *, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(request id, child account id) of pending requests whose window has ended."""
        c = t.guardian_consent_requests.c
        rows = self._c.execute(
            select(c.id, c.account_id)
            .where(c.status == ConsentRequestStatus.PENDING.value, c.expires_at <= now)
            .order_by(c.expires_at)
            .limit(limit)
        ).all()
        return [(row.id, row.account_id) for row in rows]
