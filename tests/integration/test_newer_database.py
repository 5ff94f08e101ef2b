"""An older idservice against a database a newer release migrated: `serve` and `migrate` stop
with one line naming the database's revision and saying to roll forward (exit 2, like any
start-up error), and leave the database as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from idservice.adapters.crypto import KeyRing
from tests.support.server_process import free_loopback_port, run_idservice

FUTURE_REVISION = "9999_from_a_newer_release"


def _revision(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar())
    finally:
        engine.dispose()


@pytest.fixture
def newer_database(tmp_path: Path) -> str:
    """A SQLite database migrated by this version, then stamped with a revision it never had."""
    url = f"sqlite:///{tmp_path / 'idservice.db'}"
    migrated = run_idservice("migrate", env={"IDSERVICE_DATABASE_URL": url}, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE alembic_version SET version_num = :revision"),
                {"revision": FUTURE_REVISION},
            )
    finally:
        engine.dispose()
    return url


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("migrate",), {}),
        (("serve",), {"IDSERVICE_PROCESSES": "1"}),
        (("serve",), {"IDSERVICE_PROCESSES": "2"}),  # the supervisor's prepare_database
        (("purge",), {}),
    ],
    ids=["migrate", "serve", "serve-processes-2", "purge"],
)
def test_a_newer_database_is_one_line_and_exit_2(
    tmp_path: Path, newer_database: str, args: tuple[str, ...], extra: dict[str, str]
) -> None:
    env = {
        "IDSERVICE_DATABASE_URL": newer_database,
        "IDSERVICE_DATA_KEYS": KeyRing.generate("k1").serialize(),
        "IDSERVICE_LISTEN": f"127.0.0.1:{free_loopback_port()}",
        **extra,
    }
    result = run_idservice(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "CommandError" not in result.stderr, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("idservice:")]
    assert line.startswith(
        "idservice: configuration error: IDSERVICE_DATABASE_URL: the database is at revision "
        f"{FUTURE_REVISION},"
    ), line
    assert "roll forward" in line, line
    assert line == result.stderr.strip().splitlines()[-1]
    assert _revision(newer_database) == FUTURE_REVISION
