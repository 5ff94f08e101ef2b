"""Benchmark idservice against floors measured in the same run, and judge issue 11's targets.

One run measures, one phase after another (each `--duration` seconds, closed loop):

1. floor: raw Argon2id hashes/s with the service's configured parameters (argon2-cffi
   `PasswordHasher(t, m, p)` on `os.cpu_count()` threads, in this process);
2. floor: bare gRPC echo calls/s (scripts/echo_server.py: one process, 64-thread pool, the
   floor issue 11 defines) with `--concurrency` calls in flight; the echo server stays up
   (idle) for the rest of the run;
3. against a real `idservice serve` subprocess (`IDSERVICE_PROCESSES=auto` unless
   `--processes`; SQLite in a temporary directory, `--database postgres` for a throwaway
   PostgreSQL cluster, or `--database-url`): CheckAge, IntrospectToken, GetAccount and
   RefreshSession, PasswordLogin and the sign-up flow (CompleteVerification + SignUp, counted
   as one) with `--concurrency` calls in flight; a light stream of cheap calls alone and then
   beside a full password load; and PasswordLogin with `--memory-in-flight` calls in flight
   while the server process tree's memory is sampled from /proc.

The client runs in `--client-processes` processes, each with its own channels (so the client's
GIL is not the limit and the server's processes all get connections); its CPU is reported.
Each judged phase is measured right after a fresh measurement of its floor, and its ratio is
to that adjacent floor: a shared machine's speed drifts within a run (by a quarter or more on
the 2-CPU VM of docs/performance.md), and a floor measured a minute earlier would flatter or
spoil the phase. The floors of the run's start are reported too. The ratios, not the raw
numbers, are comparable between machines. Traffic stays on 127.0.0.1 and the run stops by
itself. Exit 1 on any INTERNAL/UNKNOWN status, a wrong answer or a phase without one success
(and, with `--require-targets`, on a target not met).

    .venv/bin/python scripts/benchmark.py --duration 5 --json bench.json
    .venv/bin/python scripts/benchmark.py --database postgres --processes 2
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in {None, ""}:
    # Run as a file (python scripts/benchmark.py): make the repository root importable so the
    # shared code resolves as scripts.harness and scripts.echo_server, the names mypy and the
    # tests use.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argon2
import grpc

from idservice.domain.age import seoul_today
from scripts.echo_server import ECHO_METHOD, READY_PREFIX
from scripts.harness import (
    FAILURE_CODES,
    Argon2Config,
    Credentials,
    IdClient,
    ServerProcess,
    WrongAnswer,
    check_age_failure,
    check_database_url,
    database_hosts,
    error_key,
    get_account_failure,
    introspection_failure,
    new_person,
    open_channel,
    require,
    spawned_service,
)

ECHO_SERVER = Path(__file__).resolve().with_name("echo_server.py")
_ECHO_READY = re.compile(re.escape(READY_PREFIX) + r"(\S+):(\d+)")
# Roughly the size of a request carrying an access token (a JWT of a few hundred bytes).
ECHO_PAYLOAD_BYTES = 512
ARGON2_FLOOR = "argon2"
ECHO_FLOOR = "echo"
# Issue 11: the cheap calls are judged with at least this many calls in flight.
TARGET_IN_FLIGHT = 16
# Phase → (floor, issue 11's least ratio to it).
SERVICE_PHASES: tuple[tuple[str, str, float], ...] = (
    ("CheckAge", ECHO_FLOOR, 0.5),
    ("IntrospectToken", ECHO_FLOOR, 0.5),
    ("GetAccount", ECHO_FLOOR, 0.5),
    ("RefreshSession", ECHO_FLOOR, 0.25),
    ("PasswordLogin", ARGON2_FLOOR, 0.9),
    ("SignUp", ARGON2_FLOOR, 0.8),
)
# A password path's ratio to the Argon2 floor above this is no measurement: a call that hashes
# cannot outrun bare hashing on the same CPUs, so the floor was starved by other work.
PLAUSIBLE_ARGON2_RATIO = 1.05
# Issue 11: the cheap calls' p99 beside a password load, at most this multiple of their p99 alone.
LOADED_P99_FACTOR = 3.0
# Issue 11: peak memory with this many password calls in flight ≤ CPUs × memory_cost + headroom.
MEMORY_IN_FLIGHT = 256
MEMORY_HEADROOM_MIB = 300
MEMORY_SAMPLE_SECONDS = 0.05
# The light stream of cheap calls cycles through these (account-bound, no Argon2).
LIGHT_KINDS = ("introspect", "get_account", "check_age")
BENCHMARK_PASSWORD = "benchmark password, not a secret"
# Recorded like a status for answers that arrive but are wrong (counted as failures).
WRONG_ANSWER = "WRONG_ANSWER"
# A refused call (SERVER_BUSY and the like) waits this long before its thread tries again.
BUSY_BACKOFF_SECONDS = 0.05
# Each client process spreads its threads over this many connections, so a server with
# SO_REUSEPORT processes gets connections on each of them (the kernel places connections).
CONNECTIONS_PER_CLIENT_PROCESS = 8
# How long before a phase's start its specification goes to the client processes.
PHASE_LEAD_SECONDS = 1.0


# -- databases and server processes ----------------------------------------------------------
def database_kind(url: str | None) -> str:
    return "sqlite" if url is None or url.startswith("sqlite") else "postgresql"


def connection_kind(kind: str, url: str | None, over: str) -> str:
    """How the server reaches its database, as the report names it: "file" (SQLite), "unix
    socket" or "tcp" (any host or hostaddr that is not a socket's directory)."""
    if kind == "sqlite":
        return "file"
    if url is None:
        return "unix socket" if over == "socket" else "tcp"
    hosts = database_hosts(url)
    return "unix socket" if all(h == "" or h.startswith("/") for h in hosts) else "tcp"


