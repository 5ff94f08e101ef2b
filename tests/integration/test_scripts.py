"""The echo server, benchmark and load test scripts run bounded and report what they promise."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
# Small Argon2 parameters, read by the scripts the way the service reads them (IDSERVICE_*).
SMALL_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
}
# A safety net for a hung script, far above a normal run; never a measured expectation.
SCRIPT_TIMEOUT_SECONDS = 180
STARTUP_TIMEOUT_SECONDS = 30
SERVICE_PHASES = ("PasswordLogin", "SignUp", "RefreshSession", "IntrospectToken", "GetAccount")


def script_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSERVICE_")}
    env.update(SMALL_ARGON2)
    return env


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a script to completion; cwd is a scratch directory so no ./.env is read."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        cwd=cwd,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        check=False,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


# -- echo server -----------------------------------------------------------------------------
@pytest.fixture
def echo_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """scripts/echo_server.py on a free loopback port, and its address."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "echo_server.py"), "--listen", "127.0.0.1:0"],
        cwd=tmp_path,
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        first = lines.get(timeout=STARTUP_TIMEOUT_SECONDS)
        assert first.startswith("echo server listening on 127.0.0.1:"), first
        address = first.split()[4]
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(STARTUP_TIMEOUT_SECONDS)


def test_echo_server_returns_raw_bytes_and_drains_on_sigterm(
    echo_server: tuple[subprocess.Popen[str], str],
) -> None:
    process, address = echo_server
    with grpc.insecure_channel(address) as channel:
        echo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/idservice.bench.Echo/Echo", None, None
        )
        for payload in (b"", b"\x00\xffraw bytes, no proto", os.urandom(4096)):
            assert echo(payload, timeout=10) == payload
        other: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/idservice.bench.Echo/Other", None, None
        )
        with pytest.raises(grpc.RpcError) as info:
            other(b"x", timeout=10)
        assert isinstance(info.value, grpc.Call)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    process.send_signal(signal.SIGTERM)
    assert process.wait(STARTUP_TIMEOUT_SECONDS) == 0


