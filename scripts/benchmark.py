"""Benchmark idservice against floors measured in the same run: raw Argon2id and a bare gRPC echo.

One run measures, one phase after another (each `--duration` seconds, closed loop):

1. floor: raw Argon2id hashes/s with the service's configured parameters (argon2-cffi
   `PasswordHasher(t, m, p)` on `os.cpu_count()` threads, in this process);
2. floor: bare gRPC echo req/s (scripts/echo_server.py in a subprocess, 64-thread pool like the
   service) from `--concurrency` client threads on one channel;
3. against a real `idservice serve` subprocess (SQLite in a temporary directory by default,
   `--database-url` for PostgreSQL): PasswordLogin, SignUp (sandbox CompleteVerification +
   SignUp, counted as one), RefreshSession, IntrospectToken and GetAccount req/s with p50/p95/p99.

Each service figure is reported as a ratio to its floor: the password paths against Argon2
hashes/s (each does one Argon2 computation), the token/database paths against echo req/s. The
ratios, not the raw numbers, are comparable between machines. Traffic stays on 127.0.0.1 and the
run stops by itself. Exit 1 on any INTERNAL/UNKNOWN status or a phase without one success.

    .venv/bin/python scripts/benchmark.py --duration 5 --concurrency 8 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in {None, ""}:
    # Run as a file (python scripts/benchmark.py): make the repository root importable so the
    # shared helpers resolve as scripts.loadtest, the same name mypy and the tests use.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argon2
import grpc

from scripts.echo_server import ECHO_METHOD, READY_PREFIX
from scripts.loadtest import (
    FAILURE_CODES,
    Argon2Config,
    Credentials,
    IdClient,
    ServerProcess,
    check_database_url,
    database_kind,
    error_key,
    fmt,
    latency_summary,
    load_average,
    new_person,
    open_channel,
    own_cpu_seconds,
    spawned_service,
)

ECHO_SERVER = Path(__file__).resolve().with_name("echo_server.py")
_ECHO_READY = re.compile(re.escape(READY_PREFIX) + r"(\S+):(\d+)")
# Roughly the size of a request carrying an access token (a JWT of a few hundred bytes).
ECHO_PAYLOAD_BYTES = 512
ARGON2_FLOOR = "argon2"
ECHO_FLOOR = "echo"
# Phase name → the floor its ratio is taken against.
SERVICE_PHASES: tuple[tuple[str, str], ...] = (
    ("PasswordLogin", ARGON2_FLOOR),
    ("SignUp", ARGON2_FLOOR),
    ("RefreshSession", ECHO_FLOOR),
    ("IntrospectToken", ECHO_FLOOR),
    ("GetAccount", ECHO_FLOOR),
)
BENCHMARK_PASSWORD = "benchmark password, not a secret"
# Recorded like a status for answers that arrive but are wrong (counted as failures).
WRONG_ANSWER = "WRONG_ANSWER"


class WrongAnswer(Exception):
    """A call succeeded with an answer the contract rules out."""


@dataclass
class Measurement:
    """One closed-loop phase: successful latencies, errors by (code, reason), CPU used."""

    name: str
    threads: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    server_cpu: float | None = None
    client_cpu: float | None = None
    has_server: bool = False

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {"threads": self.threads, "elapsed_s": round(self.elapsed, 3)}
        data.update(latency_summary(self.latencies, self.elapsed))
        data["errors"] = {f"{code} {reason}": n for (code, reason), n in self.errors.items()}
        # CPU cores kept busy on average (this machine has os.cpu_count() of them).
        data["server_cores"] = (
            round(self.server_cpu / self.elapsed, 2)
            if self.server_cpu is not None and self.elapsed
            else None
        )
        data["client_cores"] = (
            round(self.client_cpu / self.elapsed, 2)
            if self.client_cpu is not None and self.elapsed
            else None
        )
        data["cpu_ms_per_op"] = self.cpu_ms_per_op()
        return data

    def cpu_ms_per_op(self) -> float | None:
        """CPU (server + this client process) per successful call, in milliseconds.

        Unlike req/s it hardly moves when other work competes for the machine's CPUs.
        """
        if not self.latencies or self.client_cpu is None:
            return None
        if self.has_server and self.server_cpu is None:
            return None
        total = self.client_cpu + (self.server_cpu or 0.0)
        return round(total * 1000.0 / len(self.latencies), 4)


def closed_loop(
    name: str,
    threads: int,
    duration: float,
    make_call: Callable[[int], Callable[[], object]],
    *,
    server: ServerProcess | None = None,
    call_timeout: float,
) -> Measurement:
    """`threads` threads each repeat their call until `duration` has passed; nothing else runs."""
    result = Measurement(name, threads, has_server=server is not None)
    calls = [make_call(i) for i in range(threads)]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[Counter[tuple[str, str]]] = [Counter() for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def loop(index: int) -> None:
        call, mine, failed = calls[index], latencies[index], errors[index]
        start.wait()
        # At least one call per thread, however late it is scheduled; then until the deadline.
        while True:
            sent = time.perf_counter()
            try:
                call()
            except grpc.RpcError as error:
                failed[error_key(error)] += 1
            except WrongAnswer as wrong:
                failed[(WRONG_ANSWER, str(wrong))] += 1
            else:
                mine.append(time.perf_counter() - sent)
            if time.perf_counter() >= deadline:
                return

    workers = [
        threading.Thread(target=loop, args=(i,), name=f"{name}-{i}", daemon=True)
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    server_before = server.cpu_seconds() if server else None
    client_before = own_cpu_seconds()
    began = time.perf_counter()
    deadline = began + duration
    start.wait()
    for worker in workers:
        # The last call of each thread started before the deadline and has its own timeout.
        worker.join(max(0.0, deadline + call_timeout + 5.0 - time.perf_counter()))
    result.elapsed = time.perf_counter() - began
    server_after = server.cpu_seconds() if server else None
    if server_before is not None and server_after is not None:
        result.server_cpu = server_after - server_before
    result.client_cpu = own_cpu_seconds() - client_before
    for mine, failed in zip(latencies, errors, strict=True):
        result.latencies.extend(mine)
        result.errors.update(failed)
    return result


# -- floors ----------------------------------------------------------------------------------
def argon2_floor(params: Argon2Config, duration: float) -> Measurement:
    """Raw Argon2id hashes/s on every CPU: what the service's hashing pool can do at best."""
    hasher = argon2.PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
    )
    threads = os.cpu_count() or 1
    hasher.hash(BENCHMARK_PASSWORD)  # warm: the first hash allocates
    return closed_loop(
        "argon2",
        threads,
        duration,
        lambda _i: lambda: hasher.hash(BENCHMARK_PASSWORD),
        call_timeout=60.0,
    )


