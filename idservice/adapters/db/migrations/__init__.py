"""Alembic migrations of the idservice schema; `upgrade(engine)` applies them."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


@contextmanager
def startup_lock(engine: Engine) -> Iterator[None]:
    """One process at a time through start-up's schema and key checks on a SQLite file.

    Alembic runs each migration in its own transaction and reads the version before them, so
    two processes starting at once on one SQLite file could both try the same migration (and a
    read-then-write key registration could fail with a stale snapshot). A lock file beside the
    database serialises them; PostgreSQL serialises migrations with an advisory lock instead.
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    path = Path(database)
    with (path.parent / f"{path.name}.startup-lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class UnknownRevisionError(RuntimeError):
    """The database is at a revision these migrations do not know: a newer release migrated it."""

    def __init__(self, revisions: tuple[str, ...], head: str | None) -> None:
        super().__init__(f"database at unknown revision {', '.join(revisions)} (head {head})")
        self.revisions = revisions
        self.head = head


def refuse_unknown_revision(engine: Engine) -> None:
    """Raise UnknownRevisionError when the database's revision is not one of these migrations
    (Alembic would stop with a bare "Can't locate revision")."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine))
    known = {migration.revision for migration in script.walk_revisions()}
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    unknown = tuple(revision for revision in current if revision not in known)
    if unknown:
        raise UnknownRevisionError(unknown, script.get_current_head())


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent; safe when two processes start at once).

    Raises UnknownRevisionError, before changing anything, on a database a newer release
    migrated."""
    refuse_unknown_revision(engine)
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
