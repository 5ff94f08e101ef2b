"""Throwaway PostgreSQL clusters on loopback for tests: initdb, start, restart, stop, clean up."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

__all__ = ["PostgresCluster", "PostgresHarnessError", "find_pg_bin"]

# Where Debian's postgresql-NN packages put the server binaries (one directory per major).
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
# Database superuser created by initdb, and the OS user the server runs as when we are root
# (the server refuses to run as root; Debian's package creates this user).
SUPERUSER = "postgres"
SERVER_OS_USER = "postgres"
LOOPBACK = "127.0.0.1"
# Settings that trade durability for speed: a test cluster is thrown away anyway.
SERVER_SETTINGS: tuple[tuple[str, str], ...] = (
    ("listen_addresses", LOOPBACK),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "300"),
)
# Only loopback clients, all trusted: the cluster listens on 127.0.0.1 and its socket dir is 0700.
PG_HBA = (
    "# Written by tests/support/postgres.py: loopback only, trust.\n"
    "local all all trust\n"
    "host all all 127.0.0.1/32 trust\n"
    "host all all ::1/128 trust\n"
)
# Picking a free port then binding it later races with other processes (pytest-xdist workers);
# a lost race is retried on a new port this many times.
PORT_ATTEMPTS = 5
# Lower-case identifiers only, so the name is the same quoted or not and safe in a URL.
DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
LOG_TAIL_CHARS = 8000

# Runs beside the test process, holding the read end of a pipe. EOF without "stopped" means the
# test process died without stopping its cluster (SIGKILL, crash, os._exit): stop the server and
# delete its directory so nothing outlives the test run.
_WATCHDOG = """
import os, shutil, signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
message = sys.stdin.buffer.read()
if message.startswith(b"stopped"):
    sys.exit(0)
stop_argv, workdir, pidfile = __import__("json").loads(sys.argv[1])
if os.path.exists(pidfile):
    try:
        subprocess.run(stop_argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, check=False, cwd=workdir)
    except Exception:
        pass
shutil.rmtree(workdir, ignore_errors=True)
"""


class PostgresHarnessError(RuntimeError):
    """The throwaway cluster could not be set up, started or stopped (message says why)."""


def find_pg_bin() -> Path | None:
    """Directory holding initdb, pg_ctl and postgres: Debian's newest major, else the PATH."""
    candidates: list[tuple[tuple[int, ...], Path]] = []
    if DEBIAN_PG_ROOT.is_dir():
        for version_dir in DEBIAN_PG_ROOT.iterdir():
            bin_dir = version_dir / "bin"
            if _has_server_binaries(bin_dir):
                candidates.append((_version_key(version_dir.name), bin_dir))
    if candidates:
        return max(candidates)[1]
    initdb = shutil.which("initdb")
    if initdb is not None:
        bin_dir = Path(initdb).resolve().parent
        if _has_server_binaries(bin_dir):
            return bin_dir
    return None


def _has_server_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres"))


def _version_key(name: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", name)
    return tuple(int(part) for part in parts) if parts else (-1,)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _clean_environment() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGHOST, PGOPTIONS...) from the caller's shell must not
    # redirect our tools to another cluster.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _tail(text: str) -> str:
    text = text.strip()
    if len(text) <= LOG_TAIL_CHARS:
        return text
    return "[...]\n" + text[-LOG_TAIL_CHARS:]