def echo_floor(concurrency: int, duration: float, rpc_timeout: float) -> Measurement:
    """Bare gRPC echo req/s from the same client shape as the service phases."""
    with tempfile.TemporaryDirectory(prefix="idservice-bench-") as cwd:
        server = ServerProcess(
            [sys.executable, str(ECHO_SERVER), "--listen", "127.0.0.1:0"],
            ready=_ECHO_READY,
            env=dict(os.environ),
            cwd=Path(cwd),
        )
        try:
            address = server.wait_ready(30.0)
            channel = open_channel(address, rpc_timeout)
            try:
                echo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                    ECHO_METHOD, None, None
                )
                payload = os.urandom(ECHO_PAYLOAD_BYTES)
                for _ in range(concurrency):
                    echo(payload, timeout=rpc_timeout)  # warm the connection
                return closed_loop(
                    "echo",
                    concurrency,
                    duration,
                    lambda _i: lambda: echo(payload, timeout=rpc_timeout),
                    server=server,
                    call_timeout=rpc_timeout,
                )
            finally:
                channel.close()
        finally:
            server.stop()


# -- service phases --------------------------------------------------------------------------
def seed_accounts(client: IdClient, count: int) -> list[Credentials]:
    """One signed-up account per client thread (not timed); raises if any sign-up fails."""
    results: list[Credentials | BaseException | None] = [None] * count

    def one(index: int) -> None:
        rng = random.Random(index)
        try:
            results[index] = client.register(new_person(rng))
        except grpc.RpcError as error:
            results[index] = error

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(client.timeout * 2 + 5.0)
    accounts: list[Credentials] = []
    for result in results:
        if isinstance(result, grpc.RpcError):
            code, reason = error_key(result)
            details = result.details() if isinstance(result, grpc.Call) else ""
            raise RuntimeError(f"seeding accounts failed: {code} {reason}: {details}")
        if not isinstance(result, Credentials):
            raise RuntimeError("seeding accounts did not finish in time")
        accounts.append(result)
    return accounts


