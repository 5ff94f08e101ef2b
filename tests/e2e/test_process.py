"""The real `idservice` command as a child process: serve, drain, config, migrate, reencrypt."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from idservice.adapters.crypto import DataKey, KeyRing
from idservice.adapters.db import tables
from idservice.bootstrap import build_app
from idservice.entrypoints.cli import COMMANDS
from idservice.entrypoints.grpc.server import create_server
from idservice.v1 import account_pb2, auth_pb2, common_pb2
from tests.conftest import make_settings
from tests.support.client import STRONG_PASSWORD, Client, Person, decode, new_person
from tests.support.json_logs import log_lines, logged
from tests.support.postgres import PostgresCluster, find_pg_bin
from tests.support.server_process import (
    ServerProcess,
    child_environment,
    free_loopback_port,
    run_idservice,
)

pytestmark = pytest.mark.slow

# Tiny Argon2 parameters keep every hash in the child processes fast.
FAST_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
}
# One hash with 256 MiB and two passes takes about a second on current hardware: long enough for
# SIGTERM to land while a SignUp is hashing, and a memory jump the test can see in /proc.
SLOW_ARGON2_MEMORY_KIB = 256 * 1024
SLOW_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "2",
    "IDSERVICE_ARGON2_MEMORY_COST": str(SLOW_ARGON2_MEMORY_KIB),
    "IDSERVICE_ARGON2_PARALLELISM": "1",
    # Draining must outlast the hash however slow the machine is.
    "IDSERVICE_SHUTDOWN_GRACE": "120s",
}
# The hash is running once the server's resident memory grew by this much.
HASH_STARTED_RSS_GROWTH_KIB = 64 * 1024
IDSERVICE_SERVICES = {
    "idservice.v1.IdentityService",
    "idservice.v1.AccountService",
    "idservice.v1.AuthService",
    "idservice.v1.GuardianConsentService",
}
# Personal account fields stored as ciphertexts (`<name>_ct` columns).
ACCOUNT_PERSONAL_FIELDS = ("email", "name", "phone", "birth_date", "ci", "di")
# Every bounded wait in this module; generous because nothing is asserted about durations.
WAIT_SECONDS = 60.0
RPC_TIMEOUT = 60.0
_database_counter = itertools.count()


# ----------------------------------------------------------------- helpers


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def _health(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    status: int = response.status
    return status


def _health_or_none(channel: grpc.Channel, service: str = "") -> int | None:
    try:
        return _health(channel, service)
    except grpc.RpcError:
        return None


def _reflected_services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    assert len(responses) == 1
    return {service.name for service in responses[0].list_services_response.service}


def _sign_up(client: Client, person: Person, email: str) -> account_pb2.SignUpResponse:
    token = client.verify(person).verification_token
    request = client.signup_request(person, email=email, verification_token=token)
    response: account_pb2.SignUpResponse = client.accounts.SignUp(request, timeout=RPC_TIMEOUT)
    return response


def _get_account(client: Client, access_token: str) -> common_pb2.Account:
    response = client.accounts.GetAccount(
        account_pb2.GetAccountRequest(), metadata=client.bearer(access_token), timeout=RPC_TIMEOUT
    )
    account: common_pb2.Account = response.account
    return account


def _rss_kib(pid: int) -> int:
    """Resident memory of a process (Linux /proc), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def _connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def _config_error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "configuration error" in line]


