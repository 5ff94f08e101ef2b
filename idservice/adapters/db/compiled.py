"""The hottest statements, compiled once per dialect and run on the driver's own cursor.

SQLAlchemy's execution path costs more than the statement on a cheap call: a compiled-cache
lookup, an execution context, result metadata built from `cursor.description` (psycopg makes a
`Column` object per result column on every execute) and row objects. Measured in-process on
one thread (a read-only unit of work and the session read IntrospectToken makes):
PostgreSQL 190–277 µs through SQLAlchemy, 111–118 µs on psycopg's cursor.

A `CompiledStatement` keeps a SQLAlchemy Core statement (the schema stays the one source of
truth) and, per dialect, what running it needs: the SQL text, the order of its parameters,
the values the statement carries itself, and the bind and result processors of its columns'
types (the same `TypeDecorator`s, so a row reads exactly as SQLAlchemy would give it). It runs
inside a unit of work's connection and transaction; a driver error goes through SQLAlchemy's
own handling (the same `sqlalchemy.exc` exceptions, and a broken connection is invalidated in
the pool), and listeners of SQLAlchemy's cursor events see the statement.

Only statements with fixed shape qualify: no expanding IN lists, literal-rendered or callable
parameters, no RETURNING of the statement itself (one inside a `WITH` feeds the statement, not
the caller), no defaults left for SQLAlchemy to fill in (an INSERT of values names every
column it writes; an INSERT from a SELECT writes what the SELECT gives).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, Connection, Dialect, Insert, Table
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]

_registry_lock = threading.Lock()
_REGISTRY: list[CompiledStatement] = []


@dataclass(frozen=True, slots=True)
class _Plan:
    """What running a statement on one dialect's driver needs."""

    sql: str
    # The columns an INSERT writes (compiled with them as its parameters).
    columns: tuple[str, ...]
    # Parameter names in the order the driver takes them (positional), or each once (named).
    names: tuple[str, ...]
    positional: bool
    # Values the statement itself carries (literals compared against, constants written).
    fixed: Mapping[str, Any]
    binds: tuple[tuple[str, Processor], ...]
    keys: tuple[str, ...]
    results: tuple[tuple[int, Processor], ...]