def server_processes(text: str) -> str:
    """`auto` or a positive number, passed to the server as IDSERVICE_PROCESSES."""
    value = text.strip().lower()
    if value != "auto" and not (value.isdigit() and int(value) >= 1):
        raise argparse.ArgumentTypeError("expected auto or a positive number")
    return value


# -- errors and statistics -------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(latencies: Sequence[float], elapsed: float) -> dict[str, float | int | None]:
    """Count, rate and p50/p95/p99 (milliseconds) of successful calls over `elapsed` seconds."""
    ordered = sorted(latencies)

    def ms(q: float) -> float | None:
        value = percentile(ordered, q)
        return None if value is None else round(value * 1000.0, 3)

    return {
        "ok": len(ordered),
        "req_per_s": round(len(ordered) / elapsed, 3) if elapsed > 0 else 0.0,
        "p50_ms": ms(50),
        "p95_ms": ms(95),
        "p99_ms": ms(99),
    }


def fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


# -- this machine and its processes (/proc) --------------------------------------------------
def load_averages() -> list[float] | None:
    """The 1, 5 and 15-minute load averages: other work on the machine skews every figure."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def machine_facts() -> dict[str, Any]:
    model, ram_mib = platform.processor() or platform.machine(), None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_mib = round(int(line.split()[1]) / 1024)
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "ram_mib": ram_mib,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
    }


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it are space separated.
    return text.rpartition(")")[2].split()


def process_tree(root: int) -> list[int]:
    """`root` and every live descendant (a pre-forking server's supervisor and children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int) -> float | None:
    """User + system CPU of the tree: live processes, plus the children `root` has reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, seen = 0, False
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        seen = True
        total += int(fields[11]) + int(fields[12])
        if pid == root:
            total += int(fields[13]) + int(fields[14])
    return total / ticks if seen else None


def process_memory_kib(pid: int) -> tuple[int, str] | None:
    """(KiB, measure) of one process: PSS from smaps_rollup, else RSS from status."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]), "pss"
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]), "rss"
    return None


def tree_memory(root: int) -> tuple[int, int, str]:
    """(KiB, processes, measure) of the whole tree; "rss" if any process lacked PSS."""
    total, count, measure = 0, 0, "pss"
    for pid in process_tree(root):
        found = process_memory_kib(pid)
        if found is None:
            continue
        total += found[0]
        count += 1
        if found[1] != "pss":
            measure = "rss"
    return total, count, measure


