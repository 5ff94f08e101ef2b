"""Shared fixtures: databases (SQLite always, PostgreSQL when present), wired apps, servers."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import settings as hypothesis_settings

from idservice.adapters.crypto import KeyRing
from idservice.bootstrap import App, build_app
from idservice.config import Settings
from idservice.entrypoints.grpc.server import RunningServer, create_server
from tests.support.client import Client
from tests.support.postgres import PostgresCluster, find_pg_bin

# The test command must pass or fail the same way on every run, so property tests replay the same
# examples by default; `HYPOTHESIS_PROFILE=explore` draws new ones each run to hunt for bugs.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

REQUIRE_POSTGRES = os.environ.get("IDSERVICE_TEST_REQUIRE_POSTGRES") == "1"
_database_counter = itertools.count()

# Small Argon2 parameters keep the suite fast; production parameters are the config defaults.
TEST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 1024, "argon2_parallelism": 1}
# One data key ring for the session, as a deployment has: start-up refuses another ring on a
# database written under this one, so every app a test builds on one database must share it.
TEST_DATA_KEYS = KeyRing.generate("test1").serialize()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster | None]:
    """One throwaway cluster for the session; None when PostgreSQL is absent (local runs)."""
    if find_pg_bin() is None:
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL is required (IDSERVICE_TEST_REQUIRE_POSTGRES=1) but missing")
        yield None
        return
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> str:
    """A fresh empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'idservice.db'}"
    if postgres_cluster is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")
    return postgres_cluster.create_database(f"t{os.getpid()}_{next(_database_counter)}")


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "var_dir": tmp_path / "var",
        "database_url": database_url,
        "data_keys": TEST_DATA_KEYS,
        **TEST_ARGON2,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    built = build_app(settings)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def server(app: App) -> Iterator[RunningServer]:
    running = create_server(app, "127.0.0.1:0")
    try:
        yield running
    finally:
        running.halt()


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def client(channel: grpc.Channel, app: App) -> Client:
    return Client(channel, terms_version=app.settings.terms_version)