class PostgresCluster:
    """A private PostgreSQL server in a temporary directory, reachable on 127.0.0.1 only.

    Use as a context manager, or call start() and stop(). The database superuser is `postgres`
    with trust authentication. Running as root, the server runs as the `postgres` OS user.
    """

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        """bin_dir defaults to find_pg_bin(); port defaults to a free loopback port."""
        self._bin_dir_override = bin_dir
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._port: int | None = None
        self._workdir: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._running = False

    # ----------------------------------------------------------------- public API

    @property
    def bin_dir(self) -> Path:
        """Directory of the PostgreSQL server binaries in use."""
        if self._bin_dir_override is not None:
            bin_dir = self._bin_dir_override
            if not _has_server_binaries(bin_dir):
                raise PostgresHarnessError(
                    f"{bin_dir} does not contain executable initdb, pg_ctl and postgres"
                )
            return bin_dir
        found = find_pg_bin()
        if found is None:
            raise PostgresHarnessError(
                "no PostgreSQL server binaries found (looked for initdb under "
                f"{DEBIAN_PG_ROOT}/*/bin and on PATH); run scripts/ensure_postgres.sh"
            )
        self._bin_dir_override = found
        return found

    @property
    def running(self) -> bool:
        """True between a successful start() and stop()."""
        return self._running

    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1 (stays the same across restart())."""
        if self._port is None:
            raise PostgresHarnessError("the cluster has not been started")
        return self._port

    @property
    def workdir(self) -> Path:
        """Temporary directory holding the data dir, the socket and server.log."""
        if self._workdir is None:
            raise PostgresHarnessError("the cluster has not been started")
        return self._workdir

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (PGDATA)."""
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.workdir / "server.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default `postgres` database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of database `name` in this cluster."""
        _check_database_name(name)
        return f"postgresql+psycopg://{SUPERUSER}@{LOOPBACK}:{self.port}/{name}"

    def socket_url(self, name: str) -> str:
        """SQLAlchemy URL of database `name` over the cluster's Unix socket: how libpq reaches a
        server on the same machine by default, without TCP's loopback path."""
        _check_database_name(name)
        query = urlencode({"host": str(self.workdir), "port": self.port})
        return f"postgresql+psycopg://{SUPERUSER}@/{name}?{query}"

    def conninfo(self, name: str = "postgres") -> str:
        """libpq connection string for psycopg.connect() to database `name`."""
        _check_database_name(name)
        return make_conninfo(
            host=LOOPBACK, port=self.port, user=SUPERUSER, dbname=name, connect_timeout=10
        )

    def create_database(self, name: str) -> str:
        """Create database `name` (lower-case identifier) and return its SQLAlchemy URL."""
        _check_database_name(name)
        self._require_running()
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting its sessions."""
        _check_database_name(name)
        self._require_running()
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def start(self) -> None:
        """Create a fresh cluster in a new temporary directory and start it; wait until ready."""
        if self._running:
            raise PostgresHarnessError("the cluster is already running")
        bin_dir = self.bin_dir
        server_user = self._server_user()
        self._workdir = Path(tempfile.mkdtemp(prefix="idservice-pg-"))
        try:
            self._prepare_workdir(server_user)
            self._start_watchdog()
            self._initdb(bin_dir)
            self._launch_on_some_port()
        except BaseException:
            self._abandon()
            raise
        self._running = True
        _LIVE_CLUSTERS.add(self)

    def restart(self) -> None:
        """Stop the server and start it again on the same port with the same data."""
        self._require_running()
        self._running = False
        self._pg_ctl_stop()
        try:
            self._launch(self.port, retry_bind_for=10.0)
        except BaseException:
            self._abandon()
            raise
        self._running = True

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory. Safe to call twice."""
        _LIVE_CLUSTERS.discard(self)
        if self._workdir is None:
            return
        self._running = False
        try:
            self._pg_ctl_stop()
            shutil.rmtree(self._workdir)
        except BaseException:
            # The watchdog sees EOF without "stopped" and retries the cleanup on its own.
            self._release_watchdog(stopped=False)
            self._workdir = None
            raise
        self._release_watchdog(stopped=True)
        self._workdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self._port}" if self._running else "stopped"
        return f"<PostgresCluster {state} workdir={self._workdir}>"

    # ----------------------------------------------------------------- internals

    def _require_running(self) -> None:
        if not self._running:
            raise PostgresHarnessError("the cluster is not running; call start() first")

    @staticmethod
    def _server_user() -> pwd.struct_passwd | None:
        """The OS user to run the server as, or None to run it as ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVER_OS_USER)
        except KeyError:
            raise PostgresHarnessError(
                "running as root, but PostgreSQL refuses to run as root and there is no "
                f"{SERVER_OS_USER!r} OS user to run it as; run scripts/ensure_postgres.sh "
                "(Debian's postgresql package creates it) or run the tests as a normal user"
            ) from None

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        runuser = shutil.which("runuser")
        if runuser is not None:
            return [runuser, "-u", SERVER_OS_USER, "--", *argv]
        return ["su", "-s", "/bin/sh", SERVER_OS_USER, "-c", shlex.join(argv)]

    def _run(self, argv: list[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
        command = self._as_server_user(argv)
        try:
            return subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=self.workdir,
                env=_clean_environment(),
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresHarnessError(
                f"{what} did not finish within {timeout:.0f}s: {shlex.join(command)}"
                f"{self._log_section()}"
            ) from exc
        except OSError as exc:
            raise PostgresHarnessError(
                f"{what} could not be run ({exc}): {shlex.join(command)}"
            ) from exc

    def _prepare_workdir(self, server_user: pwd.struct_passwd | None) -> None:
        if server_user is None:
            return
        os.chown(self.workdir, server_user.pw_uid, server_user.pw_gid)
        probe = self._run(["test", "-w", str(self.workdir)], "access check", 30)
        if probe.returncode != 0:
            raise PostgresHarnessError(
                f"the {SERVER_OS_USER!r} OS user cannot write to {self.workdir}: every parent "
                "directory must be searchable by it (set TMPDIR to a directory such as /tmp)"
                f"{_output_section(probe)}"
            )

    def _initdb(self, bin_dir: Path) -> None:
        argv = [
            str(bin_dir / "initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]
        result = self._run(argv, "initdb", 180)
        if result.returncode != 0:
            raise PostgresHarnessError(
                f"initdb failed with exit code {result.returncode}: {shlex.join(argv)}"
                f"{_output_section(result)}"
            )
        # Rewrite in place so the file keeps the owner and mode initdb gave it.
        with (self.data_dir / "pg_hba.conf").open("w", encoding="utf-8") as hba:
            hba.write(PG_HBA)

    def _launch_on_some_port(self) -> None:
        if self._requested_port is not None:
            self._launch(self._requested_port, retry_bind_for=0.0)
            return
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._launch(_free_loopback_port(), retry_bind_for=0.0)
                return
            except _PortInUseError:
                if attempt == PORT_ATTEMPTS:
                    raise

    def _launch(self, port: int, retry_bind_for: float) -> None:
        """Start the server on `port`; retry while the port is taken for up to retry_bind_for s."""
        deadline = time.monotonic() + retry_bind_for
        while True:
            try:
                self._pg_ctl_start(port)
                break
            except _PortInUseError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
        self._port = port
        self._wait_until_accepting()

    def _pg_ctl_start(self, port: int) -> None:
        options = ["-p", str(port), "-k", str(self.workdir)]
        for name, value in SERVER_SETTINGS:
            options += ["-c", f"{name}={value}"]
        argv = [
            str(self.bin_dir / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(round(self._startup_timeout)),
            # pg_ctl hands this string to /bin/sh, so shell quoting is the right quoting.
            "-o",
            shlex.join(options),
        ]
        log_offset = self._log_size()
        result = self._run(argv, "pg_ctl start", self._startup_timeout + 30)
        if result.returncode == 0:
            return
        # A timed-out start may leave a postmaster still coming up: never leave it behind.
        self._kill_server()
        new_log = self._read_log(log_offset)
        message = (
            f"PostgreSQL did not start on {LOOPBACK}:{port} (pg_ctl exit code "
            f"{result.returncode}): {shlex.join(argv)}{_output_section(result)}"
            f"\n--- server log {self.log_path} ---\n{_tail(new_log) or '(empty)'}"
        )
        if "could not bind" in new_log or "Address already in use" in new_log:
            raise _PortInUseError(message)
        raise PostgresHarnessError(message)

    def _wait_until_accepting(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.conninfo(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.1)
        self._kill_server()
        raise PostgresHarnessError(
            f"PostgreSQL on {LOOPBACK}:{self._port} did not accept connections within "
            f"{self._startup_timeout:.0f}s: {last_error}{self._log_section()}"
        )

    def _pg_ctl_stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        argv = [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir)]
        result = self._run([*argv, "-m", "fast", "-w", "-t", "60"], "pg_ctl stop", 90)
        if result.returncode == 0:
            return
        self._kill_server()
        if (self.data_dir / "postmaster.pid").exists():
            raise PostgresHarnessError(
                f"PostgreSQL in {self.data_dir} did not stop (pg_ctl exit code "
                f"{result.returncode}){_output_section(result)}{self._log_section()}"
            )

    def _kill_server(self) -> None:
        """Last resort: immediate shutdown, then SIGKILL the postmaster we started."""
        pidfile = self.data_dir / "postmaster.pid"
        if not pidfile.exists():
            return
        with contextlib.suppress(PostgresHarnessError):
            self._run(
                [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate"],
                "pg_ctl stop -m immediate",
                30,
            )
        if not pidfile.exists():
            return
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text(encoding="utf-8").splitlines()[0])
            os.kill(pid, signal.SIGKILL)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
        with contextlib.suppress(OSError):
            pidfile.unlink()

    def _abandon(self) -> None:
        """Clean up after a failed start/restart without masking the original error."""
        self._running = False
        _LIVE_CLUSTERS.discard(self)
        if self._workdir is None:
            return
        with contextlib.suppress(Exception):
            self._kill_server()
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._release_watchdog(stopped=True)
        self._workdir = None

    def _start_watchdog(self) -> None:
        stop_argv = self._as_server_user(
            [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate"]
        )
        payload = json.dumps([stop_argv, str(self.workdir), str(self.data_dir / "postmaster.pid")])
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, payload],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env=_clean_environment(),
            # Own session: a Ctrl-C to the test's process group must not kill it first.
            start_new_session=True,
        )

    def _release_watchdog(self, *, stopped: bool) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        stdin: IO[bytes] | None = watchdog.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                if stopped:
                    stdin.write(b"stopped")
                stdin.close()
        if stopped:
            try:
                watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _read_log(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _log_section(self) -> str:
        if self._workdir is None:
            return ""
        return f"\n--- server log {self.log_path} ---\n{_tail(self._read_log()) or '(empty)'}"


class _PortInUseError(PostgresHarnessError):
    """The chosen port was taken between picking it and the server binding it."""


def _check_database_name(name: str) -> None:
    if not DATABASE_NAME.fullmatch(name):
        raise ValueError(
            f"database name {name!r} must be a lower-case identifier: [a-z_][a-z0-9_]{{0,62}}"
        )


def _output_section(result: subprocess.CompletedProcess[str]) -> str:
    output = "\n".join(part.strip() for part in (result.stdout, result.stderr) if part.strip())
    return f"\n--- output ---\n{_tail(output)}" if output else ""


_LIVE_CLUSTERS: set[PostgresCluster] = set()


@atexit.register
def _stop_live_clusters() -> None:
    for cluster in list(_LIVE_CLUSTERS):
        try:
            cluster.stop()
        except Exception as exc:
            print(f"tests.support.postgres: could not stop {cluster!r}: {exc}", file=sys.stderr)