class MemorySampler:
    """Samples the tree's memory every MEMORY_SAMPLE_SECONDS while active; keeps the peak."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_kib, self.processes, self.measure = 0, 0, "pss"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            kib, count, measure = tree_memory(self.root)
            if kib > self.peak_kib:
                self.peak_kib, self.processes, self.measure = kib, count, measure
            if self._stop.wait(MEMORY_SAMPLE_SECONDS):
                return

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)


# -- client processes ------------------------------------------------------------------------
@dataclass(frozen=True)
class Stream:
    """`len(accounts)` threads repeating one kind of call; an account (or None) per thread."""

    name: str
    kind: str
    accounts: tuple[Credentials | None, ...]


@dataclass(frozen=True)
class Task:
    """What one client process runs in a phase."""

    address: str
    start_at: float  # time.time()
    duration: float
    rpc_timeout: float
    streams: tuple[Stream, ...]
    seed: int


@dataclass
class TaskResult:
    latencies: dict[str, list[float]]
    errors: dict[str, Counter[tuple[str, str]]]
    cpu_seconds: float
    ended_at: float
    accounts: list[Credentials]


_channels: dict[str, list[grpc.Channel]] = {}


def _worker_channels(address: str, timeout: float) -> list[grpc.Channel]:
    if address not in _channels:
        _channels[address] = [
            open_channel(address, timeout, own_connection=True)
            for _ in range(CONNECTIONS_PER_CLIENT_PROCESS)
        ]
    return _channels[address]


def _make_call(
    kind: str, channel: grpc.Channel, creds: Credentials | None, rng: random.Random, timeout: float
) -> Callable[[], object]:
    if kind == "echo":
        echo = channel.unary_unary(ECHO_METHOD, None, None)
        payload = os.urandom(ECHO_PAYLOAD_BYTES)
        return lambda: echo(payload, timeout=timeout)
    client = IdClient(channel, timeout=timeout)
    if kind == "signup":
        return lambda: client.register(new_person(rng))
    assert creds is not None, kind
    if kind == "light":
        calls = [_make_call(k, channel, creds, rng, timeout) for k in LIGHT_KINDS]
        turn = itertools.cycle(calls)

        def in_turn() -> object:
            return next(turn)()

        return in_turn
    # Each call keeps the account's rotated tokens, or raises WrongAnswer by the harness's rules.
    if kind == "login":
        return lambda: creds.take(client.login(creds.email, creds.password).session)
    if kind == "refresh":
        return lambda: creds.take(client.refresh(creds.refresh_token).session)
    if kind == "introspect":
        return lambda: require(
            introspection_failure(client.introspect(creds.access_token), creds.account_id)
        )
    if kind == "get_account":
        return lambda: require(
            get_account_failure(client.get_account(creds.access_token), creds.account_id)
        )
    if kind == "check_age":
        as_of = seoul_today(datetime.now(UTC))
        return lambda: require(
            check_age_failure(
                client.check_age(creds.access_token, as_of=as_of), creds.birth_date, as_of
            )
        )
    raise ValueError(f"unknown kind of call: {kind}")


def run_task(task: Task) -> TaskResult:
    """Run a phase's share in this process: every stream's threads until the deadline."""
    channels = _worker_channels(task.address, task.rpc_timeout)
    latencies: dict[str, list[float]] = {s.name: [] for s in task.streams}
    errors: dict[str, Counter[tuple[str, str]]] = {s.name: Counter() for s in task.streams}
    lock = threading.Lock()
    deadline = task.start_at + task.duration
    workers: list[threading.Thread] = []
    index = 0
    for stream in task.streams:
        for creds in stream.accounts:
            rng = random.Random(task.seed * 100_003 + index)
            call = _make_call(
                stream.kind, channels[index % len(channels)], creds, rng, task.rpc_timeout
            )

            def loop(call: Callable[[], object] = call, name: str = stream.name) -> None:
                mine: list[float] = []
                failed: Counter[tuple[str, str]] = Counter()
                time.sleep(max(0.0, task.start_at - time.time()))
                # At least one call per thread, however late it is scheduled; then until the end.
                while True:
                    sent = time.perf_counter()
                    try:
                        call()
                    except grpc.RpcError as error:
                        key = error_key(error)
                        failed[key] += 1
                        if key[0] == "RESOURCE_EXHAUSTED":
                            time.sleep(BUSY_BACKOFF_SECONDS)
                    except WrongAnswer as wrong:
                        failed[(WRONG_ANSWER, str(wrong))] += 1
                    else:
                        mine.append(time.perf_counter() - sent)
                    if time.time() >= deadline:
                        break
                with lock:
                    latencies[name].extend(mine)
                    errors[name].update(failed)

            workers.append(threading.Thread(target=loop, daemon=True))
            index += 1
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, task.start_at - time.time()))
    before = own_cpu_seconds()
    for worker in workers:
        # The last call of each thread started before the deadline and has its own timeout.
        worker.join(max(0.0, deadline + task.rpc_timeout + 5.0 - time.time()))
    accounts = [c for s in task.streams for c in s.accounts if c is not None]
    return TaskResult(latencies, errors, own_cpu_seconds() - before, time.time(), accounts)


def _client_process(conn: multiprocessing.connection.Connection) -> None:
    """A client process: runs each Task it is sent, answers its TaskResult; None stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            conn.send(run_task(task))
        except Exception as exc:  # a broken client must not hang the run
            conn.send(RuntimeError(f"client process failed: {type(exc).__name__}: {exc}"))


@dataclass
class Measurement:
    """One stream of a phase: successful latencies, errors by (code, reason), CPU used."""

    name: str
    threads: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    server_cpu: float | None = None
    client_cpu: float | None = None
    has_server: bool = False
    peak_memory_kib: int | None = None
    memory_measure: str | None = None

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {"threads": self.threads, "elapsed_s": round(self.elapsed, 3)}
        data.update(latency_summary(self.latencies, self.elapsed))
        data["errors"] = {f"{code} {reason}": n for (code, reason), n in self.errors.items()}

        def cores(cpu: float | None) -> float | None:
            return round(cpu / self.elapsed, 2) if cpu is not None and self.elapsed else None

        # CPU cores kept busy on average (this machine has os.cpu_count() of them).
        data["server_cores"] = cores(self.server_cpu)
        data["client_cores"] = cores(self.client_cpu)
        data["cpu_ms_per_op"] = self.cpu_ms_per_op()
        data["peak_memory_mib"] = (
            round(self.peak_memory_kib / 1024, 1) if self.peak_memory_kib else None
        )
        return data

    def cpu_ms_per_op(self) -> float | None:
        """CPU (server tree + client processes) per successful call, in milliseconds.

        Unlike req/s it hardly moves when other work competes for the machine's CPUs.
        """
        if not self.latencies or self.client_cpu is None:
            return None
        if self.has_server and self.server_cpu is None:
            return None
        total = self.client_cpu + (self.server_cpu or 0.0)
        return round(total * 1000.0 / len(self.latencies), 4)


