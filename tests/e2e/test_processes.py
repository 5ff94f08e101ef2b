"""`idservice serve` with IDSERVICE_PROCESSES=2: a supervisor and two server processes sharing
one port (`SO_REUSEPORT`), on SQLite and PostgreSQL.

Which server process served a call is read from the kernel: each holds the accepted TCP
connections of the channels it serves (psutil lists a process's sockets).
"""

from __future__ import annotations

import collections
import json
import re
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idservice.adapters.crypto import KeyRing
from idservice.entrypoints.heartbeat import HUNG_AFTER_SECONDS
from idservice.v1 import account_pb2, auth_pb2
from tests.fakes.webhook import WebhookStandIn
from tests.support.client import Client, RpcFailure, decode, new_person
from tests.support.json_logs import logged
from tests.support.server_process import ServerProcess, free_loopback_port, run_idservice

pytestmark = pytest.mark.slow

PROCESSES = 2
FAST_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
}
# One hash with 256 MiB and two passes: long enough for SIGTERM to land while a SignUp hashes.
SLOW_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "2",
    "IDSERVICE_ARGON2_MEMORY_COST": str(256 * 1024),
    "IDSERVICE_ARGON2_PARALLELISM": "1",
    "IDSERVICE_SHUTDOWN_GRACE": "120s",
}
HASH_STARTED_RSS_GROWTH = 64 * 1024 * 1024
# Separate channels (separate TCP connections) so the kernel spreads them over the processes.
CHANNELS = 16
SIGNUPS = 24
WAIT_SECONDS = 60.0
RPC_TIMEOUT = 60.0


# ----------------------------------------------------------------- helpers


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def _environment(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **FAST_ARGON2,
        "IDSERVICE_PROCESSES": str(PROCESSES),
        "IDSERVICE_DATABASE_URL": database_url,
        "IDSERVICE_DATA_KEYS": KeyRing.generate("k1").serialize(),
        **extra,
    }


def _server_processes(supervisor: ServerProcess) -> list[psutil.Process]:
    return psutil.Process(supervisor.pid).children()


def _wait_for_server_processes(supervisor: ServerProcess) -> list[psutil.Process]:
    _wait_for(
        lambda: len(_server_processes(supervisor)) == PROCESSES, f"{PROCESSES} server processes"
    )
    return _server_processes(supervisor)


def _channel(supervisor: ServerProcess, stack: ExitStack) -> grpc.Channel:
    """A channel with a connection of its own (grpc shares them between channels by default)."""
    channel = grpc.insecure_channel(
        supervisor.address, options=[("grpc.use_local_subchannel_pool", 1)]
    )
    stack.callback(channel.close)
    return channel


def _served_connections(process: psutil.Process, port: int) -> int:
    """Accepted TCP connections of `process` on the service's port."""
    return sum(
        1
        for connection in process.net_connections(kind="tcp")
        if connection.laddr and connection.laddr.port == port and connection.raddr
    )


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode("utf-8"))


def _rpc_count(exposition: str, method: str, code: str) -> float:
    """The sum of `idservice_rpcs_total` samples of one method and code."""
    total = 0.0
    for line in exposition.splitlines():
        if not line.startswith("idservice_rpcs_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("method") == method and labels.get("code") == code:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _verify_and_sign_up(client: Client, index: int) -> account_pb2.SignUpResponse | RpcFailure:
    try:
        person = new_person()
        token = client.verify(person).verification_token
        request = client.signup_request(
            person, email=f"p{index}-{uuid.uuid4().hex[:8]}@example.com", verification_token=token
        )
        response: account_pb2.SignUpResponse = client.accounts.SignUp(request, timeout=RPC_TIMEOUT)
    except grpc.RpcError as error:
        return decode(error)
    return response


def _refresh(client: Client, refresh_token: str) -> auth_pb2.RefreshSessionResponse | RpcFailure:
    try:
        response: auth_pb2.RefreshSessionResponse = client.auth.RefreshSession(
            auth_pb2.RefreshSessionRequest(refresh_token=refresh_token), timeout=RPC_TIMEOUT
        )
    except grpc.RpcError as error:
        return decode(error)
    return response


def _tally(outcomes: list[object]) -> collections.Counter[str]:
    return collections.Counter(
        f"{o.code.name} {o.reason}" if isinstance(o, RpcFailure) else "OK" for o in outcomes
    )


def _purging_pids(logs: str) -> list[int]:
    """The pids that started the retention jobs, in order (worker.purge_periodically)."""
    return [
        int(pid) for pid in re.findall(r"running the retention jobs every \d+s \(pid (\d+)\)", logs)
    ]


def _health(port: int, service: str = "") -> int:
    """Health/Check on the plaintext health-only listener, on a connection of its own."""
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=RPC_TIMEOUT).status)


