"""Database engines: SQLite tuned for concurrent writers, PostgreSQL through psycopg 3."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError

# SQLite waits this long for the write lock before failing (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000
# A pooled PostgreSQL connection idle longer than this is pinged before it is handed out; one in
# steady use is not (a ping per checkout would be a round trip on every call).
IDLE_PING_AFTER_SECONDS = 10.0
_IDLE_SINCE = "idservice_idle_since"
_BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"


def build_engine(
    url: str, *, pool_size: int = 20, create_directory: bool = False, existing: bool = False
) -> Engine:
    """Create the engine for a URL.

    `create_directory` makes a SQLite file's missing directory (only the default database's
    ./var is created: Settings.creates_database_directory); otherwise a missing directory is
    left for SQLite to refuse. `existing` refuses a SQLite file that is not there yet
    (FileNotFoundError) instead of letting SQLite create an empty one: for a command that reads
    a database and must not mistake a wrong path for an empty database.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, pool_size, create_directory=create_directory, existing=existing)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """Instead of `pool_pre_ping` (a `SELECT 1` round trip on every checkout): a connection
    that sat idle in the pool (where a database restart or an idle timeout kills it unseen) is
    pinged first, and a dead one is replaced by the pool before any call sees it. A connection
    that dies while in use fails its statement: `errors.is_unavailable` answers
    DATABASE_UNAVAILABLE (retryable), and SQLAlchemy then discards every older pooled
    connection, so the next checkout opens a fresh one."""

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_AFTER_SECONDS:
            return
        try:
            # The dialect's own ping (the one `pool_pre_ping` uses; it opens no transaction).
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out another (a fresh one if need be).
            raise DisconnectionError("pooled connection is dead") from exc


def _sqlite_engine(url: str, pool_size: int, *, create_directory: bool, existing: bool) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    file_based = database and database != ":memory:" and not database.startswith("file:")
    if existing and file_based and not Path(database).expanduser().is_file():
        raise FileNotFoundError("no SQLite database file at the configured path")
    if create_directory and file_based:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # No pre-ping: a local file cannot drop a connection the way a server can.
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=30,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Manage transactions ourselves so writers take the lock up front (BEGIN IMMEDIATE):
        # a deferred transaction that later upgrades to a write can fail without waiting.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Destroyed means destroyed (korea-rules Retention 1): deleted rows' bytes are zeroed,
        # not left in free pages of the file.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        # Reads run in autocommit: each statement sees one consistent WAL snapshot, and a read
        # saves the BEGIN and ROLLBACK (writes re-check everything they depend on inside their
        # own transaction).
        if connection.get_execution_options().get("readonly"):
            return
        begin_immediate(connection.connection.driver_connection)

    return engine


def begin_immediate(driver_connection: Any) -> None:
    """BEGIN IMMEDIATE on a SQLite connection (pysqlite in autocommit: `isolation_level`
    None), straight to the driver: SQLAlchemy's statement machinery costs more than the BEGIN
    itself. Errors are wrapped as SQLAlchemy's own, as `exec_driver_sql` would."""
    try:
        driver_connection.execute(_BEGIN_IMMEDIATE)
    except sqlite3.Error as error:
        raise DBAPIError.instance(_BEGIN_IMMEDIATE, None, error, sqlite3.Error) from error


def statement_engine(engine: Engine) -> Engine:
    """An engine on `engine`'s pool (the same connections, set up and observed by the same pool
    events) without its connection events, for the units of work.

    SQLAlchemy sends every statement of an engine that has any connection event (our SQLite
    `begin` above, the metrics' `engine_disposed`) through its event dispatch, which costs more
    than a short SQLite statement itself; a unit of work begins its own SQLite transactions
    (`begin_immediate`) instead. Migrations and maintenance keep `engine`, whose `begin` makes
    their transactions real on SQLite.

    The new engine keeps the pool `engine` has now: disposing `engine` (`App.close`, after the
    server has stopped) retires the units of work too.
    """
    # The same dialect object too: the pool's first connection initialised it (server version,
    # isolation level), which a new dialect on an already-connected pool would never get.
    return Engine(engine.pool, engine.dialect, engine.url)