class ClientPool:
    """`size` client processes (spawned fresh: no grpc state crosses a fork)."""

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conns: list[multiprocessing.connection.Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        for i in range(size):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=_client_process, args=(theirs,), name=f"bench-client-{i}", daemon=True
            )
            process.start()
            theirs.close()
            self._conns.append(mine)
            self._processes.append(process)

    @property
    def size(self) -> int:
        return len(self._processes)

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for process in self._processes:
            process.join(10.0)
            if process.is_alive():
                process.kill()
                process.join(5.0)

    def run(
        self,
        address: str,
        streams: Sequence[Stream],
        *,
        duration: float,
        rpc_timeout: float,
        server_pid: int | None = None,
        sample_memory: bool = False,
        lead: float = PHASE_LEAD_SECONDS,
    ) -> list[Measurement]:
        """One phase: every stream's threads dealt round-robin over the client processes."""
        start_at = time.time() + lead
        for w, conn in enumerate(self._conns):
            share = tuple(
                replace(s, accounts=s.accounts[w :: self.size])
                for s in streams
                if s.accounts[w :: self.size]
            )
            conn.send(Task(address, start_at, duration, rpc_timeout, share, seed=w))
        time.sleep(max(0.0, start_at - time.time()))
        server_before = tree_cpu_seconds(server_pid) if server_pid else None
        client_before = own_cpu_seconds()
        sampler = MemorySampler(server_pid) if server_pid and sample_memory else None
        with sampler or contextlib.nullcontext():
            results = []
            for conn in self._conns:
                try:
                    answer = conn.recv()
                except EOFError:
                    raise RuntimeError("a client process died") from None
                if isinstance(answer, Exception):
                    raise RuntimeError(str(answer))
                results.append(answer)
        server_after = tree_cpu_seconds(server_pid) if server_pid else None
        elapsed = max(r.ended_at for r in results) - start_at
        client_cpu = sum(r.cpu_seconds for r in results) + own_cpu_seconds() - client_before
        server_cpu = (
            server_after - server_before
            if server_before is not None and server_after is not None
            else None
        )
        # Carry the rotated tokens back into the caller's credentials.
        fresh = {c.account_id: c for r in results for c in r.accounts}
        for stream in streams:
            for creds in stream.accounts:
                if creds is not None and creds.account_id in fresh:
                    new = fresh[creds.account_id]
                    creds.access_token, creds.refresh_token = new.access_token, new.refresh_token
        measurements = []
        for stream in streams:
            m = Measurement(
                stream.name,
                len(stream.accounts),
                elapsed=elapsed,
                server_cpu=server_cpu,
                client_cpu=client_cpu,
                has_server=server_pid is not None,
                peak_memory_kib=sampler.peak_kib if sampler else None,
                memory_measure=sampler.measure if sampler else None,
            )
            for r in results:
                m.latencies.extend(r.latencies.get(stream.name, ()))
                m.errors.update(r.errors.get(stream.name, Counter()))
            measurements.append(m)
        return measurements


# -- the Argon2 floor ------------------------------------------------------------------------


def argon2_floor(params: Argon2Config, duration: float) -> Measurement:
    """Raw Argon2id hashes/s on every CPU (threads in this process; argon2 releases the GIL)."""
    hasher = argon2.PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
    )
    threads = os.cpu_count() or 1
    hasher.hash(BENCHMARK_PASSWORD)  # warm: the first hash allocates
    result = Measurement(ARGON2_FLOOR, threads)
    per_thread: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def loop(mine: list[float]) -> None:
        start.wait()
        while True:
            sent = time.perf_counter()
            hasher.hash(BENCHMARK_PASSWORD)
            mine.append(time.perf_counter() - sent)
            if time.perf_counter() >= deadline:
                return

    workers = [threading.Thread(target=loop, args=(m,), daemon=True) for m in per_thread]
    for worker in workers:
        worker.start()
    before = own_cpu_seconds()
    began = time.perf_counter()
    deadline = began + duration
    start.wait()
    for worker in workers:
        worker.join(duration + 60.0)
    result.elapsed = time.perf_counter() - began
    result.client_cpu = own_cpu_seconds() - before
    for mine in per_thread:
        result.latencies.extend(mine)
    return result


# -- spawned servers -------------------------------------------------------------------------
@contextlib.contextmanager
def echo_service() -> Iterator[ServerProcess]:
    """scripts/echo_server.py on 127.0.0.1 (the service: scripts/harness.py's spawned_service)."""
    with tempfile.TemporaryDirectory(prefix="idservice-bench-") as cwd:
        server = ServerProcess(
            [sys.executable, str(ECHO_SERVER), "--listen", "127.0.0.1:0"],
            ready=_ECHO_READY,
            env=dict(os.environ),
            cwd=Path(cwd),
        )
        try:
            server.wait_ready(30.0)
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def database(kind: str, url: str | None, *, over: str = "socket") -> Iterator[str | None]:
    """The spawned server's database URL: given, a throwaway PostgreSQL, or None (SQLite).

    The throwaway cluster is on this machine, so the server reaches it `over` its Unix socket
    (as libpq does a local server by default), or over TCP on 127.0.0.1 with "tcp"."""
    if url is not None or kind == "sqlite":
        yield url
        return
    from tests.support.postgres import PostgresCluster

    with PostgresCluster() as cluster:
        tcp = cluster.create_database("bench")
        yield tcp if over == "tcp" else cluster.socket_url("bench")


