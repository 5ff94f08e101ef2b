"""The SQLAlchemy unit of work: one transaction, the repositories bound to it."""

from __future__ import annotations

import threading
from functools import cached_property
from types import TracebackType

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


class SqlUnitOfWork:
    """`with uow: ...; uow.commit()` — leaving without commit rolls back."""

    def __init__(
        self,
        engine: Engine,
        cipher: FieldCipher,
        *,
        write_lock: WriteLock | None = None,
        begins_sqlite: bool = False,
    ) -> None:
        """`begins_sqlite`: a SQLite write, which opens its transaction with BEGIN IMMEDIATE
        (SQLAlchemy's own BEGIN is none: pysqlite runs in autocommit, see engine.py)."""
        self._engine = engine
        self._cipher = cipher
        self._write_lock = write_lock
        self._begins_sqlite = begins_sqlite
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

    def _release(self) -> None:
        if self._write_lock is not None:
            _writing.active = False
            self._write_lock.release()

    def _open(self) -> SqlUnitOfWork:
        try:
            self._connection = self._engine.connect()
            self._transaction = self._connection.begin()
            if self._begins_sqlite:
                begin_immediate(self._connection.connection.driver_connection)
        except Exception as exc:
            if self._connection is not None:
                self._connection.close()
            if is_unavailable(exc):
                raise database_unavailable() from exc
            if is_busy(exc):
                raise server_busy() from exc
            raise
        return self

    # The repositories, each made on first use: most calls use one or two of them.
    @cached_property
    def accounts(self) -> SqlAccountRepository:
        return SqlAccountRepository(self._open_connection(), self._cipher)

    @cached_property
    def sessions(self) -> SqlSessionRepository:
        return SqlSessionRepository(self._open_connection(), self._cipher)

    @cached_property
    def verifications(self) -> SqlVerificationRepository:
        return SqlVerificationRepository(self._open_connection(), self._cipher)

    @cached_property
    def idempotency(self) -> SqlIdempotencyRepository:
        return SqlIdempotencyRepository(self._open_connection(), self._cipher)

    @cached_property
    def outbox(self) -> SqlOutboxRepository:
        return SqlOutboxRepository(self._open_connection(), self._cipher)

    @cached_property
    def guardian_consents(self) -> SqlGuardianConsentRepository:
        return SqlGuardianConsentRepository(self._open_connection(), self._cipher)

    @cached_property
    def sns_identities(self) -> SqlSnsIdentityRepository:
        return SqlSnsIdentityRepository(self._open_connection(), self._cipher)

    @cached_property
    def signup_tickets(self) -> SqlSignupTicketRepository:
        return SqlSignupTicketRepository(self._open_connection(), self._cipher)

    @cached_property
    def attempt_counters(self) -> SqlAttemptCounterRepository:
        return SqlAttemptCounterRepository(self._open_connection())

    @cached_property
    def access_audit(self) -> SqlAccessAuditRepository:
        return SqlAccessAuditRepository(self._open_connection(), self._cipher)

    @cached_property
    def connection_log(self) -> SqlConnectionLogRepository:
        return SqlConnectionLogRepository(self._open_connection(), self._cipher)

    @cached_property
    def consent_records(self) -> SqlConsentRecordRepository:
        return SqlConsentRecordRepository(self._open_connection())

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
                self._connection.close()
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
    name for name, value in vars(SqlUnitOfWork).items() if isinstance(value, cached_property)
)


class SqlUnitOfWorkFactory:
    """Makes units of work on one engine."""

    def __init__(self, engine: Engine, cipher: FieldCipher) -> None:
        self.engine = engine
        # The units of work's own engine: `engine`'s pool without its connection events.
        statements = statement_engine(engine)
        self._sqlite = engine.dialect.name == "sqlite"
        self._writer_engine = statements
        # Read-only work runs in autocommit: readers never queue behind the write lock
        # (SQLite), and each statement sees one consistent snapshot, though two statements of
        # one read may see different ones (nothing read-only depends on more; writes re-check).
        # On PostgreSQL that is what READ COMMITTED gives anyway, and autocommit saves the
        # BEGIN and ROLLBACK round trips around every read. SQLite's connections are in
        # autocommit already (engine.py): a read-only unit of work never begins a transaction.
        # `readonly` marks reads for the migrations engine's `begin` and statement counters.
        options: dict[str, object] = {"readonly": True}
        if not self._sqlite:
            options["isolation_level"] = "AUTOCOMMIT"
        self._readonly_engine = statements.execution_options(**options)
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
        # Outside any transaction (the read-only engine runs in autocommit); best effort: a
        # reader still holding an old snapshot makes it a partial checkpoint, redone next purge.
        with self._readonly_engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def __call__(self, *, readonly: bool = False) -> SqlUnitOfWork:
        if readonly:
            return SqlUnitOfWork(self._readonly_engine, self._cipher)
        return SqlUnitOfWork(
            self._writer_engine,
            self._cipher,
            write_lock=self._write_lock,
            begins_sqlite=self._sqlite,
        )