def _assert_clean(logs: str) -> None:
    assert "database is locked" not in logs, logs
    assert "unhandled" not in logs, logs
    assert "Traceback" not in logs, logs


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as exits:
        yield exits


@pytest.fixture
def metrics_port() -> int:
    return free_loopback_port()


@pytest.fixture
def health_port() -> int:
    return free_loopback_port()


@pytest.fixture
def supervisor(
    database_url: str, workdir: Path, metrics_port: int, health_port: int, tmp_path: Path
) -> Iterator[ServerProcess]:
    env = _environment(
        database_url,
        IDSERVICE_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
        IDSERVICE_HEALTH_LISTEN=f"127.0.0.1:{health_port}",
    )
    with ServerProcess(env, workdir, log_dir=tmp_path) as process:
        yield process


# ----------------------------------------------------------------- tests


def test_both_processes_serve_concurrent_signups_and_refreshes_and_metrics_add_up(
    supervisor: ServerProcess, metrics_port: int, health_port: int, stack: ExitStack
) -> None:
    children = _wait_for_server_processes(supervisor)
    _wait_for(lambda: supervisor.logs().count(") serving") == PROCESSES, "both processes to serve")
    # A server process's own lines reach the log within 50 ms (logs.LineWriter), maybe after
    # the supervisor's "serving".
    _wait_for(lambda: bool(_purging_pids(supervisor.logs())), "the retention jobs to start")
    logs = supervisor.logs()
    started = set(re.findall(r"started server process \d \(pid (\d+)\)", logs))
    assert started == {str(child.pid) for child in children}, logs
    # One process of the instance runs the retention jobs: server process 1.
    first = re.search(r"started server process 1 \(pid (\d+)\)", logs)
    assert first, logs
    assert _purging_pids(logs) == [int(first.group(1))], logs
    # The plaintext health-only listener answers from every process (connections spread).
    serving = health_pb2.HealthCheckResponse.SERVING
    for _ in range(CHANNELS):
        assert _health(health_port) == serving
        assert _health(health_port, "liveness") == serving
    clients = [Client(_channel(supervisor, stack)) for _ in range(CHANNELS)]

    with ThreadPoolExecutor(max_workers=SIGNUPS) as pool:
        signups = list(
            pool.map(lambda i: _verify_and_sign_up(clients[i % CHANNELS], i), range(SIGNUPS))
        )
    assert _tally(list(signups)) == {"OK": SIGNUPS}, _tally(list(signups))

    # Each channel is one connection, accepted by one process: both have some.
    served = {child.pid: _served_connections(child, supervisor.port) for child in children}
    assert all(count > 0 for count in served.values()), served
    assert sum(served.values()) >= CHANNELS, served

    tokens = [s.session.refresh_token for s in signups if isinstance(s, account_pb2.SignUpResponse)]
    with ThreadPoolExecutor(max_workers=SIGNUPS) as pool:
        refreshed = list(
            pool.map(lambda i: _refresh(clients[(i + 1) % CHANNELS], tokens[i]), range(len(tokens)))
        )
    assert _tally(list(refreshed)) == {"OK": SIGNUPS}, _tally(list(refreshed))

    # The supervisor's /metrics sums both processes' counts.
    exposition = _metrics(metrics_port)
    assert _rpc_count(exposition, "SignUp", "OK") == SIGNUPS, exposition
    assert _rpc_count(exposition, "RefreshSession", "OK") == SIGNUPS, exposition
    assert _rpc_count(exposition, "CompleteVerification", "OK") == SIGNUPS, exposition

    _assert_clean(supervisor.logs())
    assert supervisor.terminate() == 0, supervisor.logs()
    for child in children:
        assert not child.is_running(), child