def seed_accounts(address: str, count: int, timeout: float) -> list[Credentials]:
    """`count` signed-up accounts (not timed); raises if any sign-up fails."""
    results: list[Credentials | BaseException | None] = [None] * count
    channel = open_channel(address, timeout)

    def one(index: int) -> None:
        try:
            results[index] = IdClient(channel, timeout=timeout).register(
                new_person(random.Random(index))
            )
        except grpc.RpcError as error:
            results[index] = error

    try:
        # A few at a time: each sign-up is an Argon2 hash, and the queue for them is bounded.
        for first in range(0, count, 4):
            threads = [
                threading.Thread(target=one, args=(i,), daemon=True)
                for i in range(first, min(count, first + 4))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout * 2 + 5.0)
    finally:
        channel.close()
    accounts: list[Credentials] = []
    for result in results:
        if isinstance(result, grpc.RpcError):
            code, reason = error_key(result)
            raise RuntimeError(f"seeding accounts failed: {code} {reason}")
        if not isinstance(result, Credentials):
            raise RuntimeError("seeding accounts did not finish in time")
        accounts.append(result)
    return accounts


# -- the run ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    duration: float
    concurrency: int
    light_concurrency: int
    memory_in_flight: int
    client_processes: int
    rpc_timeout: float
    processes: str


CHEAP_PHASES: tuple[tuple[str, str], ...] = (
    ("CheckAge", "check_age"),
    ("IntrospectToken", "introspect"),
    ("GetAccount", "get_account"),
    ("RefreshSession", "refresh"),
)
LIGHT_ALONE = "light, alone"
LIGHT_LOADED = "light, beside logins"
PASSWORD_LOAD = "PasswordLogin (load)"
MEMORY_PHASE = "PasswordLogin (memory)"


def measure_service(
    pool: ClientPool,
    server: ServerProcess,
    opts: Options,
    floor: Callable[[str], Measurement],
) -> tuple[dict[str, Measurement], dict[str, Measurement], dict[str, Measurement], int]:
    """The service phases, each right after `floor(its floor's name)`; the latency and memory
    phases; and the most server processes seen."""
    assert server.address is not None
    n = opts.concurrency
    accounts = seed_accounts(server.address, n + opts.light_concurrency, opts.rpc_timeout)
    mine, light = tuple(accounts[:n]), tuple(accounts[n:])
    most_processes = len(process_tree(server.pid))

    def run(streams: Sequence[Stream], *, memory: bool = False) -> list[Measurement]:
        nonlocal most_processes
        result = pool.run(
            server.address or "",
            streams,
            duration=opts.duration,
            rpc_timeout=opts.rpc_timeout,
            server_pid=server.pid,
            sample_memory=memory,
        )
        most_processes = max(most_processes, len(process_tree(server.pid)))
        return result

    phases: dict[str, Measurement] = {}
    adjacent: dict[str, Measurement] = {}
    floors = {name: floor_name for name, floor_name, _least in SERVICE_PHASES}
    kinds = (*CHEAP_PHASES, ("PasswordLogin", "login"), ("SignUp", "signup"))
    for name, kind in kinds:
        adjacent[name] = floor(floors[name])
        streamed: tuple[Credentials | None, ...] = (None,) * n if kind == "signup" else mine
        (phases[name],) = run([Stream(name, kind, streamed)])
    extra: dict[str, Measurement] = {}
    (extra[LIGHT_ALONE],) = run([Stream(LIGHT_ALONE, "light", light)])
    extra[PASSWORD_LOAD], extra[LIGHT_LOADED] = run(
        [Stream(PASSWORD_LOAD, "login", mine), Stream(LIGHT_LOADED, "light", light)]
    )
    crowd = tuple(mine[i % n] for i in range(opts.memory_in_flight))
    (extra[MEMORY_PHASE],) = run([Stream(MEMORY_PHASE, "login", crowd)], memory=True)
    return phases, extra, adjacent, most_processes


@dataclass
class Run:
    """Everything one run measured, and what the spawned server logged at ERROR."""

    floors: dict[str, Measurement]
    phases: dict[str, Measurement]
    extra: dict[str, Measurement]
    # Each judged phase's floor, measured right before it.
    adjacent_floors: dict[str, Measurement]
    server_processes_seen: int
    server_error_lines: int
    server_first_errors: list[str]


def measure(opts: Options, params: Argon2Config, database_url: str | None) -> Run:
    floors = {ARGON2_FLOOR: argon2_floor(params, opts.duration)}
    pool = ClientPool(opts.client_processes)
    try:
        with echo_service() as echo:
            echo_address = echo.address
            assert echo_address is not None

            def floor(name: str) -> Measurement:
                if name == ARGON2_FLOOR:
                    return argon2_floor(params, opts.duration)
                (measured,) = pool.run(
                    echo_address,
                    [Stream(ECHO_FLOOR, "echo", (None,) * opts.concurrency)],
                    duration=opts.duration,
                    rpc_timeout=opts.rpc_timeout,
                    server_pid=echo.pid,
                )
                return measured

            floors[ECHO_FLOOR] = floor(ECHO_FLOOR)
            with spawned_service(
                database_url, argon2=params, processes=opts.processes, prefix="idservice-bench-"
            ) as server:
                phases, extra, adjacent, most = measure_service(pool, server, opts, floor)
    finally:
        pool.close()
    return Run(floors, phases, extra, adjacent, most, server.error_lines, server.first_errors)


