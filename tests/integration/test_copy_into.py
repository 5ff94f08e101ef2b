"""`CopyInto` (adapters/db/compiled.py): PostgreSQL's COPY for the connection log's batches.
One statement per batch, values through the columns' bind processors, SQLAlchemy's errors, and
nothing of a failed batch left behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from idservice.adapters.crypto import FieldCipher, KeyRing
from idservice.adapters.db import migrations
from idservice.adapters.db import tables as t
from idservice.adapters.db.compiled import CopyInto
from idservice.adapters.db.engine import build_engine
from idservice.adapters.db.repositories.connection_log import SqlConnectionLogRepository
from idservice.service_layer.ports import ConnectionEntry
from tests.support.postgres import PostgresCluster
from tests.support.records import NOW, new_id

COLUMNS = ("id", "occurred_at", "method", "account_id", "client_ip_ct", "code", "reason")


@pytest.fixture
def engine(postgres_cluster: PostgresCluster | None) -> Iterator[Engine]:
    if postgres_cluster is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")
    url = postgres_cluster.create_database(f"copy_{new_id().replace('-', '')[:12]}")
    built = build_engine(url, pool_size=1)
    try:
        migrations.upgrade(built)
        yield built
    finally:
        built.dispose()


def row(**fields: Any) -> tuple[Any, ...]:
    values = {
        "id": new_id(),
        "occurred_at": NOW,
        "method": "/s/M",
        "account_id": None,
        "client_ip_ct": None,
        "code": "OK",
        "reason": None,
        **fields,
    }
    return tuple(values[name] for name in COLUMNS)


def stored(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(t.connection_log)).scalar_one()
        )


def test_a_batch_is_one_copy_statement(engine: Engine) -> None:
    seen: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    repository_rows = [
        ConnectionEntry(
            occurred_at=NOW,
            method="/s/M",
            code="OK",
            reason=None,
            account_id=None,
            client_ip="203.0.113.7",
        )
    ] * 50
    cipher = FieldCipher(KeyRing.generate("copy"))
    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", capture)
        assert SqlConnectionLogRepository(connection, cipher).record(repository_rows) == 50
        connection.commit()
    assert seen == [
        "COPY connection_log (id, occurred_at, method, account_id, client_ip_ct, code, reason) "
        "FROM STDIN"
    ]
    assert stored(engine) == 50


def test_times_go_through_the_columns_bind_processor(engine: Engine) -> None:
    seoul = timezone(timedelta(hours=9))
    copy = CopyInto(t.connection_log, COLUMNS)
    with engine.begin() as connection:
        copy.write(connection, [row(id="a", occurred_at=NOW.astimezone(seoul))])
    with engine.connect() as connection:
        (when,) = connection.execute(select(t.connection_log.c.occurred_at)).scalars()
    assert when == NOW and when.utcoffset() == timedelta(0)
    # A naive time is refused by the column's type, as an INSERT refuses it.
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as connection:
        copy.write(connection, [row(occurred_at=NOW.replace(tzinfo=None))])


def test_a_failed_batch_leaves_nothing_and_the_connection_works_on(engine: Engine) -> None:
    copy = CopyInto(t.connection_log, COLUMNS)
    with engine.connect() as connection:
        with pytest.raises(IntegrityError):
            copy.write(connection, [row(id="same"), row(id="other"), row(id="same")])
        connection.rollback()
        # A row of the wrong width is refused before it is sent.
        with pytest.raises(StatementError, match="a row of 2 values for 7 columns"):
            copy.write(connection, [row(), ("x", NOW)])
        connection.rollback()
        assert copy.write(connection, [row(), row()]) == 2
        connection.commit()
    assert stored(engine) == 2


def test_only_postgresql_and_only_the_tables_columns() -> None:
    with pytest.raises(ValueError, match="COPY runs on psycopg's PostgreSQL, not sqlite"):
        CopyInto(t.connection_log, COLUMNS).plan(sqlite.dialect())
    with pytest.raises(ValueError, match="connection_log has no column ip"):
        CopyInto(t.connection_log, ("id", "ip"))


def test_a_connection_lost_mid_copy_is_invalidated_and_replaced(engine: Engine) -> None:
    """As for any statement (SQLAlchemy's own handling): the error says the connection was
    invalidated, nothing of the batch is stored, and the next checkout is a new connection."""
    copy = CopyInto(t.connection_log, COLUMNS)
    with engine.connect() as connection:
        lost_pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        connection.rollback()

        def rows() -> Iterator[tuple[Any, ...]]:
            for index in range(20_000):
                if index == 100:
                    with engine.connect() as other:
                        other.exec_driver_sql(f"SELECT pg_terminate_backend({int(lost_pid)})")
                yield row()

        with pytest.raises(OperationalError) as caught:
            copy.write(connection, rows())
        assert caught.value.connection_invalidated
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != lost_pid
    assert stored(engine) == 0
