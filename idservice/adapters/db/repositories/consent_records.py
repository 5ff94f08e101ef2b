"""Consent records: each grant and withdrawal, kept apart from the account (no foreign key)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, insert, select

from idservice.adapters.db import tables as t
from idservice.adapters.db.compiled import CompiledStatement
from idservice.domain.consents import ConsentChannel, ConsentRecord, ConsentType

_c = t.consent_records.c
# Built once; the insert (every sign-up's) runs on the driver's cursor (compiled.py).
_ADD = CompiledStatement(
    insert(t.consent_records),
    columns=("id", "account_id", "consent_type", "version", "granted", "channel", "recorded_at"),
)
_OF_ACCOUNT = (
    select(t.consent_records)
    .where(_c.account_id == bindparam("account"))
    .order_by(_c.recorded_at, _c.id)
)


class SqlConsentRecordRepository:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add(self, record: ConsentRecord) -> None:
        _ADD.rowcount(
            self._c,
            {
                "id": record.id,
                "account_id": record.account_id,
                "consent_type": record.consent_type.value,
                "version": record.version,
                "granted": record.granted,
                "channel": record.channel.value,
                "recorded_at": record.recorded_at,
            },
        )

    def of_account(self, account_id: str) -> list[ConsentRecord]:
        rows = self._c.execute(_OF_ACCOUNT, {"account": account_id}).all()
        return [
            ConsentRecord(
                id=row.id,
                account_id=row.account_id,
                consent_type=ConsentType(row.consent_type),
                version=row.version,
                granted=bool(row.granted),
                channel=ConsentChannel(row.channel),
                recorded_at=row.recorded_at,
            )
            for row in rows
        ]

    def purge(self, *, before: datetime) -> int:
        return self._c.execute(delete(t.consent_records).where(_c.recorded_at < before)).rowcount