# -- report ----------------------------------------------------------------------------------
def judge(report: Mapping[str, Any], params: Argon2Config, in_flight: int) -> list[dict[str, Any]]:
    """Issue 11's targets, each with its figure, its bound and whether it is met."""
    targets: list[dict[str, Any]] = []
    for name, floor, least in SERVICE_PHASES:
        ratio = report["phases"][name]["ratio"]
        target: dict[str, Any] = {
            "target": f"{name} ≥ {least:.2f} × {floor} floor ({in_flight} in flight)",
            "value": ratio,
            "bound": least,
            "met": ratio is not None and ratio >= least,
        }
        if floor == ARGON2_FLOOR and ratio is not None and ratio > PLAUSIBLE_ARGON2_RATIO:
            # A call that hashes cannot outrun bare hashing on the same CPUs: other work
            # starved the floor, and the figure says nothing.
            target["met"] = False
            target["note"] = "above 1: other work starved the floor; measure again"
        targets.append(target)
    latency = report["latency"]
    alone, loaded = latency["alone"]["p99_ms"], latency["beside_logins"]["p99_ms"]
    factor = round(loaded / alone, 3) if alone and loaded else None
    targets.append(
        {
            "target": f"cheap calls' p99 beside saturating logins ≤ {LOADED_P99_FACTOR:g} × alone",
            "value": factor,
            "bound": LOADED_P99_FACTOR,
            "met": factor is not None and factor <= LOADED_P99_FACTOR,
            "p99_alone_ms": alone,
            "p99_beside_logins_ms": loaded,
        }
    )
    memory = report["memory"]
    targets.append(
        {
            "target": (
                f"peak memory, {memory['in_flight']} logins in flight ≤ {memory['cpus']} CPUs × "
                f"{params.memory_cost} KiB + {MEMORY_HEADROOM_MIB} MiB"
            ),
            "value": memory["peak_mib"],
            "bound": memory["limit_mib"],
            "met": memory["peak_mib"] is not None and memory["peak_mib"] <= memory["limit_mib"],
        }
    )
    return targets


def build_report(
    *,
    params: Argon2Config,
    config: Mapping[str, Any],
    run: Run,
    machine: Mapping[str, Any],
) -> dict[str, Any]:
    floors, phases, extra = run.floors, run.phases, run.extra
    floor_data = {name: m.summary() for name, m in floors.items()}
    phase_data: dict[str, Any] = {}
    for name, floor, _least in SERVICE_PHASES:
        data = phases[name].summary()
        data["floor"] = floor
        # The floor measured right before this phase (see the module's docstring).
        adjacent = run.adjacent_floors[name].summary()
        data["adjacent_floor"] = adjacent
        base = adjacent["req_per_s"]
        data["ratio"] = round(data["req_per_s"] / base, 4) if base else None
        # The same comparison in CPU per call: floor CPU ÷ this path's CPU (1.0 = no overhead).
        base_cpu, cpu = adjacent["cpu_ms_per_op"], data["cpu_ms_per_op"]
        data["cpu_ratio"] = round(base_cpu / cpu, 4) if base_cpu and cpu else None
        phase_data[name] = data
    cpus = os.cpu_count() or 1
    memory_phase = extra[MEMORY_PHASE]
    sampler_peak = memory_phase.peak_memory_kib
    report: dict[str, Any] = {
        "machine": dict(machine),
        "config": dict(config),
        "argon2": {
            "time_cost": params.time_cost,
            "memory_cost_kib": params.memory_cost,
            "parallelism": params.parallelism,
        },
        "server": {
            "processes_requested": config["server_processes"],
            # The supervisor and its children (1 when the server runs in one process).
            "processes_seen": run.server_processes_seen,
            "error_lines": run.server_error_lines,
            "first_error_lines": run.server_first_errors,
        },
        "floors": floor_data,
        "phases": phase_data,
        "latency": {
            "alone": extra[LIGHT_ALONE].summary(),
            "beside_logins": extra[LIGHT_LOADED].summary(),
            "password_load": extra[PASSWORD_LOAD].summary(),
        },
        "memory": {
            "in_flight": memory_phase.threads,
            "cpus": cpus,
            "measure": config["memory_measure"],
            "peak_mib": round(sampler_peak / 1024, 1) if sampler_peak else None,
            "limit_mib": round(cpus * params.memory_cost / 1024 + MEMORY_HEADROOM_MIB, 1),
            "phase": memory_phase.summary(),
        },
    }
    report["targets"] = judge(report, params, config["concurrency"])
    measured = (
        *floors.values(),
        *run.adjacent_floors.values(),
        *phases.values(),
        *extra.values(),
    )
    internal = sum(
        n for m in measured for (code, _reason), n in m.errors.items() if code in FAILURE_CODES
    )
    wrong = sum(
        n for m in measured for (code, _reason), n in m.errors.items() if code == WRONG_ANSWER
    )
    failures = []
    if internal:
        failures.append(f"{internal} INTERNAL/UNKNOWN status(es): a server bug (contract §3)")
    if wrong:
        failures.append(f"{wrong} wrong answer(s)")
    if run.server_error_lines:
        failures.append(f"the server logged {run.server_error_lines} ERROR line(s)")
    for m in measured:
        if not m.latencies:
            failures.append(f"{m.name}: no successful call")
    report.update(
        internal_errors=internal,
        targets_met=all(t["met"] for t in report["targets"]),
        failures=failures,
        passed=not failures,
    )
    return report