def _table_names(url: str) -> set[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _unique_account_columns(url: str) -> set[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        inspector = sqlalchemy.inspect(engine)
        unique: set[str] = set()
        for constraint in inspector.get_unique_constraints("accounts"):
            unique.update(constraint["column_names"])
        for index in inspector.get_indexes("accounts"):
            if index["unique"]:
                unique.update(name for name in index["column_names"] if name)
        return unique
    finally:
        engine.dispose()


def _account_ids(url: str) -> list[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sqlalchemy.select(tables.accounts.c.id)).scalars())
    finally:
        engine.dispose()


def _revision_line(stdout: str) -> str:
    match = re.fullmatch(r"database at revision (\S+)\n", stdout)
    assert match, stdout
    return match.group(1)


def _reencrypt_counts(stdout: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in stdout.splitlines():
        match = re.fullmatch(r"(\S+): (\d+) value\(s\) re-encrypted", line)
        assert match, f"unexpected reencrypt output line: {line!r}"
        counts[match.group(1)] = int(match.group(2))
    return counts


def _account_ciphertext_key_ids(url: str) -> set[str]:
    columns = [tables.accounts.c[f"{name}_ct"] for name in ACCOUNT_PERSONAL_FIELDS]
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sqlalchemy.select(*columns)).all()
    finally:
        engine.dispose()
    return {value.split(".")[1] for row in rows for value in row if value is not None}


@contextlib.contextmanager
def _in_process_client(workdir: Path, database_url: str, data_keys: str) -> Iterator[Client]:
    """The service in this process: the before and after of the command under test."""
    settings = make_settings(workdir, database_url, data_keys=data_keys)
    app = build_app(settings)
    try:
        running = create_server(app, "127.0.0.1:0")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                yield Client(channel, terms_version=settings.terms_version)
        finally:
            running.halt()
    finally:
        app.close()


def _stop_postgres(cluster: PostgresCluster) -> None:
    """Stop the server but keep its data (the harness's restart() starts it again)."""
    argv = [
        str(cluster.bin_dir / "pg_ctl"),
        "stop",
        "-D",
        str(cluster.data_dir),
        "-m",
        "fast",
        "-w",
        "-t",
        "60",
    ]
    if os.geteuid() == 0:  # the server runs as the postgres OS user (see the harness)
        runuser = shutil.which("runuser")
        assert runuser is not None, "runuser is needed to stop the cluster as root"
        argv = [runuser, "-u", "postgres", "--", *argv]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    result = subprocess.run(
        argv,
        cwd=cluster.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (cluster.data_dir / "postmaster.pid").exists()


def _require_postgres_binaries() -> None:
    if find_pg_bin() is not None:
        return
    if os.environ.get("IDSERVICE_TEST_REQUIRE_POSTGRES") == "1":
        pytest.fail("PostgreSQL is required (IDSERVICE_TEST_REQUIRE_POSTGRES=1) but missing")
    pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory for the child process (its ./var lives here)."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
def pg_cluster(postgres_cluster: PostgresCluster | None) -> PostgresCluster:
    if postgres_cluster is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")
    return postgres_cluster


# ----------------------------------------------------------------- 1. fresh defaults


def test_fresh_defaults_create_var_and_serve_the_password_flow(workdir: Path) -> None:
    with ServerProcess(FAST_ARGON2, workdir, log_dir=workdir.parent) as proc:
        var = workdir / "var"
        assert (var / "idservice.db").is_file()
        keys = var / "keys"
        assert keys.is_dir()
        assert keys.stat().st_mode & 0o777 == 0o700
        key_files = {path.name: path.read_bytes() for path in keys.iterdir()}
        assert key_files, "no development keys were written"
        logs = proc.logs()
        assert logged(logs, "development data keys", level="warning"), logs
        assert logged(logs, "development signing key", level="warning"), logs

        channel = proc.channel()
        serving = health_pb2.HealthCheckResponse.SERVING
        assert _health(channel) == serving
        for service in sorted(IDSERVICE_SERVICES):
            assert _health(channel, service) == serving, service
        assert _reflected_services(channel) >= {*IDSERVICE_SERVICES, "grpc.health.v1.Health"}

        client = Client(channel)
        person = new_person()
        verified = client.verify(person)
        assert verified.name == person.name
        assert not verified.duplicate.exists
        signed = client.accounts.SignUp(
            client.signup_request(
                person,
                email="Fresh.Start@Example.com",
                verification_token=verified.verification_token,
            ),
            timeout=RPC_TIMEOUT,
        )
        assert signed.account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
        assert signed.account.identity_verified

        login = client.auth.PasswordLogin(
            auth_pb2.PasswordLoginRequest(
                email="fresh.start@example.com", password=STRONG_PASSWORD
            ),
            timeout=RPC_TIMEOUT,
        )
        account = _get_account(client, login.session.access_token)
        assert account.id == signed.account.id
        assert (account.name, account.birth_date) == (person.name, person.birth_date)

        refreshed = client.auth.RefreshSession(
            auth_pb2.RefreshSessionRequest(refresh_token=login.session.refresh_token),
            timeout=RPC_TIMEOUT,
        ).session
        assert refreshed.refresh_token != login.session.refresh_token
        client.auth.Logout(
            auth_pb2.LogoutRequest(refresh_token=refreshed.refresh_token), timeout=RPC_TIMEOUT
        )
        with pytest.raises(grpc.RpcError) as after_logout:
            client.auth.RefreshSession(
                auth_pb2.RefreshSessionRequest(refresh_token=refreshed.refresh_token),
                timeout=RPC_TIMEOUT,
            )
        failure = decode(after_logout.value)
        assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
        assert proc.terminate() == 0, proc.logs()

    # "Generated once": a second start in the same directory reuses the keys, so data written
    # under them still decrypts and tokens signed before the restart still verify.
    with ServerProcess(FAST_ARGON2, workdir, log_dir=workdir.parent) as again:
        assert {path.name: path.read_bytes() for path in keys.iterdir()} == key_files
        assert "generated a development" not in again.logs()
        client = Client(again.channel())
        assert _get_account(client, signed.session.access_token).name == person.name
        relogin = client.login("fresh.start@example.com")
        assert relogin.session.account_id == signed.account.id
        assert again.terminate() == 0, again.logs()


# ----------------------------------------------------------------- 2. SIGTERM drains


@pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="watches /proc for the hash to start"
)
def test_sigterm_during_signup_lets_it_finish_then_exits_zero(workdir: Path) -> None:
    person = new_person()
    email = f"draining-{os.getpid()}@example.com"
    with ServerProcess(SLOW_ARGON2, workdir, log_dir=workdir.parent) as proc:
        channel = proc.channel()
        client = Client(channel)
        token = client.verify(person).verification_token
        health = health_pb2_grpc.HealthStub(channel)
        # A Watch opened before SIGTERM is an in-flight call: it sees the drain's NOT_SERVING
        # deterministically, where a new Check could race the listener closing.
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=WAIT_SECONDS * 2)
        try:
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            baseline = _rss_kib(proc.pid)
            signup = client.accounts.SignUp.future(
                client.signup_request(person, email=email, verification_token=token),
                timeout=WAIT_SECONDS * 2,
            )
            # In flight = the server is hashing this SignUp's password (its memory jumps).
            _wait_for(
                lambda: (
                    signup.done() or _rss_kib(proc.pid) > baseline + HASH_STARTED_RSS_GROWTH_KIB
                ),
                "the SignUp's password hash to start",
            )
            assert not signup.done(), f"SignUp finished before SIGTERM: {signup.exception()}"
            proc.send_signal(signal.SIGTERM)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            watch.cancel()

        response = signup.result(timeout=WAIT_SECONDS * 2)
        assert response.account.email == email
        assert response.account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
        assert response.session.access_token
        assert proc.wait(timeout=WAIT_SECONDS * 2) == 0, proc.logs()
        assert _connection_refused(proc.port)
        logs = proc.logs()
        assert "received SIGTERM: draining" in logs
        assert logged(logs, "stopped", level="info", logger="idservice"), logs

    # The SignUp was committed, not just answered.
    assert _account_ids(f"sqlite:///{workdir / 'var' / 'idservice.db'}") == [response.account.id]


