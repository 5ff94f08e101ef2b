"""Alembic environment: runs migrations on the engine handed in by idservice."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

from idservice.adapters.db.tables import metadata

# Serialises concurrent migrators on PostgreSQL (SQLite's BEGIN IMMEDIATE does it there).
_ADVISORY_LOCK_ID = 7_406_245_113


def run_migrations_online() -> None:
    engine: Engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": _ADVISORY_LOCK_ID}
                )
                connection.commit()


run_migrations_online()
