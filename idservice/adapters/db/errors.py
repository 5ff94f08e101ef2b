"""Database errors classified once: unique violations, an unreachable database, a full pool."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from idservice.domain.errors import DomainError, database_unavailable, server_busy

_UNAVAILABLE = (OperationalError, DisconnectionError)


def unique_column(error: IntegrityError, columns: tuple[str, ...]) -> str | None:
    """Which of `columns` a unique-index violation names (SQLite and PostgreSQL both name it)."""
    text = str(error.orig)
    for column in columns:
        if column in text:
            return column
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Errors that mean the database cannot be reached right now (retryable)."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def is_busy(exc: BaseException) -> bool:
    """Every pooled connection stayed in use: the database is fine, this process is saturated."""
    return isinstance(exc, PoolTimeoutError)


def as_domain_error(exc: BaseException) -> DomainError | None:
    """The domain's name for a storage failure the caller may retry; None for anything else."""
    if is_unavailable(exc):
        return database_unavailable()
    if is_busy(exc):
        return server_busy()
    return None
