"""Checks that the throwaway PostgreSQL harness starts, serves, restarts, stops and cleans up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from tests.support.postgres import PostgresCluster, PostgresHarnessError, find_pg_bin

pytestmark = pytest.mark.postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIRE_ENV = "IDSERVICE_TEST_REQUIRE_POSTGRES"


@pytest.fixture(scope="module")
def pg_bin() -> Path:
    """The server binaries, or a skip (a failure when the environment demands PostgreSQL)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        reason = (
            "no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin or on PATH; "
            "run scripts/ensure_postgres.sh"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    return bin_dir


@pytest.fixture
def cluster(pg_bin: Path) -> Iterator[PostgresCluster]:
    with PostgresCluster(pg_bin) as running:
        yield running


def _select_one(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    value: int = row[0]
    return value


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_start_create_restart_stop(pg_bin: Path) -> None:
    cluster = PostgresCluster(pg_bin)
    cluster.start()
    try:
        port = cluster.port
        workdir = cluster.workdir
        url = cluster.create_database("harness_check")
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/harness_check"
        assert cluster.url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        assert _select_one(cluster.conninfo("harness_check")) == 1
        with psycopg.connect(cluster.conninfo("harness_check"), autocommit=True) as conn:
            conn.execute("CREATE TABLE survivor (id int)")
            conn.execute("INSERT INTO survivor VALUES (42)")

        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("SELECT 1")).scalar_one() == 1
        finally:
            engine.dispose()

        cluster.restart()

        assert cluster.running
        assert cluster.port == port
        assert cluster.workdir == workdir
        assert _select_one(cluster.conninfo("harness_check")) == 1
        with psycopg.connect(cluster.conninfo("harness_check")) as conn:
            row = conn.execute("SELECT id FROM survivor").fetchone()
        assert row == (42,)
    finally:
        cluster.stop()

    assert not cluster.running
    assert not workdir.exists()
    assert not _port_accepts(port)
    cluster.stop()  # a second stop is harmless


def test_server_listens_on_loopback_only_with_trust(cluster: PostgresCluster) -> None:
    with psycopg.connect(cluster.conninfo()) as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()
        max_connections = conn.execute("SHOW max_connections").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
    assert listen == ("127.0.0.1",)
    assert max_connections == ("300",)
    assert fsync == ("off",)
    assert cluster.log_path.parent == cluster.workdir


def test_drop_database(cluster: PostgresCluster) -> None:
    cluster.create_database("doomed")
    with psycopg.connect(cluster.conninfo("doomed")):
        cluster.drop_database("doomed")  # forces the open session out
    with pytest.raises(psycopg.OperationalError, match="doomed"):
        psycopg.connect(cluster.conninfo("doomed"))


def test_rejects_unsafe_database_names(cluster: PostgresCluster) -> None:
    for name in ("Upper", "semi;colon", "", "x" * 64, "1starts_with_digit"):
        with pytest.raises(ValueError, match="database name"):
            cluster.create_database(name)


def test_start_failure_reports_server_log(pg_bin: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken_port = blocker.getsockname()[1]
        cluster = PostgresCluster(pg_bin, port=taken_port)
        with pytest.raises(PostgresHarnessError) as raised:
            cluster.start()
    message = str(raised.value)
    assert f"127.0.0.1:{taken_port}" in message
    assert "--- server log" in message
    assert "could not bind" in message
    assert not cluster.running


def test_server_is_removed_when_the_test_process_is_killed(pg_bin: Path) -> None:
    script = (
        "import time\n"
        "from pathlib import Path\n"
        "from tests.support.postgres import PostgresCluster\n"
        f"cluster = PostgresCluster(Path({str(pg_bin)!r}))\n"
        "cluster.start()\n"
        "print(cluster.port, cluster.workdir, flush=True)\n"
        "time.sleep(120)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert len(line) == 2, "the child process did not start its cluster"
        port, workdir = int(line[0]), Path(line[1])
        assert _port_accepts(port)
    finally:
        os.kill(child.pid, signal.SIGKILL)  # no atexit, no finally: only the watchdog is left
        child.wait()
        if child.stdout is not None:
            child.stdout.close()

    deadline = time.monotonic() + 60
    while (workdir.exists() or _port_accepts(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _port_accepts(port), "the orphaned server is still accepting connections"
    assert not workdir.exists(), "the orphaned cluster directory was not deleted"