def test_a_killed_process_is_started_again_and_the_service_keeps_answering(
    supervisor: ServerProcess, stack: ExitStack
) -> None:
    children = _wait_for_server_processes(supervisor)
    _wait_for(lambda: len(_purging_pids(supervisor.logs())) == 1, "the retention jobs to start")
    # Kill the one that runs the retention jobs: its replacement takes them up again.
    (purging,) = _purging_pids(supervisor.logs())
    (first,) = [child for child in children if child.pid == purging]
    (second,) = [child for child in children if child.pid != purging]
    first.kill()
    first.wait(WAIT_SECONDS)
    # Fresh channels meanwhile land on the process still alive.
    for _ in range(4):
        assert Client(_channel(supervisor, stack)).verify(new_person()).verification_token
    _wait_for(
        lambda: "exited with signal SIGKILL; starting it again" in supervisor.logs(),
        "the restart to be logged",
    )
    _wait_for(
        lambda: (
            {p.pid for p in _server_processes(supervisor)} - {second.pid} - {first.pid} != set()
        ),
        "a new server process",
    )
    (replacement,) = [p for p in _server_processes(supervisor) if p.pid != second.pid]
    _wait_for(
        lambda: f"(pid {replacement.pid}) serving" in supervisor.logs(),
        "the new server process to serve",
    )
    clients = [Client(_channel(supervisor, stack)) for _ in range(CHANNELS)]
    outcomes = [_verify_and_sign_up(client, i) for i, client in enumerate(clients)]
    assert _tally(list(outcomes)) == {"OK": CHANNELS}
    assert _served_connections(replacement, supervisor.port) > 0
    _wait_for(lambda: len(_purging_pids(supervisor.logs())) >= 2, "the replacement's purge line")
    assert _purging_pids(supervisor.logs()) == [first.pid, replacement.pid]
    _assert_clean(supervisor.logs())
    assert supervisor.terminate() == 0, supervisor.logs()


def test_an_outbox_event_is_delivered_once(
    database_url: str, workdir: Path, tmp_path: Path
) -> None:
    with WebhookStandIn() as hook, ExitStack() as stack:
        env = _environment(
            database_url,
            IDSERVICE_NOTIFY_WEBHOOK_URL=hook.url,
            IDSERVICE_NOTIFY_WEBHOOK_SECRET="s" * 32,
        )
        supervisor = stack.enter_context(ServerProcess(env, workdir, log_dir=tmp_path))
        _wait_for_server_processes(supervisor)
        clients = [Client(_channel(supervisor, stack)) for _ in range(CHANNELS)]
        with ThreadPoolExecutor(max_workers=CHANNELS) as pool:
            outcomes = list(pool.map(lambda i: _verify_and_sign_up(clients[i], i), range(CHANNELS)))
        assert _tally(list(outcomes)) == {"OK": CHANNELS}
        hook.wait_for(CHANNELS)
        # Both processes dispatch; give a second delivery every chance to happen.
        time.sleep(3.0)
        ids = [json.loads(delivery.body)["event_id"] for delivery in hook.received]
        assert len(ids) == CHANNELS, collections.Counter(ids)
        assert len(set(ids)) == CHANNELS, collections.Counter(ids)
        assert supervisor.terminate() == 0, supervisor.logs()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="watches memory in /proc")
def test_sigterm_drains_the_call_in_flight_and_leaves_no_process(
    workdir: Path, tmp_path: Path, metrics_port: int
) -> None:
    env = {
        **SLOW_ARGON2,
        "IDSERVICE_PROCESSES": str(PROCESSES),
        "IDSERVICE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
    }
    with ServerProcess(env, workdir, log_dir=tmp_path) as supervisor:
        children = _wait_for_server_processes(supervisor)
        metrics_dir = Path(children[0].environ()["PROMETHEUS_MULTIPROC_DIR"])
        assert metrics_dir.is_dir()
        client = Client(supervisor.channel())
        person = new_person()
        token = client.verify(person).verification_token
        baseline = sum(child.memory_info().rss for child in children)
        signup = client.accounts.SignUp.future(
            client.signup_request(person, email="drain@example.com", verification_token=token),
            timeout=WAIT_SECONDS * 2,
        )
        _wait_for(
            lambda: (
                signup.done()
                or sum(child.memory_info().rss for child in children)
                > baseline + HASH_STARTED_RSS_GROWTH
            ),
            "the SignUp's password hash to start",
        )
        assert not signup.done(), f"SignUp finished before SIGTERM: {signup.exception()}"
        supervisor.send_signal(signal.SIGTERM)
        response = signup.result(timeout=WAIT_SECONDS * 2)
        assert response.account.email == "drain@example.com"
        assert supervisor.wait(WAIT_SECONDS * 2) == 0, supervisor.logs()
        logs = supervisor.logs()
        assert "received SIGTERM: draining" in logs
        assert logs.count(" stopped") >= PROCESSES, logs
        assert logged(logs, "stopped", level="info", logger="idservice"), logs
        for child in children:
            assert not child.is_running(), child
        assert not metrics_dir.exists()


