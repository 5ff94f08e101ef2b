"""The Locust load test: one headless run's reports, and the rules that fail a request.

The rules (scripts/harness.py) are judged on real answers of a real server and on real gRPC
errors from loopback stand-ins; the run is `scripts/loadtest` itself, against a spawned server.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from idservice.bootstrap import App
from idservice.entrypoints.grpc.server import RunningServer
from scripts.harness import (
    DUPLICATE_REFUSAL,
    SERVER_ERROR_CHARS,
    SERVER_ERRORS_KEPT,
    Argon2Config,
    IdClient,
    ServerProcess,
    WrongAnswer,
    age_on,
    check_age_failure,
    duplicate_signup_failure,
    duplicate_verification_failure,
    error_failure,
    error_key,
    get_account_failure,
    introspection_failure,
    new_email,
    new_password,
    new_person,
    new_person_verification_failure,
    open_channel,
    refusal_label,
    require,
    service_env,
)

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
LOADTEST = REPO_ROOT / "scripts" / "loadtest"
LOCUSTFILE = REPO_ROOT / "scripts" / "locustfile.py"
SMALL_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
}
# A safety net for a hung run, far above a normal one; never a measured expectation.
RUN_TIMEOUT_SECONDS = 180
# Every task's rows: (type, name). Refusals that do not fail carry "<CODE> <REASON>" as type.
EXPECTED_ROWS = {
    ("gRPC", "CompleteVerification"),
    ("gRPC", "SignUp"),
    ("gRPC", "PasswordLogin"),
    ("gRPC", "RefreshSession"),
    ("gRPC", "IntrospectToken"),
    ("gRPC", "GetAccount"),
    ("gRPC", "CheckAge"),
    ("gRPC", "CompleteVerification (duplicate)"),
    ("ALREADY_EXISTS IDENTITY_ALREADY_REGISTERED", "SignUp (duplicate)"),
}


# How an overloaded server may answer (reported, never a failure).
OVERLOAD = ("RESOURCE_EXHAUSTED SERVER_BUSY", "DEADLINE_EXCEEDED")


def script_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDSERVICE_", "LOCUST_"))}
    env.update(SMALL_ARGON2)
    return env


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def report_data(html: Path) -> dict[str, Any]:
    """The data Locust's HTML report draws its tables and charts from."""
    text = html.read_text()
    marker = "window.templateArgs = "
    start = text.index(marker) + len(marker)
    data, _end = json.JSONDecoder().raw_decode(text[start:])
    assert isinstance(data, dict)
    return data


# -- one headless run ------------------------------------------------------------------------
def test_loadtest_runs_every_task_and_writes_csv_and_html(
    database_url: str, tmp_path: Path
) -> None:
    result = run(
        [
            str(LOADTEST),
            "--database-url",
            database_url,
            "--users",
            "4",
            "--run-time",
            "10s",
            "--csv",
            "load",
            "--html",
            "load.html",
            "--only-summary",
            "--",
            "--duplicate-rate",
            "0.3",
        ],
        tmp_path,
    )
    assert result.returncode == 0, explain(result)
    assert "error lines in the spawned server's log: 0" in result.stdout

    stats = read_rows(tmp_path / "load_stats.csv")
    rows = {(r["Type"], r["Name"]): r for r in stats if r["Name"] != "Aggregated"}
    assert set(rows) >= EXPECTED_ROWS, sorted(rows)
    # Nothing else, but what a busy machine may answer: refusals that do not fail a run.
    assert all(t.startswith(OVERLOAD) for t, _ in set(rows) - EXPECTED_ROWS), sorted(rows)
    for key, row in rows.items():
        assert int(row["Request Count"]) > 0, key
        assert int(row["Failure Count"]) == 0, key
    # Each repeated person is flagged by the verification, then refused by SignUp.
    flagged = int(rows[("gRPC", "CompleteVerification (duplicate)")]["Request Count"])
    refused = rows[("ALREADY_EXISTS IDENTITY_ALREADY_REGISTERED", "SignUp (duplicate)")]
    assert 1 <= int(refused["Request Count"]) <= flagged
    assert read_rows(tmp_path / "load_failures.csv") == []
    assert read_rows(tmp_path / "load_exceptions.csv") == []
    assert len(read_rows(tmp_path / "load_stats_history.csv")) > 0

    report = report_data(tmp_path / "load.html")
    assert report["failures_statistics"] == []
    assert report["exceptions_statistics"] == []
    named = {
        (s["method"], s["name"]) for s in report["requests_statistics"] if s["name"] != "Aggregated"
    }
    assert named == set(rows)
    # The charts: throughput, latency percentiles and users over time.
    assert report["history"]
    for point in report["history"]:
        for chart in ("current_rps", "response_time_percentile_0.95", "user_count"):
            assert chart in point
    assert any(point["current_rps"][1] > 0 for point in report["history"])