def service_phases(
    server: ServerProcess,
    *,
    concurrency: int,
    duration: float,
    rpc_timeout: float,
) -> list[Measurement]:
    assert server.address is not None
    channel = open_channel(server.address, rpc_timeout)
    try:
        client = IdClient(channel, timeout=rpc_timeout)
        accounts = seed_accounts(client, concurrency)
        rng = random.Random(0)

        def login(i: int) -> Callable[[], None]:
            return lambda: client.login(accounts[i])

        def signup(_i: int) -> Callable[[], object]:
            return lambda: client.register(new_person(rng))

        def refresh(i: int) -> Callable[[], None]:
            return lambda: client.refresh(accounts[i])

        def introspect(i: int) -> Callable[[], object]:
            def call() -> None:
                answer = client.introspect(accounts[i])
                if not answer.active or answer.account_id != accounts[i].account_id:
                    raise WrongAnswer("fresh access token not active")

            return call

        def get_account(i: int) -> Callable[[], object]:
            def call() -> None:
                if client.get_account(accounts[i]).account.id != accounts[i].account_id:
                    raise WrongAnswer("another account answered")

            return call

        makers: Mapping[str, Callable[[int], Callable[[], object]]] = {
            "PasswordLogin": login,
            "SignUp": signup,
            "RefreshSession": refresh,
            "IntrospectToken": introspect,
            "GetAccount": get_account,
        }
        results = []
        for name, _floor in SERVICE_PHASES:
            results.append(
                closed_loop(
                    name,
                    concurrency,
                    duration,
                    makers[name],
                    server=server,
                    call_timeout=rpc_timeout,
                )
            )
        return results
    finally:
        channel.close()


# -- report ----------------------------------------------------------------------------------
def build_report(
    *,
    params: Argon2Config,
    config: Mapping[str, Any],
    floors: Mapping[str, Measurement],
    phases: Sequence[Measurement],
) -> dict[str, Any]:
    floor_data = {name: m.summary() for name, m in floors.items()}
    floor_of = dict(SERVICE_PHASES)
    phase_data: dict[str, Any] = {}
    for m in phases:
        data = m.summary()
        floor = floor_of[m.name]
        data["floor"] = floor
        base = floor_data[floor]["req_per_s"]
        data["ratio"] = round(data["req_per_s"] / base, 4) if base else None
        # The same comparison in CPU per call: floor CPU ÷ this path's CPU (1.0 = no overhead).
        base_cpu, cpu = floor_data[floor]["cpu_ms_per_op"], data["cpu_ms_per_op"]
        data["cpu_ratio"] = round(base_cpu / cpu, 4) if base_cpu and cpu else None
        phase_data[m.name] = data
    measured = (*floors.values(), *phases)
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
    for m in measured:
        if not m.latencies:
            failures.append(f"{m.name}: no successful call")
    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "load_average_before": config["load_average_before"],
            "load_average_after": load_average(),
        },
        "config": dict(config),
        "argon2": {
            "time_cost": params.time_cost,
            "memory_cost_kib": params.memory_cost,
            "parallelism": params.parallelism,
        },
        "floors": floor_data,
        "phases": phase_data,
        "internal_errors": internal,
        "failures": failures,
        "passed": not failures,
    }