def print_report(report: Mapping[str, Any]) -> None:
    c, a, m = report["config"], report["argon2"], report["machine"]
    print(
        f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {fmt(m['ram_mib'])} MiB RAM, "
        f"Python {m['python']}, grpcio {m['grpcio']}"
    )
    before, after = m["load_average_before"], m["load_average_after"]
    print(
        "load average (1/5/15 min) before: "
        f"{'/'.join(fmt(x, 2) for x in before) if before else '-'}, after: "
        f"{'/'.join(fmt(x, 2) for x in after) if after else '-'} "
        "(other work on the machine skews every figure)"
    )
    server = report["server"]
    print(
        f"server: database {c['database']} ({c['database_connection']}), "
        f"IDSERVICE_PROCESSES={server['processes_requested']} "
        f"({server['processes_seen']} server process(es) seen); client: "
        f"{c['client_processes']} processes, {c['concurrency']} calls in flight, "
        f"{c['duration_s']:g} s per phase"
    )
    print(
        f"Argon2id t={a['time_cost']} m={a['memory_cost_kib']} KiB p={a['parallelism']}; "
        f"echo payload {c['echo_payload_bytes']} bytes"
    )
    print()
    header = (
        f"{'phase':<24}{'floor':>7}{'floor/s':>9}{'req/s':>9}{'ratio':>7}{'p50 ms':>9}"
        f"{'p95 ms':>9}{'p99 ms':>9}{'errors':>7}{'srv cores':>10}{'cli cores':>10}"
        f"{'cpu ms/op':>10}{'cpu ratio':>10}"
    )
    print(header)
    rows: list[tuple[str, str, str, Mapping[str, Any], str, str]] = [
        (f"{name} (floor)", "-", "-", data, "1.00", "1.00")
        for name, data in report["floors"].items()
    ]
    rows += [
        (
            name,
            data["floor"],
            fmt(data["adjacent_floor"]["req_per_s"]),
            data,
            fmt(data["ratio"], 2),
            fmt(data["cpu_ratio"], 2),
        )
        for name, data in report["phases"].items()
    ]
    latency = report["latency"]
    rows += [
        (f"{LIGHT_ALONE}", "-", "-", latency["alone"], "-", "-"),
        (f"{PASSWORD_LOAD}", "-", "-", latency["password_load"], "-", "-"),
        (f"{LIGHT_LOADED}", "-", "-", latency["beside_logins"], "-", "-"),
        (f"{MEMORY_PHASE}", "-", "-", report["memory"]["phase"], "-", "-"),
    ]
    for name, floor, floor_rate, d, ratio, cpu_ratio in rows:
        print(
            f"{name:<24}{floor:>7}{floor_rate:>9}{fmt(d['req_per_s']):>9}{ratio:>7}"
            f"{fmt(d['p50_ms'], 2):>9}{fmt(d['p95_ms'], 2):>9}{fmt(d['p99_ms'], 2):>9}"
            f"{sum(d['errors'].values()):>7}{fmt(d['server_cores'], 2):>10}"
            f"{fmt(d['client_cores'], 2):>10}{fmt(d['cpu_ms_per_op'], 2):>10}{cpu_ratio:>10}"
        )
    print()
    memory = report["memory"]
    legend = (
        "floors: argon2 = raw Argon2id hashes/s on every CPU, in one process; echo = a bare gRPC",
        "        echo server in ONE process (the floor issue 11 defines), same client shape",
        "floor/s: the phase's floor measured right before it (the start's floors drift);",
        "ratio: req/s ÷ floor/s; cpu ratio: that floor's CPU per call ÷ this path's (server",
        "       process tree + client processes; PostgreSQL's own CPU is not counted)",
        f"srv/cli cores: CPUs kept busy by the server process tree / the {c['client_processes']} "
        "client processes",
        f"light: {', '.join(LIGHT_KINDS)} in turn, {c['light_concurrency']} in flight; "
        f"memory: {memory['measure'].upper()} summed over the server process tree,",
        f"        sampled from /proc every {MEMORY_SAMPLE_SECONDS * 1000:.0f} ms with "
        f"{memory['in_flight']} logins in flight",
    )
    print("\n".join(legend))
    for name, d in (
        *report["floors"].items(),
        *((f"{k} (its floor)", v["adjacent_floor"]) for k, v in report["phases"].items()),
        *report["phases"].items(),
        *((k, v) for k, v in latency.items()),
        (MEMORY_PHASE, report["memory"]["phase"]),
    ):
        for key, count in sorted(d["errors"].items()):
            print(f"  {name}: {key} x {count}")
    print()
    print("targets (issue 11):")
    for target in report["targets"]:
        verdict = "met" if target["met"] else "NOT met"
        value = fmt(target["value"], 2)
        bound = fmt(target["bound"], 2)
        extra = ""
        if "p99_alone_ms" in target:
            extra = (
                f" (p99 {fmt(target['p99_beside_logins_ms'], 1)} ms beside logins, "
                f"{fmt(target['p99_alone_ms'], 1)} ms alone)"
            )
        elif target["target"].startswith("peak memory"):
            value, bound = f"{value} MiB", f"{bound} MiB"
        if "note" in target:
            extra = f" ({target['note']})"
        print(f"  {target['target']}: {value} (bound {bound}){extra}: {verdict}")
    if c["concurrency"] < TARGET_IN_FLIGHT:
        print(
            f"  note: issue 11 judges the cheap calls with ≥ {TARGET_IN_FLIGHT} calls in flight; "
            f"this run had {c['concurrency']}"
        )
    print(f"INTERNAL/UNKNOWN: {report['internal_errors']}")
    if report["passed"]:
        print("result: PASS")
    else:
        print("result: FAIL")
        for failure in report["failures"]:
            print(f"  - {failure}")
        for line in report["server"]["first_error_lines"]:
            print(f"  server log: {line}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument(
        "--concurrency", type=int, default=TARGET_IN_FLIGHT, help="calls in flight per phase"
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        default=max(2, min(4, os.cpu_count() or 1)),
        help="client processes the calls in flight are spread over",
    )
    parser.add_argument(
        "--light-concurrency",
        type=int,
        default=2,
        help="cheap calls in flight in the light stream (alone, then beside logins)",
    )
    parser.add_argument(
        "--memory-in-flight",
        type=int,
        default=MEMORY_IN_FLIGHT,
        help="password calls in flight while the server's memory is sampled",
    )
    parser.add_argument(
        "--processes",
        type=server_processes,
        default="auto",
        help="IDSERVICE_PROCESSES for the spawned server (default auto: one per CPU)",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default=None,
        help="sqlite (a temporary file) or postgres (a throwaway cluster); default sqlite",
    )
    parser.add_argument(
        "--database-url",
        type=check_database_url,
        help="an existing database for the spawned server instead (a fresh one, on loopback "
        "or a local socket)",
    )
    parser.add_argument(
        "--postgres-over",
        choices=("socket", "tcp"),
        default=None,
        help="how the server reaches the throwaway cluster: its Unix socket (default) or TCP",
    )
    parser.add_argument("--rpc-timeout", type=float, default=10.0, help="deadline of each call")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--require-targets", action="store_true", help="exit 1 when a target is not met"
    )
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600:
        parser.error("--duration must be in (0, 600] seconds")
    for option, value, most in (
        ("--concurrency", args.concurrency, 256),
        ("--client-processes", args.client_processes, 32),
        ("--light-concurrency", args.light_concurrency, 64),
        ("--memory-in-flight", args.memory_in_flight, 1024),
    ):
        if not 1 <= value <= most:
            parser.error(f"{option} must be between 1 and {most}")
    if not 0 < args.rpc_timeout <= 120:
        parser.error("--rpc-timeout must be in (0, 120] seconds")
    kind = args.database or database_kind(args.database_url)
    if args.database_url is not None and database_kind(args.database_url) != (
        "postgresql" if kind == "postgres" else kind
    ):
        parser.error("--database and --database-url name different databases")
    if args.postgres_over is not None and (kind != "postgres" or args.database_url is not None):
        parser.error("--postgres-over is for the throwaway cluster of --database postgres")
    over = args.postgres_over or "socket"
    try:
        params = Argon2Config.from_settings()
    except ValueError as exc:  # ConfigError names the variable
        print(f"benchmark: configuration error: {exc}", file=sys.stderr)
        return 2
    opts = Options(
        duration=args.duration,
        concurrency=args.concurrency,
        light_concurrency=args.light_concurrency,
        memory_in_flight=args.memory_in_flight,
        client_processes=args.client_processes,
        rpc_timeout=args.rpc_timeout,
        processes=args.processes,
    )
    machine = machine_facts()
    machine["load_average_before"] = load_averages()
    try:
        with database(kind, args.database_url, over=over) as url:
            run = measure(opts, params, url)
    except RuntimeError as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmark: interrupted", file=sys.stderr)
        return 130
    machine["load_average_after"] = load_averages()
    config = {
        "duration_s": opts.duration,
        "concurrency": opts.concurrency,
        "client_processes": opts.client_processes,
        "light_concurrency": opts.light_concurrency,
        "memory_in_flight": opts.memory_in_flight,
        "database": "sqlite" if kind == "sqlite" else "postgresql",
        "database_connection": connection_kind(kind, args.database_url, over),
        "server_processes": opts.processes,
        "echo_payload_bytes": ECHO_PAYLOAD_BYTES,
        "rpc_timeout_s": opts.rpc_timeout,
        "memory_measure": run.extra[MEMORY_PHASE].memory_measure or "pss",
    }
    report = build_report(
        params=params,
        config=config,
        run=run,
        machine=machine,
    )
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if not report["passed"]:
        return 1
    return 1 if args.require_targets and not report["targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