def test_loadtest_refuses_a_target_off_this_machine(tmp_path: Path) -> None:
    result = run([str(LOADTEST), "--target", "10.1.2.3:50051", "--run-time", "1s"], tmp_path)
    assert result.returncode == 2, explain(result)
    assert "loopback" in result.stderr
    # The locustfile refuses it too, when Locust is run directly.
    direct = run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "python"),
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            "10.1.2.3:50051",
            "--run-time",
            "1s",
        ],
        tmp_path,
    )
    assert direct.returncode == 2, explain(direct)
    assert "not a loopback address" in direct.stderr


@pytest.mark.parametrize(
    "host",
    [["--host", "127.0.0.1:1"], ["--host=127.0.0.1:1"], ["-H", "x"], ["--ho", "x"], ["--hos=x"]],
)
def test_loadtest_refuses_locusts_own_host_option(tmp_path: Path, host: list[str]) -> None:
    """Handed on to Locust, it would win over the server the script spawned or was given."""
    result = run([str(LOADTEST), "--run-time", "1s", *host], tmp_path)
    assert result.returncode == 2, explain(result)
    assert "--target" in result.stderr


# -- stand-ins that answer as a buggy or overloaded server does ------------------------------
def _abort_with(code: int, reason: str) -> grpc.RpcMethodHandler[bytes, bytes]:
    def answer(_request: bytes, context: grpc.ServicerContext) -> bytes:
        if reason == "raise":
            raise RuntimeError("a bug")  # grpc answers UNKNOWN for an escaped exception
        if reason == "slow":
            time.sleep(1.0)
            return b""
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="idservice.v1"))
        status = status_pb2.Status(code=code, message=reason, details=[detail])
        context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("abort_with_status returned")

    return grpc.unary_unary_rpc_method_handler(answer)


STAND_IN_METHODS = {
    "Internal": (code_pb2.INTERNAL, "INTERNAL"),
    "Raise": (code_pb2.UNKNOWN, "raise"),
    "Busy": (code_pb2.RESOURCE_EXHAUSTED, "SERVER_BUSY"),
    "Terms": (code_pb2.FAILED_PRECONDITION, "TERMS_VERSION_MISMATCH"),
    "Refused": (code_pb2.UNAUTHENTICATED, "TOKEN_INVALID"),
    "Slow": (code_pb2.OK, "slow"),
}
# The methods the load test calls: every one of them answers INTERNAL on the broken server.
LOADED_METHODS = {
    "idservice.v1.IdentityService": ("CompleteVerification", "CheckAge"),
    "idservice.v1.AccountService": ("SignUp", "GetAccount"),
    "idservice.v1.AuthService": ("PasswordLogin", "RefreshSession", "IntrospectToken"),
}