# ----------------------------------------------------------------- 3. invalid configuration


def _valid_ring() -> str:
    return KeyRing.generate("k1").serialize()


def _short_key_ring() -> str:
    return "k1:" + KeyRing.generate("k1").serialize().partition(":")[2][:24]


PRODUCTION_PORTONE = {
    "IDSERVICE_ENV": "production",
    "IDSERVICE_IDENTITY_PROVIDER": "portone",
    "IDSERVICE_PORTONE_API_SECRET": "test-portone-secret",
}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param(
            {"IDSERVICE_LOCKOUT_THRESHOLD": "abc"}, "IDSERVICE_LOCKOUT_THRESHOLD", id="not-a-number"
        ),
        pytest.param({"IDSERVICE_LISTEN": "nonsense"}, "IDSERVICE_LISTEN", id="listen-nonsense"),
        pytest.param(
            {"IDSERVICE_LOCKOUT_DURATION": "15"}, "IDSERVICE_LOCKOUT_DURATION", id="no-unit"
        ),
        pytest.param(
            {"IDSERVICE_ENV": "production"}, "IDSERVICE_IDENTITY_PROVIDER", id="prod-sandbox"
        ),
        pytest.param(PRODUCTION_PORTONE, "IDSERVICE_DATA_KEYS", id="prod-no-data-keys"),
        pytest.param(
            {**PRODUCTION_PORTONE, "IDSERVICE_DATA_KEYS": _valid_ring()},
            "IDSERVICE_SIGNING_KEY_FILE",
            id="prod-no-signing-key",
        ),
        pytest.param(
            {"IDSERVICE_DATA_KEYS": _short_key_ring()}, "IDSERVICE_DATA_KEYS", id="short-data-key"
        ),
    ],
)
def test_invalid_configuration_stops_startup_with_one_line(
    workdir: Path, env: dict[str, str], variable: str
) -> None:
    result = run_idservice("serve", env={**FAST_ARGON2, **env}, cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"idservice: configuration error: {variable}: "), lines[0]
    # Secrets are never echoed back, and nothing was created before giving up.
    for value in env.values():
        if len(value) > 16:
            assert value not in result.stderr
    assert not (workdir / "var").exists()


