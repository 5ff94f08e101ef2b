"""The units of work's engine: the application engine's pool without its connection events,
and on SQLite a write's transaction that holds the database's write lock from its start."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, text

from idservice.adapters.crypto import FieldCipher, KeyRing
from idservice.adapters.db import migrations
from idservice.adapters.db.engine import build_engine
from idservice.adapters.db.unit_of_work import SqlUnitOfWorkFactory
from idservice.domain.errors import DomainError, Reason
from idservice.domain.sessions import Session
from tests.support.postgres import PostgresCluster
from tests.support.records import NOW, make_account, make_session

_databases = itertools.count()


@contextlib.contextmanager
def migrated(url: str, *, pool_size: int = 20) -> Iterator[tuple[Engine, SqlUnitOfWorkFactory]]:
    """A migrated database's engine (its pool emptied of the migration's connection) and the
    units of work on it."""
    engine = build_engine(url, pool_size=pool_size)
    try:
        migrations.upgrade(engine)
        engine.dispose()
        yield engine, SqlUnitOfWorkFactory(engine, FieldCipher(KeyRing.generate("t1")))
    finally:
        engine.dispose()


def a_write_left_uncommitted_leaves_nothing(uow: SqlUnitOfWorkFactory, email: str) -> None:
    """A write that leaves without commit is rolled back: it ran in a real transaction."""
    account = make_account()
    with pytest.raises(LookupError), uow() as tx:
        tx.accounts.add(account, email_key=email)
        raise LookupError
    with uow(readonly=True) as tx:
        assert tx.accounts.get(account.id) is None


def store_and_read_back(uow: SqlUnitOfWorkFactory) -> None:
    """A committed write is there for the next read."""
    account = make_account()
    with uow() as tx:
        tx.accounts.add(account, email_key="a@example.com")
        tx.commit()
    with uow(readonly=True) as tx:
        assert tx.accounts.get(account.id) == account


def _locked_for_writers(database: Path) -> bool:
    """Whether another connection finds SQLite's write lock taken (it does not wait)."""
    other = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        assert "locked" in str(error)
        return True
    else:
        other.execute("ROLLBACK")
        return False
    finally:
        other.close()


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return tmp_path / "idservice.db"


def test_a_sqlite_write_holds_the_write_lock_from_its_start_and_a_read_none(
    sqlite_file: Path,
) -> None:
    with migrated(f"sqlite:///{sqlite_file}") as (_engine, uow):
        with uow(readonly=True) as tx:
            assert tx.accounts.get("nobody") is None
            assert not _locked_for_writers(sqlite_file)
        with uow() as tx:
            # Before its first statement: a read-then-write sees what it will change.
            assert _locked_for_writers(sqlite_file)
        assert not _locked_for_writers(sqlite_file)
        store_and_read_back(uow)


def test_units_of_work_share_the_pool_but_not_the_connection_events(sqlite_file: Path) -> None:
    seen: list[str] = []

    def before_cursor_execute(*args: Any) -> None:
        seen.append(str(args[2]))

    with migrated(f"sqlite:///{sqlite_file}", pool_size=1) as (engine, uow):
        event.listen(engine, "before_cursor_execute", before_cursor_execute)
        with uow(readonly=True) as tx:
            assert tx.accounts.get("nobody") is None
        assert seen == []  # a listener on the engine would run for every statement
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        assert seen == ["SELECT 1"]
        # One pool: a unit of work's connection is one of the engine's.
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        with uow(readonly=True) as tx:
            assert tx.accounts.get("nobody") is None
            assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgres"])
def one_connection_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'idservice.db'}"
        return
    if postgres_cluster is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")
    name = f"uow_engine_{next(_databases)}"
    yield postgres_cluster.create_database(name)
    postgres_cluster.drop_database(name)


def test_a_write_on_the_connection_a_read_had_is_still_one_transaction(
    one_connection_url: str,
) -> None:
    # One connection in the pool: the write gets the connection the read used (on PostgreSQL
    # in autocommit, set on that connection for the read alone).
    with migrated(one_connection_url, pool_size=1) as (_engine, uow):
        with uow(readonly=True) as tx:
            assert tx.accounts.get("anyone") is None
        a_write_left_uncommitted_leaves_nothing(uow, "a@example.com")
        store_and_read_back(uow)


def test_a_write_that_cannot_begin_gives_its_locks_and_connection_back(sqlite_file: Path) -> None:
    holder = sqlite3.connect(sqlite_file, timeout=0, isolation_level=None)
    try:
        with migrated(f"sqlite:///{sqlite_file}", pool_size=1) as (engine, uow):
            with engine.connect() as connection:  # the pool's one connection waits 50 ms
                connection.exec_driver_sql("PRAGMA busy_timeout=50")
            holder.execute("BEGIN IMMEDIATE")  # another program holds SQLite's write lock
            with pytest.raises(DomainError) as refused:
                uow().__enter__()
            assert refused.value.reason is Reason.DATABASE_UNAVAILABLE  # retryable
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            holder.execute("ROLLBACK")
            # This thread's and this process's write locks were released.
            store_and_read_back(uow)
    finally:
        holder.close()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster | None) -> Iterator[str]:
    if postgres_cluster is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")
    name = f"uow_engine_{next(_databases)}"
    yield postgres_cluster.create_database(name)
    postgres_cluster.drop_database(name)


