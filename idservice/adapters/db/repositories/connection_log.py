"""The connection log: one row per RPC, the client's address encrypted (통신비밀보호법)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import CONNECTION_CLIENT_IP
from idservice.domain.ids import new_id
from idservice.service_layer.ports import ConnectionEntry

_c = t.connection_log.c
# Built once (no `.values()`): each batch is an executemany of column-named rows.
_RECORD = insert(t.connection_log)


class SqlConnectionLogRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def record(self, entries: Sequence[ConnectionEntry]) -> int:
        """One multi-row INSERT (executemany) for the whole batch."""
        rows: list[dict[str, Any]] = []
        for entry in entries:
            row_id = new_id()
            rows.append(
                {
                    "id": row_id,
                    "occurred_at": entry.occurred_at,
                    "method": entry.method,
                    "account_id": entry.account_id or None,
                    "client_ip_ct": (
                        CONNECTION_CLIENT_IP.encrypt(self._cipher, row_id, entry.client_ip)
                        if entry.client_ip
                        else None
                    ),
                    "code": entry.code,
                    "reason": entry.reason or None,
                }
            )
        if rows:
            self._c.execute(_RECORD, rows)
        return len(rows)

    def purge(self, *, before: datetime) -> int:
        result = self._c.execute(delete(t.connection_log).where(_c.occurred_at < before))
        return int(result.rowcount)

    def of_account(self, account_id: str, *, since: datetime) -> list[ConnectionEntry]:
        rows = self._c.execute(
            select(_c.id, _c.occurred_at, _c.method, _c.client_ip_ct, _c.code, _c.reason)
            .where(_c.account_id == account_id, _c.occurred_at >= since)
            .order_by(_c.occurred_at, _c.id)
        ).all()
        return [
            ConnectionEntry(
                occurred_at=row.occurred_at,
                method=row.method,
                code=row.code,
                reason=row.reason,
                account_id=account_id,
                client_ip=(
                    CONNECTION_CLIENT_IP.decrypt(self._cipher, row.id, row.client_ip_ct)
                    if row.client_ip_ct
                    else None
                ),
            )
            for row in rows
        ]