def test_production_on_sqlite_is_warned_about(workdir: Path) -> None:
    """Allowed (the contract names PostgreSQL for production without refusing SQLite), but
    never silent: the database would be one file that no other instance shares."""
    keys = workdir.parent / "keys"
    keys.mkdir()
    signing = keys / "signing.pem"
    signing.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert, key = _write_self_signed_tls(keys)
    env = {
        # The OWASP parameters production requires (purge hashes nothing).
        **PRODUCTION_PORTONE,
        "IDSERVICE_DATA_KEYS": _valid_ring(),
        "IDSERVICE_SIGNING_KEY_FILE": str(signing),
        "IDSERVICE_TLS_CERT_FILE": str(cert),
        "IDSERVICE_TLS_KEY_FILE": str(key),
    }
    result = run_idservice("purge", env=env, cwd=workdir)
    assert result.returncode == 0, result.stderr
    (warning,) = [line for line in log_lines(result.stderr) if "SQLite" in line["event"]]
    assert warning["level"] == "warning"
    assert warning["event"].startswith("IDSERVICE_DATABASE_URL is SQLite in production")


@pytest.mark.parametrize("command", ["serve", "migrate", "purge"])
def test_sqlite_in_a_missing_directory_is_one_line_and_creates_nothing(
    workdir: Path, command: str
) -> None:
    # A typo in the path must not start an empty database somewhere new; only the default
    # ./var is created (test_fresh_defaults_create_var_and_serve_the_password_flow).
    env = {**FAST_ARGON2, "IDSERVICE_DATABASE_URL": "sqlite:///./data/idservice.db"}
    result = run_idservice(command, env=env, cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("idservice: configuration error: IDSERVICE_DATABASE_URL: ")
    assert "./data" not in lines[0]
    assert list(workdir.iterdir()) == []


def _write_self_signed_tls(directory: Path) -> tuple[Path, Path]:
    """A throwaway P-256 certificate and key for 127.0.0.1, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _listen_in_use(directory: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    blocker = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    return {"IDSERVICE_LISTEN": f"127.0.0.1:{blocker.getsockname()[1]}"}


def _tls_key_missing(directory: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    cert, _ = _write_self_signed_tls(directory)
    return {
        "IDSERVICE_TLS_CERT_FILE": str(cert),
        "IDSERVICE_TLS_KEY_FILE": str(directory / "missing.key"),
    }


def _tls_key_not_pem(directory: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    cert, key = _write_self_signed_tls(directory)
    key.write_text("this is not a private key\n", encoding="ascii")
    return {"IDSERVICE_TLS_CERT_FILE": str(cert), "IDSERVICE_TLS_KEY_FILE": str(key)}


def _tls_key_of_another_certificate(directory: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    cert, _ = _write_self_signed_tls(directory)
    other = directory / "other"
    other.mkdir()
    _, key = _write_self_signed_tls(other)
    return {"IDSERVICE_TLS_CERT_FILE": str(cert), "IDSERVICE_TLS_KEY_FILE": str(key)}


def _tls_key_of_another_certificate_two_processes(
    directory: Path, stack: contextlib.ExitStack
) -> dict[str, str]:
    # Checked before any server process starts: one error line, not one per restart.
    return {
        **_tls_key_of_another_certificate(directory, stack),
        "IDSERVICE_PROCESSES": "2",
    }


def _metrics_on_the_api_port(directory: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    port = free_loopback_port()
    return {"IDSERVICE_LISTEN": f"127.0.0.1:{port}", "IDSERVICE_METRICS_LISTEN": f"0.0.0.0:{port}"}


def _database_driver_missing(directory: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    # A common URL form, but psycopg2 is not a dependency: the contract names psycopg (3).
    return {"IDSERVICE_DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:1/idservice"}


@pytest.mark.parametrize(
    ("make_env", "variable"),
    [
        pytest.param(_listen_in_use, "IDSERVICE_LISTEN", id="listen-in-use"),
        pytest.param(_tls_key_missing, "IDSERVICE_TLS_KEY_FILE", id="tls-key-missing"),
        pytest.param(_tls_key_not_pem, "IDSERVICE_TLS_KEY_FILE", id="tls-key-not-pem"),
        pytest.param(
            _tls_key_of_another_certificate, "IDSERVICE_TLS_KEY_FILE", id="tls-key-mismatch"
        ),
        pytest.param(
            _tls_key_of_another_certificate_two_processes,
            "IDSERVICE_TLS_KEY_FILE",
            id="tls-key-mismatch-two-processes",
        ),
        pytest.param(_metrics_on_the_api_port, "IDSERVICE_METRICS_LISTEN", id="metrics-port"),
        pytest.param(
            _database_driver_missing, "IDSERVICE_DATABASE_URL", id="database-driver-missing"
        ),
    ],
)
def test_configuration_refused_while_starting_names_the_variable(
    workdir: Path,
    make_env: Callable[[Path, contextlib.ExitStack], dict[str, str]],
    variable: str,
) -> None:
    # Found out only when a file is read or a port bound: development-key warnings may precede
    # the error line, but there is exactly one error line and it names the right variable.
    with contextlib.ExitStack() as stack:
        # Never the default port: should start-up wrongly succeed, it must not collide.
        listen = {"IDSERVICE_LISTEN": f"127.0.0.1:{free_loopback_port()}"}
        env = {**FAST_ARGON2, **listen, **make_env(workdir.parent, stack)}
        result = run_idservice("serve", env=env, cwd=workdir)
    assert result.returncode == 2, result.stderr
    lines = _config_error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"idservice: configuration error: {variable}: "), result.stderr
    assert "Traceback" not in result.stderr
    if make_env is _listen_in_use:
        assert "in use" in lines[0], lines[0]  # what to do about it, not only that it failed


def test_failed_handshakes_leave_stderr_json(workdir: Path) -> None:
    """gRPC's own log lines are plain text: anyone reaching a TLS port could add one per
    connection that fails its handshake. Below ERROR they stay off (GRPC_VERBOSITY)."""
    cert, key = _write_self_signed_tls(workdir.parent)
    env = {**FAST_ARGON2, "IDSERVICE_TLS_CERT_FILE": str(cert), "IDSERVICE_TLS_KEY_FILE": str(key)}
    server = ServerProcess(env, workdir, wait=False)
    try:
        deadline = time.monotonic() + 60
        while not logged(server.stderr_path.read_text(), "listening on"):
            assert server.returncode() is None and time.monotonic() < deadline
            time.sleep(0.05)
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as plain:
                plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                plain.recv(1024)
        assert server.terminate() == 0
    finally:
        server.kill()
    text = server.stderr_path.read_text()
    assert "Handshake failed" not in text
    for line in text.splitlines():
        json.loads(line)


# ----------------------------------------------------------------- help and version


@pytest.mark.parametrize("command", [None, *sorted(COMMANDS)])
def test_help_says_what_each_command_does_and_where_configuration_comes_from(
    workdir: Path, command: str | None
) -> None:
    args = ["--help"] if command is None else [command, "--help"]
    result = run_idservice(*args, env={}, cwd=workdir)
    assert result.returncode == 0, result.stderr
    usage, description, *rest = result.stdout.split("\n\n")
    assert usage.startswith("usage: idservice"), result.stdout
    # A sentence about what it does, not just the option list.
    assert not description.startswith(("options:", "positional arguments:")), result.stdout
    assert len(description.split()) >= 5, result.stdout
    assert "IDSERVICE_*" in " ".join(rest).replace("\n", " "), result.stdout
    assert list(workdir.iterdir()) == []  # asking for help touches nothing


def test_version_prints_the_installed_version(workdir: Path) -> None:
    result = run_idservice("--version", env={}, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"idservice {importlib.metadata.version('idservice')}\n"


# ----------------------------------------------------------------- 4. migrate


@pytest.mark.postgres
def test_migrate_creates_the_schema_on_postgres_and_is_repeatable(
    pg_cluster: PostgresCluster, workdir: Path
) -> None:
    url = pg_cluster.create_database(f"migrate_{os.getpid()}_{next(_database_counter)}")
    assert _table_names(url) == set()
    env = child_environment({"IDSERVICE_DATABASE_URL": url})
    # Two at once on the empty database (as when replicas start together), then once more.
    concurrent = [
        subprocess.Popen(
            [sys.executable, "-m", "idservice", "migrate"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=WAIT_SECONDS * 2) for process in concurrent]
    revisions = set()
    for process, (stdout, stderr) in zip(concurrent, outputs, strict=True):
        assert process.returncode == 0, stderr
        revisions.add(_revision_line(stdout))
    assert len(revisions) == 1
    expected = {*tables.metadata.tables, "alembic_version"}
    assert _table_names(url) == expected
    assert {"email_index", "ci_index", "di_index"} <= _unique_account_columns(url)

    again = run_idservice("migrate", env={"IDSERVICE_DATABASE_URL": url}, cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert {_revision_line(again.stdout)} == revisions
    assert _table_names(url) == expected


# ----------------------------------------------------------------- 5. database restart


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own: stopping it disturbs no other test."""
    _require_postgres_binaries()
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.postgres
def test_database_outage_is_unavailable_then_recovers(
    own_cluster: PostgresCluster, workdir: Path
) -> None:
    url = own_cluster.create_database("outage")
    env = {**FAST_ARGON2, "IDSERVICE_DATABASE_URL": url, "IDSERVICE_DATA_KEYS": _valid_ring()}
    with ServerProcess(env, workdir, log_dir=workdir.parent) as proc:
        channel = proc.channel()
        client = Client(channel)
        person = new_person()
        signed = _sign_up(client, person, f"outage-{os.getpid()}@example.com")
        access_token = signed.session.access_token
        assert _get_account(client, access_token).id == signed.account.id

        _stop_postgres(own_cluster)
        try:
            with pytest.raises(grpc.RpcError) as read_failure:
                _get_account(client, access_token)
            with pytest.raises(grpc.RpcError) as write_failure:
                client.verify(new_person())
            for raised in (read_failure, write_failure):
                failure = decode(raised.value)
                assert (failure.code, failure.reason) == (
                    grpc.StatusCode.UNAVAILABLE,
                    "DATABASE_UNAVAILABLE",
                ), failure
                assert failure.domain == "idservice.v1"
            not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
            _wait_for(
                lambda: (
                    _health_or_none(channel) == not_serving
                    and _health_or_none(channel, "idservice.v1.AccountService") == not_serving
                ),
                "health to turn NOT_SERVING",
            )
        finally:
            own_cluster.restart()

        # The very next call after the database is back succeeds (stale pooled connections are
        # noticed and replaced, not handed to the call).
        assert _get_account(client, access_token).id == signed.account.id
        serving = health_pb2.HealthCheckResponse.SERVING
        _wait_for(
            lambda: (
                _health_or_none(channel) == serving
                and _health_or_none(channel, "idservice.v1.AccountService") == serving
            ),
            "health to turn SERVING again",
        )
        assert "unhandled" not in proc.logs()
        assert proc.terminate() == 0, proc.logs()


# ----------------------------------------------------------------- 6. reencrypt


def test_reencrypt_moves_fields_to_the_new_key(database_url: str, workdir: Path) -> None:
    old = KeyRing.generate("k1")
    new = KeyRing.generate("k2")
    rotated = f"{new.serialize()},{old.serialize()}"
    env = {**FAST_ARGON2, "IDSERVICE_DATABASE_URL": database_url}
    person = new_person()
    email = f"rotate-{os.getpid()}@example.com"

    with _in_process_client(workdir, database_url, old.serialize()) as client:
        signed = _sign_up(client, person, email)
        client.verify(new_person())  # an unused verification keeps its encrypted person
    assert _account_ciphertext_key_ids(database_url) == {"k1"}

    first = run_idservice("reencrypt", env={**env, "IDSERVICE_DATA_KEYS": rotated}, cwd=workdir)
    assert first.returncode == 0, first.stderr
    counts = _reencrypt_counts(first.stdout)
    for name in ACCOUNT_PERSONAL_FIELDS:
        assert counts[f"accounts.{name}_ct"] == 1, counts
    assert counts["verifications.person_ct"] == 1, counts
    assert counts["outbox.payload_ct"] >= 1, counts
    assert _account_ciphertext_key_ids(database_url) == {"k2"}

    with _in_process_client(workdir, database_url, rotated) as client:
        login = client.login(email)
        account = _get_account(client, login.session.access_token)
        assert account.id == signed.account.id
        assert (account.email, account.name, account.birth_date) == (
            email,
            person.name,
            person.birth_date,
        )

    second = run_idservice("reencrypt", env={**env, "IDSERVICE_DATA_KEYS": rotated}, cwd=workdir)
    assert second.returncode == 0, second.stderr
    again = _reencrypt_counts(second.stdout)
    assert set(again) == set(counts)
    assert all(count == 0 for count in again.values()), again

    # Nothing needs k1 to decrypt any more: retire it, keeping its material only for the lookup
    # indexes (the `index` entry idservice.adapters.crypto documents); the account still reads.
    retired = KeyRing(
        [DataKey("k2", new.current.material), DataKey("index", old.current.material)]
    ).serialize()
    with _in_process_client(workdir, database_url, retired) as client:
        login = client.login(email)
        assert _get_account(client, login.session.access_token).name == person.name


# ----------------------------------------------------------------- 7. a ring that does not fit


def _one_data_keys_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = _config_error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("idservice: configuration error: IDSERVICE_DATA_KEYS: "), lines
    assert "Traceback" not in result.stderr
    return lines[0]


def test_serve_refuses_another_ring_on_an_existing_database(
    database_url: str, workdir: Path
) -> None:
    stored_under = _valid_ring()
    email = f"ring-{os.getpid()}@example.com"
    with _in_process_client(workdir, database_url, stored_under) as client:
        _sign_up(client, new_person(), email)
    env = {
        **FAST_ARGON2,
        "IDSERVICE_DATABASE_URL": database_url,
        "IDSERVICE_LISTEN": f"127.0.0.1:{free_loopback_port()}",
    }
    migrated = run_idservice("migrate", env=env, cwd=workdir)
    assert migrated.returncode == 0, migrated.stderr

    another = _valid_ring()
    refused = run_idservice(
        "serve", env={**env, "IDSERVICE_DATA_KEYS": another}, cwd=workdir, timeout=WAIT_SECONDS
    )

    _one_data_keys_error(refused)
    for ring in (stored_under, another):
        assert ring.partition(":")[2] not in refused.stderr
    # The ring the data was stored under still serves it.
    with _in_process_client(workdir, database_url, stored_under) as client:
        assert client.login(email).session.account_id


def test_serve_refuses_when_the_development_keys_were_lost(workdir: Path) -> None:
    with ServerProcess(FAST_ARGON2, workdir, log_dir=workdir.parent) as proc:
        _sign_up(Client(proc.channel()), new_person(), f"lost-{os.getpid()}@example.com")
        assert proc.terminate() == 0, proc.logs()
    keys = workdir / "var" / "keys"
    shutil.rmtree(keys)  # ./var/idservice.db remains

    env = {**FAST_ARGON2, "IDSERVICE_LISTEN": f"127.0.0.1:{free_loopback_port()}"}
    refused = run_idservice("serve", env=env, cwd=workdir, timeout=WAIT_SECONDS)

    line = _one_data_keys_error(refused)
    assert "development key ring" in line and "missing" in line, line
    assert not keys.exists(), "new development keys were generated"


@pytest.mark.slow
def test_purge_command_prints_counts_only(tmp_path: Path) -> None:
    result = run_idservice("purge", env=dict(FAST_ARGON2), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines, result.stdout
    for line in lines:
        what, _, count = line.rpartition(": ")
        assert what and count.isdigit(), line


@pytest.mark.slow
def test_a_misspelt_variable_is_warned_about_with_the_setting_it_nearly_is(
    tmp_path: Path,
) -> None:
    env = {**FAST_ARGON2, "IDSERVICE_LOCKOUT_THRESHHOLD": "3"}
    result = run_idservice("purge", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [warning] = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if "IDSERVICE_LOCKOUT_THRESHHOLD" in line
    ]
    assert warning["level"] == "warning"
    assert warning["event"] == (
        "IDSERVICE_LOCKOUT_THRESHHOLD is not a configuration variable "
        "(IDSERVICE_LOCKOUT_THRESHOLD?): ignored"
    )


@pytest.mark.slow
def test_audit_verify_without_its_database_is_no_verdict(tmp_path: Path) -> None:
    """A scheduled `audit verify` tells an outage (3) from a broken chain (1)."""
    url = "postgresql+psycopg://someone:hunter2-secret@127.0.0.1:1/idservice"
    result = run_idservice(
        "audit", "verify", env={**FAST_ARGON2, "IDSERVICE_DATABASE_URL": url}, cwd=tmp_path
    )
    assert result.returncode == 3, result.stderr
    assert "audit not checked" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert result.stdout == ""
    # A wrong SQLite path is no database with an empty, intact chain: it is not migrated.
    elsewhere = tmp_path / "no-such.db"
    result = run_idservice(
        "audit",
        "verify",
        env={**FAST_ARGON2, "IDSERVICE_DATABASE_URL": f"sqlite:///{elsewhere}"},
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "ok" not in result.stdout
    assert "FileNotFoundError" in result.stderr, result.stderr
    assert not elsewhere.exists(), "a wrong path became an empty database file"


@pytest.mark.slow
def test_unreachable_database_at_start_is_one_line_without_the_url(tmp_path: Path) -> None:
    url = "postgresql+psycopg://someone:hunter2-secret@127.0.0.1:1/idservice"
    result = run_idservice(
        "serve", env={**FAST_ARGON2, "IDSERVICE_DATABASE_URL": url}, cwd=tmp_path
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("idservice:")]
    assert len(errors) == 1
    assert "IDSERVICE_DATABASE_URL" in errors[0]
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_metrics_count_rpcs_by_code_and_reason(tmp_path: Path) -> None:
    import httpx

    metrics_port = free_loopback_port()
    env = {**FAST_ARGON2, "IDSERVICE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}
    workdir = tmp_path / "work"
    workdir.mkdir()
    with ServerProcess(env, workdir, log_dir=tmp_path) as proc, proc.channel() as channel:
        client = Client(channel)
        client.auth.GetJwks(auth_pb2.GetJwksRequest())
        with pytest.raises(grpc.RpcError):
            client.login("nobody@example.com", "wrong password here")
        body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    assert 'idservice_rpcs_total{code="OK",method="GetJwks",reason=""} 1.0' in body
    assert (
        'idservice_rpcs_total{code="UNAUTHENTICATED",method="PasswordLogin",'
        'reason="INVALID_CREDENTIALS"} 1.0'
    ) in body
    assert "nobody@example.com" not in body


@pytest.mark.parametrize(
    ("option", "hinted"),
    [
        (["--port", "50951"], True),
        (["--listen=127.0.0.1:1"], True),
        (["--password-file", "x"], False),
        (["--profile"], False),
    ],
)
def test_an_address_given_as_an_option_points_to_idservice_listen(
    tmp_path: Path, option: list[str], hinted: bool
) -> None:
    result = run_idservice("serve", *option, env=dict(FAST_ARGON2), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert ("IDSERVICE_LISTEN=host:port" in result.stderr) is hinted, result.stderr
