"""Statements compiled once and run on the driver's cursor (`adapters/db/compiled.py`): they
read and write exactly as SQLAlchemy's execution path does, on SQLite and PostgreSQL, and a
statement that would need SQLAlchemy's execution path is refused when it is compiled."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Executable,
    Integer,
    bindparam,
    event,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.compiler import SQLCompiler

from idservice.adapters.crypto import FieldCipher, KeyRing
from idservice.adapters.db import migrations
from idservice.adapters.db import tables as t
from idservice.adapters.db.compiled import (
    CompiledStatement,
    plan_for,
    prepare_all,
    registered,
)
from idservice.adapters.db.engine import build_engine
from idservice.adapters.db.repositories import account_statements as q
from idservice.adapters.db.repositories import sessions as session_statements
from idservice.adapters.db.unit_of_work import SqlUnitOfWorkFactory
from idservice.domain.sessions import Session
from idservice.domain.sns import SnsProvider
from tests.support.records import NOW, make_account, make_session, make_sns_link


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    built = build_engine(database_url)
    try:
        migrations.upgrade(built)
        yield built
    finally:
        built.dispose()


def test_every_hot_statement_compiles_for_both_databases() -> None:
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        assert prepare_all(dialect) >= 20
    plan = q.CREDENTIALS_BY_EMAIL.plan(sqlite.dialect())
    assert plan.positional and plan.names == ("email_index",)
    assert "password_hash" in plan.keys


@pytest.mark.parametrize(
    ("statement", "columns"),
    [
        # an IN list has no fixed SQL
        (select(t.accounts.c.id).where(t.accounts.c.id.in_(bindparam("ids", expanding=True))), ()),
        # an INSERT names the columns it writes ...
        (insert(t.sessions), ()),
        # ... and leaves no Python-side default for SQLAlchemy to fill in (failed_logins)
        (insert(t.accounts), ("id", "status", "identity_verified")),
        # RETURNING is read back by SQLAlchemy's execution path
        (insert(t.sessions).returning(t.sessions.c.id), ("id",)),
        # a SELECT writes no columns
        (select(t.sessions.c.id), ("id",)),
        # parameters whose SQL or value is decided at execution
        (
            select(t.sessions.c.id).where(t.sessions.c.id == bindparam("x", literal_execute=True)),
            (),
        ),
        (select(t.sessions.c.id).where(t.sessions.c.id == bindparam("x", callable_=str)), ()),
    ],
)
def test_a_statement_needing_sqlalchemys_execution_path_is_refused(
    statement: Any, columns: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError):
        plan_for(statement, sqlite.dialect(), columns)


def _sqlalchemys(
    connection: Connection, compiled: CompiledStatement, params: dict[str, Any]
) -> Any:
    return [
        dict(row._mapping)
        for row in connection.execute(cast(Executable, compiled.statement), params)
    ]


def test_rows_read_as_sqlalchemy_reads_them(engine: Engine) -> None:
    cipher = FieldCipher(KeyRing.generate("t1"))
    uow = SqlUnitOfWorkFactory(engine, cipher)
    locked = make_account(email="locked@example.com")
    other = make_account(email="other@example.com", password_hash=None)
    session = make_session(locked.id)
    with uow() as tx:
        tx.accounts.add(locked, email_key="locked@example.com")
        tx.accounts.add(other, email_key="other@example.com")
        tx.sessions.add(session)
        tx.sessions.add_refresh_token(
            "h" * 64, session_id=session.id, now=NOW, expires_at=NOW + timedelta(days=1)
        )
        tx.sns_identities.add(make_sns_link(locked.id, SnsProvider.KAKAO))
        locked_index = tx.accounts.email_index("locked@example.com")
        other_index = tx.accounts.email_index("other@example.com")
        tx.commit()
    with engine.connect() as connection:
        connection.execute(
            t.accounts.update()
            .where(t.accounts.c.id == locked.id)
            .values(locked_until=NOW + timedelta(minutes=30), marketing_opt_in=True)
        )
        cases: list[tuple[CompiledStatement, dict[str, Any]]] = [
            (q.BY_ID, {"account_id": locked.id}),
            (q.BY_ID, {"account_id": other.id}),
            (q.BY_EMAIL, {"email_index": locked_index}),
            (q.CREDENTIALS_BY_EMAIL, {"email_index": other_index}),
            (q.CREDENTIALS_BY_EMAIL, {"email_index": "unknown"}),
            (q.LOCKED_UNTIL, {"account_id": locked.id}),
            (q.HOLD_UNTIL[True, True], {"ci_index": "c", "di_index": "d", "now": NOW}),
            (session_statements._GET_WITH_CONSENTS, {"session_id": session.id}),
            (session_statements._GET_WITH_PROFILE, {"session_id": session.id}),
            (session_statements._GET_WITH_STANDING, {"session_id": session.id}),
            (session_statements._FIND_REFRESH_WITH_STANDING, {"token_hash": "h" * 64}),
        ]
        for compiled, params in cases:
            rows = compiled.all(connection, params)
            assert rows == _sqlalchemys(connection, compiled, params), compiled.statement
            assert compiled.first(connection, params) == (rows[0] if rows else None)
        # Datetimes read aware (UTC) and booleans as booleans on both databases.
        (row,) = q.BY_ID.all(connection, {"account_id": locked.id})[:1]
        assert row["locked_until"] == NOW + timedelta(minutes=30)
        assert row["marketing_opt_in"] is True and row["identity_verified"] in (True, False)
        connection.rollback()


def _a_session_to_add(engine: Engine) -> tuple[SqlUnitOfWorkFactory, Session, dict[str, Any]]:
    """Units of work on `engine`, a session of a stored account, and its row for `_ADD`."""
    uow = SqlUnitOfWorkFactory(engine, FieldCipher(KeyRing.generate("t1")))
    account = make_account()
    with uow() as tx:
        tx.accounts.add(account, email_key="a@example.com")
        tx.commit()
    session = make_session(account.id)
    row = {
        "id": session.id,
        "account_id": account.id,
        "amr": ",".join(session.amr),
        "created_at": session.created_at,
        "expires_at": session.expires_at,
    }
    return uow, session, row


def test_writes_count_their_rows_and_raise_sqlalchemys_errors(engine: Engine) -> None:
    uow, session, row = _a_session_to_add(engine)
    with engine.connect() as connection:
        assert session_statements._ADD.rowcount(connection, row) == 1
        assert q.ATTEMPT_SUCCEEDED.rowcount(connection, {"account_id": session.account_id}) == 1
        assert q.ATTEMPT_SUCCEEDED.rowcount(connection, {"account_id": "nobody"}) == 0
        with pytest.raises(IntegrityError), connection.begin_nested():
            session_statements._ADD.rowcount(connection, row)
        # The transaction goes on after the savepoint's rollback.
        (read,) = session_statements._GET_WITH_STANDING.all(connection, {"session_id": session.id})
        assert read["session_expires_at"] == session.expires_at
        connection.commit()
    with uow(readonly=True) as tx:
        assert tx.sessions.get(session.id) == session


_SAVEPOINTS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


def _value_for(name: str, bind_type: Any) -> Any:
    """A value of the parameter's type (the statement may find no row, or fail a constraint:
    only what reaches the driver is compared)."""
    if isinstance(bind_type, t.UtcDateTime):
        return NOW
    if isinstance(bind_type, Boolean):
        return True
    if isinstance(bind_type, Integer):
        return 3
    return f"v-{name}"


def _sent(connection: Connection, seen: list[tuple[str, Any]], run: Callable[[], object]) -> Any:
    """The statement and parameters `run` sent to the driver (in a savepoint rolled back)."""
    seen.clear()
    try:
        with connection.begin_nested():
            run()
    except DBAPIError:
        pass  # a foreign key or NOT NULL the made-up values break: sent all the same
    (statement,) = [s for s in seen if not s[0].startswith(_SAVEPOINTS)]
    return statement


def test_every_statement_reaches_the_driver_as_sqlalchemy_sends_it(engine: Engine) -> None:
    """Each compiled statement of this database, with a value for each of its parameters: the
    SQL and the parameters the driver gets are the ones SQLAlchemy's execution path sends
    (bind processors, values the statement carries, their order on SQLite)."""
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, sql: str, parameters: Any, *_rest: Any) -> None:
        seen.append((sql, parameters))

    dialect = engine.dialect
    compared = 0
    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", capture)
        for compiled in registered(dialect):
            plan = compiled.plan(dialect)
            sql = compiled.statement.compile(dialect=dialect, column_keys=list(plan.columns))
            params = {
                name: _value_for(name, bind.type)
                for bind, name in cast(SQLCompiler, sql).bind_names.items()
                if name not in plan.fixed
            }
            sqlalchemys = _sent(
                connection,
                seen,
                functools.partial(connection.execute, cast(Executable, compiled.statement), params),
            )
            mine = _sent(connection, seen, functools.partial(compiled.rowcount, connection, params))
            assert mine == sqlalchemys, compiled.statement
            compared += 1
        connection.rollback()
    assert compared >= 30


def test_a_statement_on_a_connection_outside_a_transaction_begins_one(engine: Engine) -> None:
    """As SQLAlchemy's autobegin: a write is in a transaction the connection commits."""
    uow, session, row = _a_session_to_add(engine)
    with engine.connect() as connection:
        session_statements._ADD.rowcount(connection, row)
        assert connection.in_transaction()
        connection.commit()
    with uow(readonly=True) as tx:
        assert tx.sessions.get(session.id) == session


def test_a_statement_of_one_database_is_never_compiled_for_another() -> None:
    from sqlalchemy.dialects import sqlite

    from idservice.adapters.db.repositories.sessions import _ROTATE_REFRESH_POSTGRES

    assert _ROTATE_REFRESH_POSTGRES not in registered(sqlite.dialect())
    with pytest.raises(ValueError, match="for postgresql, not sqlite"):
        _ROTATE_REFRESH_POSTGRES.plan(sqlite.dialect())
