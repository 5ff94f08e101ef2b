"""The connection log: one row per RPC, the client's address encrypted (통신비밀보호법)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import tables as t
from idservice.adapters.db.compiled import CopyInto
from idservice.adapters.db.encrypted_columns import CONNECTION_CLIENT_IP
from idservice.domain.ids import new_id
from idservice.service_layer.ports import ConnectionEntry

_c = t.connection_log.c
# Built once (no `.values()`): on SQLite each batch is an executemany of column-named rows.
_RECORD = insert(t.connection_log)
_COLUMNS = ("id", "occurred_at", "method", "account_id", "client_ip_ct", "code", "reason")
# On PostgreSQL a batch is one COPY (see `CopyInto`).
_COPY = CopyInto(t.connection_log, _COLUMNS)


class SqlConnectionLogRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def record(self, entries: Sequence[ConnectionEntry]) -> int:
        """The whole batch in one statement: a COPY on PostgreSQL, an executemany of one INSERT
        on SQLite."""
        if not entries:
            return 0
        rows = [self._row(entry) for entry in entries]
        if self._c.dialect.name == "postgresql":
            return _COPY.write(self._c, rows)
        self._c.execute(_RECORD, [dict(zip(_COLUMNS, row, strict=True)) for row in rows])
        return len(rows)

    def _row(self, entry: ConnectionEntry) -> tuple[Any, ...]:
        """The entry's values in `_COLUMNS` order (empty values stored as none at all)."""
        row_id = new_id()
        client_ip = (
            CONNECTION_CLIENT_IP.encrypt(self._cipher, row_id, entry.client_ip)
            if entry.client_ip
            else None
        )
        return (
            row_id,
            entry.occurred_at,
            entry.method,
            entry.account_id or None,
            client_ip,
            entry.code,
            entry.reason or None,
        )

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
