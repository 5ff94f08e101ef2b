"""An INSERT that skips a row whose key is taken (`ON CONFLICT (key) DO NOTHING`), on both
databases: the caller reads `rowcount` (0 = the key was taken) instead of catching the
integrity error inside a savepoint, which costs two more statements (SAVEPOINT, RELEASE) on
every insert that succeeds. Other constraints (a primary key, a foreign key) still fail the
statement as before."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert


class InsertNew:
    """Built once per table and key; `execute` picks the connection's dialect."""

    def __init__(self, table: Table, key: Sequence[str]) -> None:
        columns = [table.c[name] for name in key]
        # SQLAlchemy keeps an INSERT's rowcount only when asked to (psycopg's is -1 otherwise).
        self._by_dialect: dict[str, Insert] = {
            name: dialect.insert(table)
            .on_conflict_do_nothing(index_elements=columns)
            .execution_options(preserve_rowcount=True)
            for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
        }

    def execute(self, connection: Connection, values: dict[str, object]) -> bool:
        """Insert `values`; False when a row with the same key exists (nothing written)."""
        result = connection.execute(self._by_dialect[connection.dialect.name], values)
        return bool(result.rowcount == 1)