def test_a_hung_process_is_killed_and_started_again(
    workdir: Path, tmp_path: Path, stack: ExitStack
) -> None:
    # A stopped process sends no heartbeat; behind the shared port it would keep its share of
    # new connections and never answer them.
    env = {**FAST_ARGON2, "IDSERVICE_PROCESSES": str(PROCESSES)}
    with ServerProcess(env, workdir, log_dir=tmp_path) as supervisor:
        children = _wait_for_server_processes(supervisor)
        _wait_for(lambda: supervisor.logs().count(") serving") == PROCESSES, "both to serve")
        hung, other = children
        hung.suspend()  # SIGSTOP
        _wait_for(
            lambda: f"(pid {hung.pid}) sent no heartbeat for" in supervisor.logs(),
            "the supervisor to see the silence",
            timeout=HUNG_AFTER_SECONDS + WAIT_SECONDS,
        )
        _wait_for(
            lambda: (
                f"(pid {hung.pid}) exited with signal SIGKILL; starting it again"
                in supervisor.logs()
            ),
            "the hung process to be killed",
        )
        _wait_for(
            lambda: (
                len({p.pid for p in _server_processes(supervisor)} - {hung.pid, other.pid}) == 1
            ),
            "a new server process",
        )
        (replacement,) = [p for p in _server_processes(supervisor) if p.pid != other.pid]
        _wait_for(
            lambda: f"(pid {replacement.pid}) serving" in supervisor.logs(),
            "the new server process to serve",
        )
        assert other.is_running()
        clients = [Client(_channel(supervisor, stack)) for _ in range(CHANNELS)]
        for client in clients:
            assert client.verify(new_person()).verification_token
        assert _served_connections(replacement, supervisor.port) > 0
        _assert_clean(supervisor.logs())
        assert supervisor.terminate() == 0, supervisor.logs()


def test_a_killed_supervisor_takes_its_processes_with_it(workdir: Path, tmp_path: Path) -> None:
    env = {**FAST_ARGON2, "IDSERVICE_PROCESSES": str(PROCESSES)}
    with ServerProcess(env, workdir, log_dir=tmp_path) as supervisor:
        children = _wait_for_server_processes(supervisor)
        supervisor.kill()
        _gone, alive = psutil.wait_procs(children, timeout=WAIT_SECONDS)
        assert not alive, alive


# Loaded by every Python process of the test's `serve` (through PYTHONPATH): a server process
# (started with --server-process) fails at once, as one whose machine lacks something would.
# The supervisor checks what it can before starting any (configuration, keys, TLS files), so
# this stands for what only a server process finds out.
_FAILING_SERVER_PROCESS = """
import os, sys
if "--server-process" in sys.argv:
    sys.stderr.write("idservice: configuration error: IDSERVICE_TEST: refused at start-up\\n")
    sys.stderr.flush()
    os._exit(2)
"""


def test_processes_failing_at_start_up_make_the_supervisor_give_up(workdir: Path) -> None:
    # The supervisor starts; every server process refuses to.
    site = workdir.parent / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_FAILING_SERVER_PROCESS, encoding="utf-8")
    env = {
        **FAST_ARGON2,
        "IDSERVICE_PROCESSES": str(PROCESSES),
        "IDSERVICE_LISTEN": f"127.0.0.1:{free_loopback_port()}",
        "PYTHONPATH": str(site),
    }
    result = run_idservice("serve", env=env, cwd=workdir, timeout=WAIT_SECONDS * 2)
    assert result.returncode == 2, result.stderr
    assert "IDSERVICE_TEST: refused at start-up" in result.stderr
    assert "giving up" in result.stderr


def test_start_up_warnings_are_said_once_and_each_process_names_itself(workdir: Path) -> None:
    env = {
        **FAST_ARGON2,
        "IDSERVICE_PROCESSES": str(PROCESSES),
        "IDSERVICE_LOCKOUT_THRESHHOLD": "3",
    }
    with ServerProcess(env, workdir, log_dir=workdir.parent) as server:
        assert server.terminate() == 0
        text = server.stderr_path.read_text()
    warnings = [line for line in text.splitlines() if "IDSERVICE_LOCKOUT_THRESHHOLD" in line]
    assert len(warnings) == 1, text
    # The processes share one stderr: each server process's lines carry its number.
    stopped = {
        line.get("process")
        for line in map(json.loads, text.splitlines())
        if line["event"].startswith("server process ") and line["event"].endswith(" stopped")
    }
    assert stopped == set(range(1, PROCESSES + 1)), text


def test_processes_1_is_one_process_as_before(workdir: Path) -> None:
    env = {**FAST_ARGON2, "IDSERVICE_PROCESSES": "1"}
    with ServerProcess(env, workdir, log_dir=workdir.parent) as server:
        assert _server_processes(server) == []
        client = Client(server.channel())
        verified = client.verify(new_person())
        assert verified.verification_token
        assert server.terminate() == 0