@pytest.fixture
def stand_in() -> Iterator[str]:
    """A loopback server: /test.StandIn/<method> answers as STAND_IN_METHODS says, and every
    method the load test calls answers INTERNAL."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = [
        grpc.method_handlers_generic_handler(
            "test.StandIn",
            {name: _abort_with(code, reason) for name, (code, reason) in STAND_IN_METHODS.items()},
        ),
        *(
            grpc.method_handlers_generic_handler(
                service, {m: _abort_with(code_pb2.INTERNAL, "INTERNAL") for m in methods}
            )
            for service, methods in LOADED_METHODS.items()
        ),
    ]
    server.add_generic_rpc_handlers(tuple(handlers))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait()


def stand_in_error(address: str, method: str, timeout: float = 10.0) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/test.StandIn/{method}", None, None
        )
        with pytest.raises(grpc.RpcError) as info:
            call(b"", timeout=timeout)
    return info.value


def test_internal_and_unknown_fail_a_request(stand_in: str) -> None:
    internal = stand_in_error(stand_in, "Internal")
    assert error_key(internal) == ("INTERNAL", "INTERNAL")
    assert error_failure(internal) == "INTERNAL INTERNAL: a server bug (contract §3)"
    unknown = stand_in_error(stand_in, "Raise")
    assert error_key(unknown) == ("UNKNOWN", "-")
    assert error_failure(unknown) is not None
    # A repeated person's SignUp that answers a bug is a failure too, not the expected refusal.
    assert duplicate_signup_failure(None, internal) is not None


def test_overload_refusals_are_reported_not_failed(stand_in: str) -> None:
    busy = stand_in_error(stand_in, "Busy")
    assert error_failure(busy) is None
    assert refusal_label(busy) == "RESOURCE_EXHAUSTED SERVER_BUSY"
    late = stand_in_error(stand_in, "Slow", timeout=0.05)
    assert error_failure(late) is None
    assert refusal_label(late) == "DEADLINE_EXCEEDED -"


def test_other_refusals_fail_a_request(stand_in: str) -> None:
    """Nothing in the load's mix should be refused but for overload: a misconfigured run, a
    live token refused, or a server gone fails the run instead of passing with a throughput
    made of refusals."""
    for method in ("Terms", "Refused"):
        failure = error_failure(stand_in_error(stand_in, method))
        assert failure is not None and "should never get" in failure
    with grpc.insecure_channel("127.0.0.1:1") as nowhere:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = nowhere.unary_unary(
            "/test.StandIn/Busy", None, None
        )
        with pytest.raises(grpc.RpcError) as gone:
            call(b"", timeout=5)
    assert error_key(gone.value)[0] == "UNAVAILABLE"
    assert error_failure(gone.value) is not None


def test_loadtest_exits_non_zero_when_requests_fail(stand_in: str, tmp_path: Path) -> None:
    result = run(
        [
            str(LOADTEST),
            "--target",
            stand_in,
            "--users",
            "2",
            "--run-time",
            "2s",
            "--csv",
            "broken",
            "--only-summary",
        ],
        tmp_path,
    )
    assert result.returncode == 1, explain(result)
    failures = read_rows(tmp_path / "broken_failures.csv")
    assert failures, explain(result)
    assert {row["Name"] for row in failures} == {"CompleteVerification"}
    assert all("INTERNAL INTERNAL" in row["Error"] for row in failures)


# -- wrong answers, judged on a real server's answers ----------------------------------------
@pytest.fixture
def id_client(channel: grpc.Channel, app: App) -> IdClient:
    return IdClient(channel, terms_version=app.settings.terms_version, timeout=10.0)


def test_duplicate_rules_on_real_answers(id_client: IdClient) -> None:
    person = new_person(random.Random(7))
    first = id_client.verify(person)
    # A new person is not a duplicate: run on this answer, the duplicate rule fails the request.
    assert new_person_verification_failure(first) is None
    assert duplicate_verification_failure(first) == (
        "a registered person's verification did not flag duplicate.exists"
    )
    signed = id_client.sign_up(first.verification_token, email=new_email(), password=new_password())

    again = id_client.verify(person)
    assert duplicate_verification_failure(again) is None
    assert new_person_verification_failure(again) is not None
    with pytest.raises(grpc.RpcError) as refused:
        id_client.sign_up(again.verification_token, email=new_email(), password=new_password())
    assert error_key(refused.value) == DUPLICATE_REFUSAL
    assert duplicate_signup_failure(None, refused.value) is None
    # Had SignUp accepted the repeated person, the request fails.
    assert duplicate_signup_failure(signed, None) == ("a registered person signed up a second time")


def test_answer_rules_on_real_answers(id_client: IdClient) -> None:
    people = [new_person(random.Random(seed)) for seed in (1, 2)]
    accounts = []
    for person in people:
        token = id_client.verify(person).verification_token
        accounts.append(id_client.sign_up(token, email=new_email(), password=new_password()))
    mine, other = accounts

    introspected = id_client.introspect(mine.session.access_token)
    assert introspection_failure(introspected, mine.account.id) is None
    assert introspection_failure(introspected, other.account.id) is not None

    fetched = id_client.get_account(mine.session.access_token)
    assert get_account_failure(fetched, mine.account.id) is None
    assert get_account_failure(fetched, other.account.id) == (
        "GetAccount answered with another account"
    )

    as_of = date(2026, 3, 1)
    checked = id_client.check_age(mine.session.access_token, as_of=as_of)
    birth = people[0].birth_date
    assert check_age_failure(checked, birth, as_of) is None
    b = date.fromisoformat(birth)
    five_years_older = date(b.year - 5, b.month, min(b.day, 28)).isoformat()
    assert check_age_failure(checked, five_years_older, as_of) is not None

    # Once the session is over, its access token introspects inactive: a failure for the rule.
    id_client.logout(mine.session.refresh_token)
    ended = id_client.introspect(mine.session.access_token)
    assert introspection_failure(ended, mine.account.id) == (
        "a fresh access token introspected inactive"
    )


def test_register_opens_an_account_that_keeps_its_rotated_tokens(id_client: IdClient) -> None:
    person = new_person(random.Random(11))
    creds = id_client.register(person)
    assert creds.person == person
    assert creds.birth_date == person.birth_date
    first_refresh = creds.refresh_token
    creds.take(id_client.refresh(creds.refresh_token).session)
    assert creds.refresh_token != first_refresh
    require(introspection_failure(id_client.introspect(creds.access_token), creds.account_id))
    with pytest.raises(WrongAnswer, match="GetAccount answered with another account"):
        require(get_account_failure(id_client.get_account(creds.access_token), "someone else"))

    # With a verification token in hand, register signs up without verifying again.
    other = new_person(random.Random(12))
    token = id_client.verify(other).verification_token
    assert id_client.register(other, token).account_id != creds.account_id


@pytest.mark.parametrize("own_connection", [False, True])
def test_open_channel_connects_or_says_it_cannot(
    server: RunningServer, app: App, own_connection: bool
) -> None:
    address = f"127.0.0.1:{server.port}"
    channel = open_channel(address, 10.0, own_connection=own_connection)
    try:
        client = IdClient(channel, terms_version=app.settings.terms_version, timeout=10.0)
        assert client.verify(new_person(random.Random(13))).verification_token
    finally:
        channel.close()
    with pytest.raises(RuntimeError, match="cannot connect"):
        open_channel("127.0.0.1:1", 0.5, own_connection=own_connection)


def test_service_env_sets_processes_only_when_asked(tmp_path: Path) -> None:
    argon2 = Argon2Config(1, 1024, 1)
    assert "IDSERVICE_PROCESSES" not in service_env("sqlite://", tmp_path, argon2)
    env = service_env("sqlite://", tmp_path, argon2, "2")
    assert env["IDSERVICE_PROCESSES"] == "2"
    assert env["IDSERVICE_ARGON2_MEMORY_COST"] == "1024"


def test_server_process_keeps_its_first_error_lines(tmp_path: Path) -> None:
    script = (
        "import time\n"
        "for i in range(5): print(f'{i} ERROR ' + 'x' * 1000, flush=True)\n"
        "print('listening on 127.0.0.1:4321', flush=True)\n"
        "time.sleep(30)\n"
    )
    server = ServerProcess(
        [sys.executable, "-c", script],
        ready=re.compile(r"listening on (\S+):(\d+)"),
        env=dict(os.environ),
        cwd=tmp_path,
    )
    try:
        assert server.wait_ready(30.0) == "127.0.0.1:4321"
        assert server.pid == server.process.pid
    finally:
        server.stop()
    assert server.error_lines == 5
    assert len(server.first_errors) == SERVER_ERRORS_KEPT
    assert [line[:8] for line in server.first_errors] == ["0 ERROR ", "1 ERROR ", "2 ERROR "]
    assert all(len(line) == SERVER_ERROR_CHARS for line in server.first_errors)


def test_a_server_that_exits_at_start_is_said_to_have_exited(tmp_path: Path) -> None:
    script = "import sys\nprint('configuration error: IDSERVICE_X: no', flush=True)\nsys.exit(2)\n"
    server = ServerProcess(
        [sys.executable, "-c", script],
        ready=re.compile(r"listening on (\S+):(\d+)"),
        env=dict(os.environ),
        cwd=tmp_path,
    )
    with pytest.raises(RuntimeError) as info:
        server.wait_ready(30.0)
    assert str(info.value).startswith("server exited with code 2 before it started")
    assert "IDSERVICE_X: no" in str(info.value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_server_process_ends_when_the_script_that_started_it_is_killed(tmp_path: Path) -> None:
    parent = (
        "import os, re, sys, time\n"
        "from scripts.harness import ServerProcess\n"
        "script = \"print('listening on 127.0.0.1:4321', flush=True)\\n\"\n"
        "script += 'import time; time.sleep(60)'\n"
        "server = ServerProcess([sys.executable, '-c', script],"
        " ready=re.compile(r'listening on (\\S+):(\\d+)'), env=dict(os.environ), cwd='.')\n"
        "server.wait_ready(30.0)\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    script_process = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=env
    )
    try:
        assert script_process.stdout is not None
        child = int(script_process.stdout.readline())
        os.kill(script_process.pid, 9)  # SIGKILL: no handler, no cleanup of its own
        script_process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
            status = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[-1].split()[0]
            if status == "Z":  # ended, waiting for init to reap it
                break
            time.sleep(0.05)
        else:
            assert not Path(f"/proc/{child}").exists(), "the server outlived its script"
    finally:
        script_process.kill()


def test_calls_in_flight_do_not_wait_for_the_hubs_threads(tmp_path: Path) -> None:
    """grpc's gevent mode waits for each answer on a thread of gevent's hub pool (10 by
    default): the locustfile gives it enough that 10 users in slow calls do not make every
    other call wait, which Locust would count as the server's latency."""
    probe = (
        "import gevent, scripts.locustfile as f\n"
        "print(gevent.get_hub().threadpool.maxsize, f.HUB_THREADS)\n"
    )
    env = {**script_env(), "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    size, wanted = map(int, out.stdout.split())
    assert size == wanted >= 1000


def test_sigterm_stops_locust_and_the_server_and_removes_the_directory(tmp_path: Path) -> None:
    """A CI timeout or `kill` ends the whole run: no Locust left calling, no server, no
    temporary directory with a database and keys, and an exit code that says it was cut."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**script_env(), "TMPDIR": str(temporary)}
    process = subprocess.Popen(
        [
            str(LOADTEST),
            *("--run-time", "60s", "--users", "2", "--only-summary"),
            *("--csv", "cut", "--html", "cut.html"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = ""
        while "spawned idservice on" not in seen:
            line = process.stdout.readline()
            assert line, seen
            seen += line
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while time.monotonic() < deadline:
            children = psutil.Process(process.pid).children(recursive=True)
            if any("locust" in " ".join(c.cmdline()) for c in children):
                break
            time.sleep(0.1)
        assert any("locust" in " ".join(c.cmdline()) for c in children), seen
        time.sleep(1.0)  # Locust's users at work
        process.terminate()
        rest, _ = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    finally:
        process.kill()
    assert process.returncode == 143, seen + rest
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], alive
    assert list(temporary.iterdir()) == []
    # Locust wrote its reports for the part that ran, the HTML one too.
    assert (tmp_path / "cut.html").stat().st_size > 0
    assert (tmp_path / "cut_stats.csv").stat().st_size > 0


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        ("2012-02-29", "2026-02-28", 13),
        ("2012-02-29", "2026-03-01", 14),
        ("2012-02-29", "2028-02-29", 16),
        ("2000-05-10", "2019-05-09", 18),
        ("2000-05-10", "2019-05-10", 19),
    ],
)
def test_the_load_tests_own_age_count_follows_the_korean_rules(
    birth: str, day: str, age: int
) -> None:
    assert age_on(date.fromisoformat(birth), date.fromisoformat(day)) == age
