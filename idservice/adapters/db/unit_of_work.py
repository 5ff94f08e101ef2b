"""The SQLAlchemy unit of work: one transaction, the repositories bound to it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import Connection, Engine, RootTransaction

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db.engine import begin_immediate, statement_engine
from idservice.adapters.db.errors import is_busy, is_unavailable
from idservice.adapters.db.repositories.accounts import SqlAccountRepository
from idservice.adapters.db.repositories.attempt_counters import SqlAttemptCounterRepository
from idservice.adapters.db.repositories.audit import SqlAccessAuditRepository
from idservice.adapters.db.repositories.connection_log import SqlConnectionLogRepository
from idservice.adapters.db.repositories.consent_records import SqlConsentRecordRepository
from idservice.adapters.db.repositories.guardian_consents import SqlGuardianConsentRepository
from idservice.adapters.db.repositories.idempotency import SqlIdempotencyRepository
from idservice.adapters.db.repositories.outbox import SqlOutboxRepository
from idservice.adapters.db.repositories.sessions import SqlSessionRepository
from idservice.adapters.db.repositories.sns import (
    SqlSignupTicketRepository,
    SqlSnsIdentityRepository,
)
from idservice.adapters.db.repositories.verifications import SqlVerificationRepository
from idservice.adapters.db.write_lock import WriteLock, write_lock_for
from idservice.domain.errors import database_unavailable, server_busy

# Which threads hold this process's SQLite write lock (to refuse a nested write loudly).
_writing = threading.local()
# How long a writer waits for this process's SQLite write lock (as long as SQLite itself would).
WRITE_LOCK_TIMEOUT_SECONDS = 30.0


R = TypeVar("R")


class _Repository(Generic[R]):
    """A unit of work's repository, made on first use from the open connection and kept in the
    instance until the unit of work closes. (Not `functools.cached_property`: on Python 3.11
    its `__get__` takes one lock shared by every instance, which every call's threads would
    queue on.)"""

    def __init__(self, make: Callable[[Connection, FieldCipher], R]) -> None:
        self._make = make
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, tx: None, owner: type) -> _Repository[R]: ...

    @overload
    def __get__(self, tx: SqlUnitOfWork, owner: type) -> R: ...

    def __get__(self, tx: SqlUnitOfWork | None, owner: type) -> R | _Repository[R]:
        if tx is None:
            return self
        made = self._make(tx._open_connection(), tx._cipher)
        tx.__dict__[self._name] = made  # later reads find it before this descriptor
        return made


def _without_cipher(
    make: Callable[[Connection], R],
) -> Callable[[Connection, FieldCipher], R]:
    return lambda connection, _cipher: make(connection)


class SqlUnitOfWork:
    """`with uow: ...; uow.commit()` — leaving without commit rolls back."""

    def __init__(
        self,
        engine: Engine,
        cipher: FieldCipher,
        *,
        write_lock: WriteLock | None = None,
        begins_sqlite: bool = False,
        driver_autocommit: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """`begins_sqlite`: a SQLite write, which opens its transaction with BEGIN IMMEDIATE
        (SQLAlchemy's own BEGIN is none: pysqlite runs in autocommit, see engine.py).
        `driver_autocommit`: a PostgreSQL read or single write, whose connection psycopg keeps
        in autocommit while the unit of work has it (no BEGIN, COMMIT or ROLLBACK round trips:
        each statement is its own transaction) and takes out of it
        before it goes back to the pool; set on the driver, as SQLAlchemy's `isolation_level`
        option would cost more than the read (its connection characteristics, set and reset).
        `options`: execution options of this unit of work's connection (set on the connection,
        not the engine: an engine's option of that kind is a connection event, which sends every
        statement through SQLAlchemy's event dispatch)."""
        self._engine = engine
        self._cipher = cipher
        self._write_lock = write_lock
        self._begins_sqlite = begins_sqlite
        self._driver_autocommit = driver_autocommit
        self._options = options
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None

    def __enter__(self) -> SqlUnitOfWork:
        if self._write_lock is not None:
            if getattr(_writing, "active", False):
                # The lock is not re-entrant: a nested write would wait on itself.
                raise RuntimeError("a write unit of work is already open in this thread")
            if not self._write_lock.acquire(timeout=WRITE_LOCK_TIMEOUT_SECONDS):
                raise server_busy()
            _writing.active = True
        try:
            return self._open()
        except BaseException:
            self._release()
            raise

    def _close_connection(self, connection: Connection) -> None:
        """Give the connection back to the pool, out of driver autocommit: one that cannot be
        taken out of it is discarded, so no later write runs without a transaction. One that
        SQLAlchemy invalidated (broken) is discarded already: touching it would open another."""
        if self._driver_autocommit and not connection.invalidated:
            try:
                connection.connection.driver_connection.autocommit = False  # type: ignore[union-attr]
            except Exception:
                connection.invalidate()
        connection.close()

    def _release(self) -> None:
        if self._write_lock is not None:
            _writing.active = False
            self._write_lock.release()

    def _open(self) -> SqlUnitOfWork:
        try:
            self._connection = self._engine.connect()
            if self._options:
                self._connection.execution_options(**self._options)
            if self._driver_autocommit:
                self._connection.connection.driver_connection.autocommit = True  # type: ignore[union-attr]
            self._transaction = self._connection.begin()
            if self._begins_sqlite:
                begin_immediate(self._connection.connection.driver_connection)
        except Exception as exc:
            if self._connection is not None:
                self._close_connection(self._connection)
            self._connection = self._transaction = None
            if is_unavailable(exc):
                raise database_unavailable() from exc
            if is_busy(exc):
                raise server_busy() from exc
            raise
        return self

    # The repositories, each made on first use: most calls use one or two of them.
    accounts = _Repository(SqlAccountRepository)
    sessions = _Repository(SqlSessionRepository)
    verifications = _Repository(SqlVerificationRepository)
    idempotency = _Repository(SqlIdempotencyRepository)
    outbox = _Repository(SqlOutboxRepository)
    guardian_consents = _Repository(SqlGuardianConsentRepository)
    sns_identities = _Repository(SqlSnsIdentityRepository)
    signup_tickets = _Repository(SqlSignupTicketRepository)
    attempt_counters = _Repository(_without_cipher(SqlAttemptCounterRepository))
    access_audit = _Repository(SqlAccessAuditRepository)
    connection_log = _Repository(SqlConnectionLogRepository)
    consent_records = _Repository(_without_cipher(SqlConsentRecordRepository))

    def _open_connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open: use it inside `with`")
        return self._connection

    def commit(self) -> None:
        assert self._transaction is not None
        try:
            self._transaction.commit()
        except Exception as exc:
            if is_unavailable(exc):
                raise database_unavailable() from exc
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        except Exception:  # noqa: S110 - the connection is gone; closing below discards it
            pass
        finally:
            if self._connection is not None:
                self._close_connection(self._connection)
                self._connection = self._transaction = None
                # Repositories made in this transaction stay with it (a `with` again gets new).
                for name in _REPOSITORIES.intersection(self.__dict__):
                    del self.__dict__[name]
            self._release()
        if exc is not None and is_unavailable(exc):
            raise database_unavailable() from exc
        if exc is not None and is_busy(exc):
            raise server_busy() from exc


_REPOSITORIES = frozenset(
    name for name, value in vars(SqlUnitOfWork).items() if isinstance(value, _Repository)
)


class SqlUnitOfWorkFactory:
    """Makes units of work on one engine."""

    def __init__(self, engine: Engine, cipher: FieldCipher) -> None:
        self.engine = engine
        # The units of work's own engine: `engine`'s pool without its connection events.
        self._statements = statement_engine(engine)
        self._sqlite = engine.dialect.name == "sqlite"
        # Read-only work runs in autocommit: readers never queue behind the write lock
        # (SQLite), and each statement sees one consistent snapshot, though two statements of
        # one read may see different ones (nothing read-only depends on more; writes re-check).
        # On PostgreSQL that is what READ COMMITTED gives anyway, and autocommit saves the
        # BEGIN and ROLLBACK round trips around every read. SQLite's connections are in
        # autocommit already (engine.py): a read-only unit of work never begins a transaction.
        # `readonly` marks reads for the migrations engine's `begin` and statement counters.
        self._readonly_options: dict[str, object] = {"readonly": True}
        self._cipher = cipher
        # SQLite has one writer at a time; queueing the writers (of this process, then of every
        # process on the file: write_lock.py) is fairer and faster than SQLite's busy handler.
        self._write_lock = write_lock_for(engine)

    def make_deletions_final(self) -> None:
        """SQLite keeps page images in its write-ahead log until a checkpoint: fold the log into
        the file (whose freed pages secure_delete zeroed) and truncate it. PostgreSQL: nothing
        to do here (its deletes are real; VACUUM reclaims the space)."""
        if self.engine.dialect.name != "sqlite":
            return
        # Outside any transaction (SQLite's connections are in autocommit); best effort: a
        # reader still holding an old snapshot makes it a partial checkpoint, redone next purge.
        with self._statements.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def __call__(self, *, readonly: bool = False, single_write: bool = False) -> SqlUnitOfWork:
        if readonly and single_write:
            raise ValueError("a unit of work is read-only or a single write, not both")
        if single_write and not self._sqlite:
            # One statement, atomic on its own: PostgreSQL runs it in autocommit (no BEGIN and
            # COMMIT round trips). SQLite's single writes are ordinary write transactions.
            return SqlUnitOfWork(self._statements, self._cipher, driver_autocommit=True)
        if readonly:
            return SqlUnitOfWork(
                self._statements,
                self._cipher,
                driver_autocommit=not self._sqlite,
                options=self._readonly_options,
            )
        return SqlUnitOfWork(
            self._statements,
            self._cipher,
            write_lock=self._write_lock,
            begins_sqlite=self._sqlite,
        )