def print_report(report: Mapping[str, Any]) -> None:
    c, a = report["config"], report["argon2"]
    print(
        f"benchmark: {report['machine']['cpu_count']} CPUs, Python {report['machine']['python']}, "
        f"{c['concurrency']} client threads, {c['duration_s']:g} s per phase, "
        f"database {c['database']}"
    )
    print(
        f"Argon2id t={a['time_cost']} m={a['memory_cost_kib']} KiB p={a['parallelism']}; "
        f"echo payload {c['echo_payload_bytes']} bytes"
    )
    m = report["machine"]
    print(
        f"load average (1 min) before/after: {fmt(m['load_average_before'], 2)}/"
        f"{fmt(m['load_average_after'], 2)} (other work on the machine skews every figure)"
    )
    print()
    print(
        f"{'phase':<16}{'floor':>7}{'req/s':>9}{'ratio':>7}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'errors':>7}{'srv cores':>10}{'cli cores':>10}{'cpu ms/op':>10}"
        f"{'cpu ratio':>10}"
    )
    rows: list[tuple[str, str, Mapping[str, Any], str, str]] = [
        (f"{name} (floor)", "-", data, "1.00", "1.00") for name, data in report["floors"].items()
    ]
    rows += [
        (name, data["floor"], data, fmt(data["ratio"], 2), fmt(data["cpu_ratio"], 2))
        for name, data in report["phases"].items()
    ]
    for name, floor, d, ratio, cpu_ratio in rows:
        print(
            f"{name:<16}{floor:>7}{fmt(d['req_per_s']):>9}{ratio:>7}{fmt(d['p50_ms'], 2):>9}"
            f"{fmt(d['p95_ms'], 2):>9}{fmt(d['p99_ms'], 2):>9}{sum(d['errors'].values()):>7}"
            f"{fmt(d['server_cores'], 2):>10}{fmt(d['client_cores'], 2):>10}"
            f"{fmt(d['cpu_ms_per_op'], 2):>10}{cpu_ratio:>10}"
        )
    print()
    print("ratio: password paths ÷ Argon2 hashes/s; token and database paths ÷ echo req/s")
    print("cpu ratio: the floor's CPU per call ÷ this path's (server + client CPU; steadier")
    print("           than req/s when other work shares the machine)")
    for name, d in (*report["floors"].items(), *report["phases"].items()):
        for key, count in sorted(d["errors"].items()):
            print(f"  {name}: {key} x {count}")
    print(f"INTERNAL/UNKNOWN: {report['internal_errors']}")
    if report["passed"]:
        print("result: PASS")
    else:
        print("result: FAIL")
        for failure in report["failures"]:
            print(f"  - {failure}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument(
        "--database-url",
        type=check_database_url,
        help="the spawned server's database (default: SQLite in a temporary directory)",
    )
    parser.add_argument("--rpc-timeout", type=float, default=10.0, help="deadline of each call")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600:
        parser.error("--duration must be in (0, 600] seconds")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be between 1 and 256")
    if not 0 < args.rpc_timeout <= 120:
        parser.error("--rpc-timeout must be in (0, 120] seconds")
    try:
        params = Argon2Config.from_settings()
    except ValueError as exc:  # ConfigError names the variable
        print(f"benchmark: configuration error: {exc}", file=sys.stderr)
        return 2
    config = {
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "database": database_kind(args.database_url),
        "echo_payload_bytes": ECHO_PAYLOAD_BYTES,
        "rpc_timeout_s": args.rpc_timeout,
        "load_average_before": load_average(),
    }
    try:
        floors = {
            ARGON2_FLOOR: argon2_floor(params, args.duration),
            ECHO_FLOOR: echo_floor(args.concurrency, args.duration, args.rpc_timeout),
        }
        with spawned_service(args.database_url, argon2=params) as server:
            phases = service_phases(
                server,
                concurrency=args.concurrency,
                duration=args.duration,
                rpc_timeout=args.rpc_timeout,
            )
    except RuntimeError as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmark: interrupted", file=sys.stderr)
        return 130
    report = build_report(params=params, config=config, floors=floors, phases=phases)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