def _connections_opened(engine: Engine) -> list[object]:
    """Each new database connection the pool opens from now on."""
    opened: list[object] = []
    event.listen(engine, "connect", lambda dbapi, _record: opened.append(dbapi))
    return opened


def test_a_postgres_read_whose_connection_broke_leaves_no_autocommit_connection_behind(
    postgres_url: str,
) -> None:
    """A read's connection is in psycopg's autocommit only while the read has it: one that
    broke during the read is discarded (without opening another on the way out), and the
    next units of work (a write rolled back, then one committed) run in real transactions."""
    with migrated(postgres_url, pool_size=1) as (engine, uow):
        with uow(readonly=True) as tx:  # the pool's one connection is open
            assert tx.accounts.get("anyone") is None
        opened = _connections_opened(engine)
        with pytest.raises(DomainError) as failed, uow(readonly=True) as tx:
            with engine.connect() as other:  # the pool's overflow: another backend
                other.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            del opened[:]
            tx.accounts.get("anyone")
        assert failed.value.reason is Reason.DATABASE_UNAVAILABLE
        assert opened == []  # leaving the broken read opened nothing
        a_write_left_uncommitted_leaves_nothing(uow, "b@example.com")
        store_and_read_back(uow)


def test_a_postgres_read_that_cannot_leave_autocommit_is_discarded(postgres_url: str) -> None:
    """A read whose connection psycopg will not take out of autocommit (here: closed under
    it, unknown to SQLAlchemy) does not go back to the pool as it is: the next write gets a
    new connection, in a real transaction."""
    with migrated(postgres_url, pool_size=1) as (engine, uow):
        checked_out: list[Any] = []
        event.listen(engine, "checkout", lambda dbapi, _record, _proxy: checked_out.append(dbapi))
        with uow(readonly=True) as tx:
            assert tx.accounts.get("anyone") is None
            checked_out[-1].close()
        opened = _connections_opened(engine)
        a_write_left_uncommitted_leaves_nothing(uow, "c@example.com")
        assert len(opened) == 1  # the read's connection was discarded
        store_and_read_back(uow)


def _a_session_with_a_refresh_token(uow: SqlUnitOfWorkFactory) -> Session:
    """An account's session with its refresh token `rt-first`."""
    account = make_account()
    session = make_session(account.id, now=NOW)
    assert session.expires_at is not None
    with uow() as tx:
        tx.accounts.add(account, email_key="a@example.com")
        tx.sessions.add(session)
        tx.sessions.add_refresh_token(
            "rt-first", session_id=session.id, now=NOW, expires_at=session.expires_at
        )
        tx.commit()
    return session


def test_a_postgres_single_write_runs_alone_and_its_connection_leaves_autocommit(
    postgres_url: str,
) -> None:
    """A single-write unit of work sends its one statement without BEGIN and COMMIT (written
    as it runs), and the next write on the same connection is one transaction again."""
    with migrated(postgres_url, pool_size=1) as (_engine, uow):
        session = _a_session_with_a_refresh_token(uow)
        with uow(single_write=True) as tx:
            assert tx.sessions.rotate_refresh("rt-first", successor="rt-second", now=NOW)
            driver = tx.sessions._c.connection.driver_connection
            assert driver is not None
            # Committed already: no transaction is open on the connection.
            assert driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            tx.commit()
        # The pool's one connection is back out of autocommit: a write left uncommitted
        # still leaves nothing.
        a_write_left_uncommitted_leaves_nothing(uow, "b@example.com")
        with uow(readonly=True) as tx:
            successor = tx.sessions.find_refresh("rt-second")
        assert successor is not None and successor.session.id == session.id


def _rotate_in_a_thread(uow: SqlUnitOfWorkFactory, out: list[bool]) -> threading.Thread:
    def run() -> None:
        with uow(single_write=True) as tx:
            rotated = tx.sessions.rotate_refresh("rt-first", successor="rt-late", now=NOW)
            out.append(rotated is not None)
            tx.commit()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("first_commits", [True, False])
def test_a_postgres_rotation_racing_another_waits_and_then_writes_only_if_it_won(
    postgres_url: str, first_commits: bool
) -> None:
    """A rotation that finds the token's row locked by another use waits for it: once that
    one commits it writes nothing; if that one rolls back, it rotates."""
    with migrated(postgres_url) as (_engine, uow):
        _a_session_with_a_refresh_token(uow)
        out: list[bool] = []
        with uow() as first:
            assert first.sessions.mark_refresh_used("rt-first", now=NOW)
            late = _rotate_in_a_thread(uow, out)
            late.join(0.5)
            assert late.is_alive() and out == []  # waiting on the row lock
            if first_commits:
                first.commit()
        late.join(10)
        assert out == [not first_commits]
        with uow(readonly=True) as tx:
            assert (tx.sessions.find_refresh("rt-late") is not None) == (not first_commits)


def test_a_unit_of_work_is_read_only_or_a_single_write_not_both(sqlite_file: Path) -> None:
    with migrated(f"sqlite:///{sqlite_file}") as (_engine, uow), pytest.raises(ValueError):
        uow(readonly=True, single_write=True)
