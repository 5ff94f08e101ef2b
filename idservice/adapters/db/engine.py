"""Database engines: SQLite tuned for concurrent writers, PostgreSQL through psycopg 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

# SQLite waits this long for the write lock before failing (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000


def build_engine(url: str, *, pool_size: int = 20, create_directory: bool = False) -> Engine:
    """Create the engine for a URL.

    `create_directory` makes a SQLite file's missing directory (only the default database's
    ./var is created: Settings.creates_database_directory); otherwise a missing directory is
    left for SQLite to refuse.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, pool_size, create_directory=create_directory)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_engine(url: str, pool_size: int, *, create_directory: bool) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    file_based = database and database != ":memory:" and not database.startswith("file:")
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
        # unit of work saves the BEGIN and ROLLBACK round trips (writes re-check everything
        # they depend on inside their own transaction).
        if not connection.get_execution_options().get("readonly"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
