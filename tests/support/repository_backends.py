"""The storage backends the repository contract suite runs on: the fakes, SQLite, PostgreSQL.

Each test module of the suite declares its own parametrized fixture over `BACKENDS` and opens
the backend with `open_backend` (one fresh, migrated database per test for the SQL ones).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from idservice.adapters.crypto import FieldCipher, KeyRing
from idservice.adapters.db import migrations
from idservice.adapters.db.engine import build_engine
from idservice.adapters.db.unit_of_work import SqlUnitOfWorkFactory
from idservice.service_layer.ports import UnitOfWorkFactory
from tests.fakes.storage import FakeIntegrityError, FakeUnitOfWorkFactory
from tests.support.postgres import PostgresCluster

BACKENDS = ["fake", "sqlite", "postgres"]
_databases = itertools.count()


@dataclass(frozen=True)
class Backend:
    """A unit-of-work factory, and what it raises for a constraint the ports do not name."""

    name: str
    uow: UnitOfWorkFactory
    integrity_error: type[Exception]


@contextmanager
def open_backend(
    name: str, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> Iterator[Backend]:
    if name == "fake":
        yield Backend(name, FakeUnitOfWorkFactory(), FakeIntegrityError)
        return
    database = ""
    if name == "sqlite":
        url = f"sqlite:///{tmp_path / 'contract.db'}"
    elif postgres_cluster is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")
    else:
        database = f"rc{os.getpid()}_{next(_databases)}"
        url = postgres_cluster.create_database(database)
    engine = build_engine(url, pool_size=2)
    try:
        migrations.upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine, FieldCipher(KeyRing.generate("t1")))
        yield Backend(name, factory, IntegrityError)
    finally:
        engine.dispose()
        if postgres_cluster is not None and database:
            postgres_cluster.drop_database(database)