class CompiledStatement:
    """A Core statement run on the driver's cursor (see the module doc).

    `columns` names the columns an INSERT writes (each then a required parameter); `dialect`
    names the one database a statement of its own dialect (`ON CONFLICT`) is for.
    """

    __slots__ = ("_columns", "_plans", "dialect", "statement")

    def __init__(
        self, statement: ClauseElement, *, columns: Iterable[str] = (), dialect: str | None = None
    ) -> None:
        self.statement = statement
        self._columns = tuple(columns)
        self.dialect = dialect
        self._plans: dict[str, _Plan] = {}
        with _registry_lock:
            _REGISTRY.append(self)

    def plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            if self.dialect not in (None, dialect.name):
                raise ValueError(f"a statement for {self.dialect}, not {dialect.name}")
            plan = self._plans[dialect.name] = plan_for(self.statement, dialect, self._columns)
        return plan

    def first(self, connection: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a mapping of the statement's column keys, or None."""
        plan = self.plan(connection.dialect)
        row = _run(connection, plan, params, lambda cursor: cursor.fetchone())
        return None if row is None else _mapping(plan, row)

    def all(self, connection: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every row, each a mapping of the statement's column keys."""
        plan = self.plan(connection.dialect)
        rows = _run(connection, plan, params, lambda cursor: cursor.fetchall())
        return [_mapping(plan, row) for row in rows]

    def rowcount(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Run it; the number of rows it changed."""
        plan = self.plan(connection.dialect)
        count: int = _run(connection, plan, params, lambda cursor: cursor.rowcount)
        return count


def registered(dialect: Dialect) -> tuple[CompiledStatement, ...]:
    """Every statement made so far that runs on `dialect`'s database."""
    with _registry_lock:
        statements = tuple(_REGISTRY)
    return tuple(s for s in statements if s.dialect in (None, dialect.name))


def prepare_all(dialect: Dialect) -> int:
    """Compile every statement made so far for `dialect` (at start-up, so a statement that does
    not qualify fails there); the number compiled."""
    mine = registered(dialect)
    for statement in mine:
        statement.plan(dialect)
    return len(mine)


def plan_for(statement: ClauseElement, dialect: Dialect, columns: tuple[str, ...] = ()) -> _Plan:
    """What running `statement` on `dialect`'s driver needs; ValueError for a statement that
    would need SQLAlchemy's execution path."""
    # An INSERT of values names the columns it writes; one from a SELECT takes the SELECT's.
    values_insert = isinstance(statement, Insert) and statement.select is None
    if values_insert != bool(columns):
        raise ValueError("an INSERT of values, and only one, names the columns it writes")
    compiled = statement.compile(dialect=dialect, column_keys=list(columns) or None)
    assert isinstance(compiled, SQLCompiler)
    if compiled.escaped_bind_names:
        raise ValueError("parameter names the driver cannot take as they are")
    # Python-side defaults SQLAlchemy would compute at execution (server-side ones and SQL
    # expressions the database computes itself need nothing).
    left = ("insert_prefetch", "update_prefetch", "returning")
    if any(getattr(compiled, name, None) for name in left):
        raise ValueError("defaults or RETURNING left for SQLAlchemy's execution path")
    # Each parameter once, by the name the SQL uses (anonymous ones get theirs at compile time).
    by_name: dict[str, BindParameter[Any]] = {}
    for bind, name in compiled.bind_names.items():
        by_name.setdefault(name, bind)
    if any(
        bind.expanding or bind.literal_execute or bind.callable is not None
        for bind in by_name.values()
    ) or getattr(compiled, "literal_execute_params", None):
        raise ValueError("a parameter decided at execution (an IN list, a literal, a callable)")
    fixed: dict[str, Any] = {}
    binds: list[tuple[str, Processor]] = []
    required = set(columns)
    for name, bind in by_name.items():
        if not (bind.required or name in required):
            fixed[name] = bind.value
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            binds.append((name, processor))
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(by_name)
    keys: list[str] = []
    results: list[tuple[int, Processor]] = []
    selected = getattr(statement, "selected_columns", None)
    if selected is not None:
        for index, (key, column) in enumerate(selected.items()):
            keys.append(key)
            processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                results.append((index, processor))
        if len(set(keys)) != len(keys):
            raise ValueError("result columns need distinct keys")
    return _Plan(
        sql=str(compiled),
        columns=columns,
        names=names,
        positional=bool(compiled.positional),
        fixed=fixed,
        binds=tuple(binds),
        keys=tuple(keys),
        results=tuple(results),
    )


def _arguments(plan: _Plan, params: Mapping[str, Any]) -> Any:
    """The driver's parameters: a tuple in SQL order (SQLite), or a mapping (psycopg)."""
    values = {**plan.fixed, **params} if plan.fixed else dict(params)
    for name, processor in plan.binds:
        values[name] = processor(values[name])
    if plan.positional:
        return tuple(values[name] for name in plan.names)
    return {name: values[name] for name in plan.names}


def _run(
    connection: Connection,
    plan: _Plan,
    params: Mapping[str, Any],
    read: Callable[[Any], Any],
) -> Any:
    if not connection.in_transaction():
        connection.begin()  # as SQLAlchemy's autobegin would (units of work have begun)
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    sql = plan.sql
    arguments: Any = params
    # Listeners of SQLAlchemy's cursor events see these statements as they would any other
    # (none are set on the units of work's engine in service; tests count statements with
    # them). They get no execution context.
    events = connection._has_events or connection.engine._has_events
    try:
        arguments = _arguments(plan, params)
        if events:
            for listener in connection.dispatch.before_cursor_execute:
                sql, arguments = listener(connection, cursor, sql, arguments, None, False)
        cursor.execute(sql, arguments)
        if events:
            connection.dispatch.after_cursor_execute(
                connection, cursor, sql, arguments, None, False
            )
        return read(cursor)
    except BaseException as exc:
        # SQLAlchemy's own handling: a driver error becomes its sqlalchemy.exc class, any other
        # a StatementError, and a connection the dialect finds broken (or one interrupted
        # mid-statement) is invalidated.
        connection._handle_dbapi_exception(exc, sql, arguments, cursor, None)
    finally:
        cursor.close()


def _mapping(plan: _Plan, row: Any) -> dict[str, Any]:
    if not plan.results:
        return dict(zip(plan.keys, row, strict=True))
    values = list(row)
    for index, processor in plan.results:
        values[index] = processor(values[index])
    return dict(zip(plan.keys, values, strict=True))


class CopyInto:
    """Rows appended to a table with PostgreSQL's `COPY … FROM STDIN` on psycopg's cursor.

    For a batch of many rows (the connection log's) COPY is the cheap path on both sides: one
    statement streams every row, where an executemany sends an INSERT per row (measured on
    PostgreSQL 15: 24 µs of Python and 10–15 µs of the server's CPU per row with executemany,
    9 µs and about 5 µs with COPY). Values go through the columns' own bind processors (the
    same `TypeDecorator`s an INSERT uses); psycopg escapes each value for COPY's text format.
    Errors and cursor events are handled as in `CompiledStatement`.
    """

    __slots__ = ("_columns", "_plan", "table")

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.table = table
        self._columns = tuple(columns)
        missing = [name for name in self._columns if name not in table.c]
        if missing:
            raise ValueError(f"{table.name} has no column {', '.join(missing)}")
        self._plan: tuple[str, tuple[tuple[int, Processor], ...]] | None = None

    def plan(self, dialect: Dialect) -> tuple[str, tuple[tuple[int, Processor], ...]]:
        """The COPY statement and the bind processors by column index (made once)."""
        if dialect.name != "postgresql" or dialect.driver != "psycopg":
            raise ValueError(
                f"COPY runs on psycopg's PostgreSQL, not {dialect.name}+{dialect.driver}"
            )
        if self._plan is None:
            preparer = dialect.identifier_preparer
            columns = [self.table.c[name] for name in self._columns]
            sql = "COPY {} ({}) FROM STDIN".format(
                preparer.format_table(self.table),
                ", ".join(preparer.format_column(column) for column in columns),
            )
            binds = []
            for index, column in enumerate(columns):
                processor = column.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    binds.append((index, processor))
            self._plan = (sql, tuple(binds))
        return self._plan

    def write(self, connection: Connection, rows: Iterable[Sequence[Any]]) -> int:
        """Append `rows` (values in the columns' order) in the connection's transaction; how
        many were written."""
        sql, binds = self.plan(connection.dialect)
        if not connection.in_transaction():
            connection.begin()
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        events = connection._has_events or connection.engine._has_events
        width = len(self._columns)
        written = 0
        try:
            if events:
                for listener in connection.dispatch.before_cursor_execute:
                    sql, _ = listener(connection, cursor, sql, None, None, False)
            with cursor.copy(sql) as copy:
                for row in rows:
                    if len(row) != width:
                        raise ValueError(f"a row of {len(row)} values for {width} columns")
                    if binds:
                        values = list(row)
                        for index, processor in binds:
                            values[index] = processor(values[index])
                        copy.write_row(values)
                    else:
                        copy.write_row(row)
                    written += 1
            if events:
                connection.dispatch.after_cursor_execute(connection, cursor, sql, None, None, False)
            return written
        except BaseException as exc:
            connection._handle_dbapi_exception(exc, sql, None, cursor, None)
        finally:
            cursor.close()
