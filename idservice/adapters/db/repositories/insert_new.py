"""An INSERT that skips a row whose key is taken (`ON CONFLICT (key) DO NOTHING`), on both
databases: the caller reads `rowcount` (0 = the key was taken) instead of catching the
integrity error inside a savepoint, which costs two more statements (SAVEPOINT, RELEASE) on
every insert that succeeds. Other constraints (a primary key, a foreign key) still fail the
statement as before."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from idservice.adapters.db.compiled import CompiledStatement


class InsertNew:
    """Built once per table, key and the columns written; run on the driver's cursor
    (compiled.py) with the connection's dialect."""

    def __init__(self, table: Table, key: Sequence[str], *, columns: Sequence[str]) -> None:
        index = [table.c[name] for name in key]
        self._by_dialect = {
            name: CompiledStatement(
                dialect.insert(table).on_conflict_do_nothing(index_elements=index),
                columns=columns,
                dialect=name,
            )
            for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
        }

    def execute(self, connection: Connection, values: dict[str, object]) -> bool:
        """Insert `values`; False when a row with the same key exists (nothing written)."""
        return self._by_dialect[connection.dialect.name].rowcount(connection, values) == 1
