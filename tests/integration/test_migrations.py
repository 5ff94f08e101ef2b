"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from idservice.adapters.db import migrations
from idservice.adapters.db.engine import build_engine
from idservice.adapters.db.tables import metadata


def test_migrations_match_the_tables(database_url: str) -> None:
    engine = build_engine(database_url, pool_size=1)
    try:
        migrations.upgrade(engine)
        migrations.upgrade(engine)  # idempotent
        assert migrations.current_revision(engine) == migrations.head_revision(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = compare_metadata(context, metadata)
        assert differences == []
    finally:
        engine.dispose()