def test_echo_server_stops_by_itself_after_its_duration(tmp_path: Path) -> None:
    result = run_script("echo_server.py", "--duration", "0.2", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    assert result.stdout.startswith("echo server listening on 127.0.0.1:")


def test_echo_server_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    result = run_script(
        "echo_server.py", "--listen", "0.0.0.0:0", "--duration", "0.1", cwd=tmp_path
    )
    assert result.returncode == 2, explain(result)
    assert "loopback" in result.stderr


# -- benchmark -------------------------------------------------------------------------------
def test_benchmark_reports_each_path_as_a_ratio_to_its_floor(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    result = run_script(
        "benchmark.py",
        "--duration",
        "1",
        "--concurrency",
        "2",
        "--database-url",
        database_url,
        "--json",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, explain(result)
    report = read_json(out)

    assert report["passed"] is True
    assert report["failures"] == []
    assert report["internal_errors"] == 0
    assert report["machine"]["cpu_count"] == os.cpu_count()
    assert report["config"]["database"] == database_url.partition(":")[0].partition("+")[0]
    # The floor hashes with the configured parameters (the same ones the server was given).
    assert report["argon2"] == {"time_cost": 1, "memory_cost_kib": 1024, "parallelism": 1}
    assert report["floors"]["argon2"]["threads"] == os.cpu_count()
    assert report["floors"]["echo"]["threads"] == 2
    for floor in ("argon2", "echo"):
        assert report["floors"][floor]["ok"] > 0
        assert report["floors"][floor]["req_per_s"] > 0
    assert list(report["phases"]) == list(SERVICE_PHASES)
    expected_floor = {"PasswordLogin": "argon2", "SignUp": "argon2"}
    for name, phase in report["phases"].items():
        assert phase["floor"] == expected_floor.get(name, "echo")
        assert phase["ok"] > 0, name
        assert phase["errors"] == {}, name
        base = report["floors"][phase["floor"]]["req_per_s"]
        assert phase["ratio"] == pytest.approx(phase["req_per_s"] / base, rel=1e-3, abs=1e-4)
        assert phase["p50_ms"] <= phase["p95_ms"] <= phase["p99_ms"]
        if sys.platform == "linux":  # the server's CPU time comes from /proc
            assert phase["cpu_ms_per_op"] > 0
            base_cpu = report["floors"][phase["floor"]]["cpu_ms_per_op"]
            assert phase["cpu_ratio"] == pytest.approx(
                base_cpu / phase["cpu_ms_per_op"], rel=1e-3, abs=1e-4
            )

    for text in (*SERVICE_PHASES, "argon2 (floor)", "echo (floor)", "ratio", "cpu ratio"):
        assert text in result.stdout
    assert "INTERNAL/UNKNOWN: 0" in result.stdout
    assert "result: PASS" in result.stdout


# -- load test -------------------------------------------------------------------------------
def test_loadtest_mixed_traffic_refuses_repeated_people(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    result = run_script(
        "loadtest.py",
        "--spawn",
        "--database-url",
        database_url,
        "--duration",
        "1",
        "--concurrency",
        "3",
        "--duplicate-rate",
        "0.3",
        "--seed",
        "7",
        "--json",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, explain(result)
    report = read_json(out)

    assert report["passed"] is True
    assert report["internal_errors"] == 0
    assert report["server_error_lines"] == 0
    assert all(e["code"] not in {"INTERNAL", "UNKNOWN"} for e in report["errors"])
    # The first sign-up of the run is of a new person (nobody is registered yet to repeat).
    assert report["operations"]["signup"]["ok"] >= 1
    assert report["operations"]["verify"]["ok"] >= report["operations"]["signup"]["ok"]
    assert report["total"]["req_per_s"] > 0
    # A run that asks for duplicates exercises them at least once; each one is caught twice.
    duplicates = report["duplicates"]
    assert duplicates["attempted"] >= 1
    assert duplicates["flagged_by_verification"] == duplicates["attempted"]
    assert duplicates["refused"] == duplicates["attempted"]
    assert duplicates["accepted"] == 0
    refusals = [e for e in report["errors"] if e["operation"] == "signup_duplicate"]
    assert refusals == [
        {
            "operation": "signup_duplicate",
            "code": "ALREADY_EXISTS",
            "reason": "IDENTITY_ALREADY_REGISTERED",
            "count": duplicates["attempted"],
            "expected": True,
        }
    ]
    assert [e for e in report["errors"] if not e["expected"]] == []

    for text in ("errors by code and reason:", "p50 ms", "p95 ms", "p99 ms", "req/s"):
        assert text in result.stdout
    assert "INTERNAL/UNKNOWN: 0" in result.stdout
    assert "result: PASS" in result.stdout


# What the load test calls, by service: every one answers with a bug in the stand-in below.
LOADTEST_METHODS = {
    "idservice.v1.IdentityService": ("CompleteVerification",),
    "idservice.v1.AccountService": ("SignUp", "GetAccount"),
    "idservice.v1.AuthService": ("PasswordLogin", "RefreshSession", "IntrospectToken"),
}


def _buggy_answer(code: str) -> grpc.RpcMethodHandler[bytes, bytes]:
    """A raw-bytes handler that fails the way a buggy server does: INTERNAL, or an exception."""

    def answer(_request: bytes, context: grpc.ServicerContext) -> bytes:
        if code == "UNKNOWN":
            # grpc turns an exception that escapes a handler into UNKNOWN.
            raise RuntimeError("a bug")
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain="idservice.v1"))
        status = status_pb2.Status(code=code_pb2.INTERNAL, message="internal", details=[detail])
        context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("abort_with_status returned")

    return grpc.unary_unary_rpc_method_handler(answer)


@pytest.fixture(params=["INTERNAL", "UNKNOWN"])
def broken_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A loopback gRPC stand-in whose every answer is a bug; yields (address, code)."""
    code: str = request.param
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(
                service, {method: _buggy_answer(code) for method in methods}
            )
            for service, methods in LOADTEST_METHODS.items()
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", code
    finally:
        server.stop(0).wait()


def test_loadtest_fails_on_internal_and_unknown(
    broken_server: tuple[str, str], tmp_path: Path
) -> None:
    address, code = broken_server
    out = tmp_path / "load.json"
    result = run_script(
        "loadtest.py",
        "--target",
        address,
        "--duration",
        "1",
        "--concurrency",
        "2",
        "--json",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 1, explain(result)
    report = read_json(out)
    assert report["passed"] is False
    assert report["internal_errors"] > 0
    assert {e["code"] for e in report["errors"]} == {code}
    assert report["operations"]["verify"]["errors"] == report["internal_errors"]
    if code == "INTERNAL":
        assert {e["reason"] for e in report["errors"]} == {"INTERNAL"}
    assert "result: FAIL" in result.stdout
    assert "INTERNAL/UNKNOWN status(es)" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--target", "10.1.2.3:50051"), "loopback"),
        (("--spawn", "--database-url", "postgresql+psycopg://u@db.example.com/x"), "loopback"),
        (("--spawn", "--mix", "signup=0"), "positive weight"),
        (("--spawn", "--duplicate-rate", "1.5"), "duplicate-rate"),
    ],
)
def test_loadtest_refuses_bad_arguments_before_any_traffic(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    result = run_script("loadtest.py", *args, "--duration", "1", cwd=tmp_path)
    assert result.returncode == 2, explain(result)
    assert message in result.stderr


# -- bootstrap -------------------------------------------------------------------------------
# A one-module project with no dependencies: bootstrap.sh treats it exactly like this one.
MINIMAL_PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "stampcheck"
version = "{version}"
"""


def run_bootstrap(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(project / "scripts" / "bootstrap.sh"), *args],
        cwd=project,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        check=False,
    )


def test_bootstrap_skips_pip_while_pyproject_is_unchanged(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPTS / "bootstrap.sh", project / "scripts" / "bootstrap.sh")
    (project / "pyproject.toml").write_text(MINIMAL_PYPROJECT.format(version="1.0"))
    (project / "stampcheck").mkdir()
    (project / "stampcheck" / "__init__.py").write_text("")

    first = run_bootstrap(project)  # a fresh clone: creates .venv and installs
    assert first.returncode == 0, explain(first)
    venv_python = project / ".venv" / "bin" / "python"
    assert subprocess.run([venv_python, "-c", "import stampcheck"], check=False).returncode == 0

    # From here on the venv cannot run pip: any install attempt fails, loudly.
    (site_packages,) = (project / ".venv" / "lib").glob("python*/site-packages")
    for path in site_packages.glob("pip*"):
        shutil.rmtree(path)
    again = run_bootstrap(project)
    assert again.returncode == 0, explain(again)  # nothing changed: pip is not run

    # The development extras were never installed, so --dev does run pip.
    dev = run_bootstrap(project, "--dev")
    assert dev.returncode != 0 and "No module named pip" in dev.stderr, explain(dev)

    # A changed pyproject.toml installs again, and a failed install is retried next time.
    (project / "pyproject.toml").write_text(MINIMAL_PYPROJECT.format(version="1.1"))
    for _ in range(2):
        changed = run_bootstrap(project)
        assert changed.returncode != 0 and "No module named pip" in changed.stderr, explain(changed)
