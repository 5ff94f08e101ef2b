"""Mixed-traffic load generator for idservice: throughput, latency percentiles, errors by reason.

Each worker thread runs a closed loop of operations drawn from a weighted mix: sign-ups of new
sandbox people (CompleteVerification + SignUp), password logins, refresh-token rotations, token
introspections and GetAccount calls. A configurable share of sign-ups repeats an already
registered sandbox person on purpose: the verification must flag the duplicate and SignUp must
refuse it with ALREADY_EXISTS / IDENTITY_ALREADY_REGISTERED.

The run fails (exit 1) on any INTERNAL or UNKNOWN status (contract §3: INTERNAL is a bug) and on
wrong answers: a duplicate person accepted or not flagged, a fresh access token reported
inactive, GetAccount answering with another account. Other errors are reported, not failed.

    .venv/bin/python scripts/loadtest.py --spawn --duration 10 --concurrency 8
    .venv/bin/python scripts/loadtest.py --target 127.0.0.1:50051 --mix signup=1,login=1

This module also holds what the benchmark shares with it: the typed client, error decoding,
latency statistics, sandbox people and the spawned `idservice serve` subprocess.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import json
import math
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from idservice.v1 import (
    account_pb2,
    account_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    identity_pb2,
    identity_pb2_grpc,
)

T = TypeVar("T")

OPERATIONS = ("signup", "login", "refresh", "introspect", "get_account")
DEFAULT_MIX = "signup=2,login=2,refresh=2,introspect=3,get_account=3"
# The terms a spawned server (default configuration) asks SignUp to accept.
DEFAULT_TERMS_VERSION = "2024-05-15"
# Contract §3: INTERNAL is a bug; UNKNOWN is what grpc answers for an exception that escaped.
FAILURE_CODES = frozenset({"INTERNAL", "UNKNOWN"})
# What SignUp must answer for an already registered person (contract §3).
DUPLICATE_REFUSAL = ("ALREADY_EXISTS", "IDENTITY_ALREADY_REGISTERED")
# Access tokens live 15 minutes (contract §2); refresh well before that in long runs.
ACCESS_TOKEN_REFRESH_AFTER_SECONDS = 600.0
# Accounts a worker keeps for login/refresh/introspect traffic (bounds memory in long runs).
MAX_ACCOUNTS_PER_WORKER = 32
# The registry duplicates are drawn from (bounded the same way).
MAX_REGISTERED_PEOPLE = 10_000
# Adults only, so no sign-up needs a guardian (korea-rules: 만 14 / 만 19).
BIRTH_YEARS = (1960, 2000)
NAMES = ("김민준", "이서연", "박지후", "최하은", "정도윤", "강수아", "조예준", "윤지아")
# A spawned server gets this long to migrate and bind, and this long to drain when stopped.
STARTUP_TIMEOUT_SECONDS = 60.0
SERVER_SHUTDOWN_GRACE = "2s"
STOP_TIMEOUT_SECONDS = 15.0
_LISTENING = re.compile(r"idservice listening on (\S+):(\d+)")
SERVER_LOG_TAIL_LINES = 200


# -- addresses -------------------------------------------------------------------------------
def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError("expected host:port, e.g. 127.0.0.1:50051")
    return host, int(port)


def check_database_url(url: str) -> str:
    """A sqlite URL, or a PostgreSQL URL on loopback (benchmarks never leave this machine)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise argparse.ArgumentTypeError("not a SQLAlchemy database URL") from None
    backend = parsed.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise argparse.ArgumentTypeError("expected a sqlite:// or postgresql+psycopg:// URL")
    if backend == "postgresql" and parsed.host and not is_loopback_host(parsed.host):
        raise argparse.ArgumentTypeError("the database must be on a loopback address")
    return url


def database_kind(url: str | None) -> str:
    return "sqlite" if url is None or url.startswith("sqlite") else "postgresql"


# -- errors ----------------------------------------------------------------------------------
def error_key(error: grpc.RpcError) -> tuple[str, str]:
    """(status code name, ErrorInfo reason) of a failed call; reason "-" when there is none."""
    if not isinstance(error, grpc.Call):
        return ("UNKNOWN", "-")
    code = error.code()
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    reason = "-"
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = str(info.reason) or "-"
    return (name, reason)


# -- statistics ------------------------------------------------------------------------------
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


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), from /proc; None elsewhere."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it are space separated.
    fields = text.rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def load_average() -> float | None:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# -- sandbox people --------------------------------------------------------------------------
@dataclass(frozen=True)
class Person:
    """A sandbox person: CI/DI derive from the seed, so any attempt is the same person."""

    name: str
    birth_date: str
    phone: str
    seed: str

    def verification_id(self, attempt: int) -> str:
        return f"sandbox:{self.name}:{self.birth_date}:{self.phone}:{self.seed}:{attempt}"


def new_mobile_number(rng: random.Random) -> str:
    """A Korean mobile number the service accepts (some 010 blocks are unassigned: 5970-5999)."""
    import phonenumbers

    for _ in range(100):
        phone = f"010-{rng.randrange(2000, 10000):04d}-{rng.randrange(10000):04d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(phone, "KR")):
            return phone
    raise RuntimeError("no valid Korean mobile number found")  # pragma: no cover


def new_person(rng: random.Random) -> Person:
    first = date(BIRTH_YEARS[0], 1, 1)
    span = (date(BIRTH_YEARS[1], 12, 31) - first).days
    birth = first + timedelta(days=rng.randrange(span))
    return Person(
        name=rng.choice(NAMES),
        birth_date=birth.isoformat(),
        phone=new_mobile_number(rng),
        seed=str(uuid.uuid4()),
    )


_attempts = iter(range(1, sys.maxsize))
_attempts_lock = threading.Lock()


def next_attempt() -> int:
    """A process-wide attempt number: every verification id is used once (contract §2)."""
    with _attempts_lock:
        return next(_attempts)


def new_email() -> str:
    return f"load-{uuid.uuid4().hex[:12]}@example.com"


def new_password() -> str:
    # Random enough for zxcvbn's top score; unrelated to the email and the name.
    return f"{secrets.token_urlsafe(15)} load"


# -- client ----------------------------------------------------------------------------------
@dataclass
class Credentials:
    """One signed-up account and its latest session."""

    account_id: str
    email: str
    password: str
    access_token: str
    refresh_token: str
    issued_at: float = field(default_factory=time.monotonic)

    def take(self, session: common_pb2.Session) -> None:
        self.access_token = session.access_token
        self.refresh_token = session.refresh_token
        self.issued_at = time.monotonic()


class IdClient:
    """Typed calls over the generated idservice.v1 stubs on one channel."""

    def __init__(
        self, channel: grpc.Channel, *, terms_version: str = DEFAULT_TERMS_VERSION, timeout: float
    ) -> None:
        identity: Any = identity_pb2_grpc.IdentityServiceStub(channel)
        accounts: Any = account_pb2_grpc.AccountServiceStub(channel)
        auth: Any = auth_pb2_grpc.AuthServiceStub(channel)
        self._complete_verification: grpc.UnaryUnaryMultiCallable[
            identity_pb2.CompleteVerificationRequest, identity_pb2.CompleteVerificationResponse
        ] = identity.CompleteVerification
        self._sign_up: grpc.UnaryUnaryMultiCallable[
            account_pb2.SignUpRequest, account_pb2.SignUpResponse
        ] = accounts.SignUp
        self._get_account: grpc.UnaryUnaryMultiCallable[
            account_pb2.GetAccountRequest, account_pb2.GetAccountResponse
        ] = accounts.GetAccount
        self._password_login: grpc.UnaryUnaryMultiCallable[
            auth_pb2.PasswordLoginRequest, auth_pb2.PasswordLoginResponse
        ] = auth.PasswordLogin
        self._refresh_session: grpc.UnaryUnaryMultiCallable[
            auth_pb2.RefreshSessionRequest, auth_pb2.RefreshSessionResponse
        ] = auth.RefreshSession
        self._introspect_token: grpc.UnaryUnaryMultiCallable[
            auth_pb2.IntrospectTokenRequest, auth_pb2.IntrospectTokenResponse
        ] = auth.IntrospectToken
        self.terms_version = terms_version
        self.timeout = timeout

    def verify(self, person: Person) -> identity_pb2.CompleteVerificationResponse:
        request = identity_pb2.CompleteVerificationRequest(
            verification_id=person.verification_id(next_attempt())
        )
        return self._complete_verification(request, timeout=self.timeout)

    def sign_up(
        self, verification_token: str, *, email: str, password: str
    ) -> account_pb2.SignUpResponse:
        request = account_pb2.SignUpRequest(
            idempotency_key=uuid.uuid4().hex,
            email=email,
            password=password,
            verification_token=verification_token,
            consents=common_pb2.Consents(
                terms_version=self.terms_version, privacy_policy_version=self.terms_version
            ),
        )
        return self._sign_up(request, timeout=self.timeout)

    def register(self, person: Person) -> Credentials:
        """CompleteVerification + SignUp of a new person; raises grpc.RpcError."""
        token = self.verify(person).verification_token
        email, password = new_email(), new_password()
        signed = self.sign_up(token, email=email, password=password)
        return Credentials(
            account_id=signed.account.id,
            email=email,
            password=password,
            access_token=signed.session.access_token,
            refresh_token=signed.session.refresh_token,
        )

    def login(self, creds: Credentials) -> None:
        request = auth_pb2.PasswordLoginRequest(email=creds.email, password=creds.password)
        creds.take(self._password_login(request, timeout=self.timeout).session)

    def refresh(self, creds: Credentials) -> None:
        request = auth_pb2.RefreshSessionRequest(refresh_token=creds.refresh_token)
        creds.take(self._refresh_session(request, timeout=self.timeout).session)

    def introspect(self, creds: Credentials) -> auth_pb2.IntrospectTokenResponse:
        request = auth_pb2.IntrospectTokenRequest(access_token=creds.access_token)
        return self._introspect_token(request, timeout=self.timeout)

    def get_account(self, creds: Credentials) -> account_pb2.GetAccountResponse:
        return self._get_account(
            account_pb2.GetAccountRequest(),
            timeout=self.timeout,
            metadata=(("authorization", f"Bearer {creds.access_token}"),),
        )


# -- a spawned server ------------------------------------------------------------------------
@dataclass(frozen=True)
class Argon2Config:
    time_cost: int
    memory_cost: int
    parallelism: int

    @classmethod
    def from_settings(cls) -> Argon2Config:
        """The service's configured parameters (IDSERVICE_ARGON2_* and ./.env, else defaults)."""
        from idservice.config import Settings

        s = Settings.from_env()
        return cls(s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism)


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a child started with this gets SIGTERM if we die (even by SIGKILL), not orphaned."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def set_deathsig() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_deathsig


class ServerProcess:
    """A server subprocess that prints its address on start; its output is drained into a tail.

    `ready` finds the address in a line of output: group 1 is the host, group 2 the port.
    """

    def __init__(
        self, argv: Sequence[str], *, ready: re.Pattern[str], env: Mapping[str, str], cwd: Path
    ) -> None:
        self._ready_pattern = ready
        self.tail: deque[str] = deque(maxlen=SERVER_LOG_TAIL_LINES)
        self.error_lines = 0
        self.address: str | None = None
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            # Only prctl(2) runs between fork and exec: no lock a thread could hold is needed.
            preexec_fn=_die_with_parent(),  # noqa: PLW1509
        )
        self._reader = threading.Thread(target=self._drain, name="server-log", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.tail.append(line)
            if " ERROR " in line:
                self.error_lines += 1
            if self.address is None:
                self.address = self.parse_address(line)
                if self.address is not None:
                    self._ready.set()
        self._ready.set()

    def parse_address(self, line: str) -> str | None:
        match = self._ready_pattern.search(line)
        return f"{match.group(1)}:{match.group(2)}" if match else None

    def wait_ready(self, timeout: float) -> str:
        self._ready.wait(timeout)
        if self.address is None:
            self.stop()
            log = "\n".join(self.tail)
            raise RuntimeError(f"server did not start within {timeout:.0f}s; its output:\n{log}")
        return self.address

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> int | None:
        """SIGTERM (the server drains), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_SECONDS)
        self._reader.join(5.0)
        return self.process.returncode


def service_env(database_url: str, var_dir: Path, argon2: Argon2Config | None) -> dict[str, str]:
    """A development configuration on a free loopback port; nothing inherited from IDSERVICE_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSERVICE_")}
    env.update(
        {
            "IDSERVICE_ENV": "development",
            "IDSERVICE_LISTEN": "127.0.0.1:0",
            "IDSERVICE_VAR_DIR": str(var_dir),
            "IDSERVICE_DATABASE_URL": database_url,
            "IDSERVICE_IDENTITY_PROVIDER": "sandbox",
            "IDSERVICE_LOG_LEVEL": "INFO",
            "IDSERVICE_SHUTDOWN_GRACE": SERVER_SHUTDOWN_GRACE,
        }
    )
    if argon2 is not None:
        env["IDSERVICE_ARGON2_TIME_COST"] = str(argon2.time_cost)
        env["IDSERVICE_ARGON2_MEMORY_COST"] = str(argon2.memory_cost)
        env["IDSERVICE_ARGON2_PARALLELISM"] = str(argon2.parallelism)
    return env


@contextlib.contextmanager
def spawned_service(
    database_url: str | None, *, argon2: Argon2Config | None
) -> Iterator[ServerProcess]:
    """Run `idservice serve` on 127.0.0.1 (port chosen by the OS) in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="idservice-load-") as tmp:
        var_dir = Path(tmp) / "var"
        var_dir.mkdir()  # the service creates only the default ./var; this one is named
        url = database_url or f"sqlite:///{var_dir / 'idservice.db'}"
        server = ServerProcess(
            [sys.executable, "-m", "idservice", "serve"],
            ready=_LISTENING,
            env=service_env(url, var_dir, argon2),
            cwd=Path(tmp),
        )
        try:
            server.wait_ready(STARTUP_TIMEOUT_SECONDS)
            yield server
        finally:
            server.stop()


def open_channel(address: str, timeout: float) -> grpc.Channel:
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        raise RuntimeError(f"cannot connect to {address} within {timeout:.0f}s") from None
    return channel


# -- the load test ---------------------------------------------------------------------------
def parse_mix(text: str) -> dict[str, float]:
    """`signup=2,login=1,...`: weights for the operations (missing ones weigh 0)."""
    mix = dict.fromkeys(OPERATIONS, 0.0)
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, weight = item.partition("=")
        name = name.strip()
        if not sep or name not in mix:
            raise argparse.ArgumentTypeError(
                f"expected op=weight with op one of {', '.join(OPERATIONS)}"
            )
        try:
            value = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"weight of {name} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"weight of {name} must be a non-negative number")
        mix[name] = value
    if sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("give at least one operation a positive weight")
    return mix


@dataclass
class Tally:
    """What one worker saw; merged into the report at the end."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    expected: set[tuple[str, str, str]] = field(default_factory=set)
    anomalies: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)

    def ok(self, op: str, seconds: float) -> None:
        self.latencies.setdefault(op, []).append(seconds)

    def merge(self, other: Tally) -> None:
        for op, values in other.latencies.items():
            self.latencies.setdefault(op, []).extend(values)
        self.errors.update(other.errors)
        self.expected |= other.expected
        self.anomalies.update(other.anomalies)
        self.duplicates.update(other.duplicates)


class Registry:
    """People whose sign-up succeeded: the pool duplicates are drawn from."""

    def __init__(self) -> None:
        self._people: list[Person] = []
        self._lock = threading.Lock()

    def add(self, person: Person) -> None:
        with self._lock:
            if len(self._people) < MAX_REGISTERED_PEOPLE:
                self._people.append(person)

    def pick(self, rng: random.Random) -> Person | None:
        with self._lock:
            return rng.choice(self._people) if self._people else None


class Worker:
    """A closed loop of operations drawn from the mix until the deadline."""

    def __init__(
        self,
        client: IdClient,
        *,
        mix: Mapping[str, float],
        duplicate_rate: float,
        registry: Registry,
        rng: random.Random,
        deadline: float,
        stop: threading.Event,
    ) -> None:
        self.client = client
        self.ops = [op for op in OPERATIONS if mix[op] > 0]
        self.weights = [mix[op] for op in self.ops]
        self.duplicate_rate = duplicate_rate
        self.registry = registry
        self.rng = rng
        self.deadline = deadline
        self.stop = stop
        self.accounts: list[Credentials] = []
        self.tally = Tally()

    def run(self) -> None:
        # At least one operation, however late the thread starts; then until the deadline.
        while True:
            self.step()
            if time.monotonic() >= self.deadline or self.stop.is_set():
                return

    def step(self) -> None:
        op = self.rng.choices(self.ops, self.weights)[0]
        if op == "signup" or not self.accounts:
            self.signup()
            return
        creds = self.rng.choice(self.accounts)
        if op in {"introspect", "get_account"} and (
            time.monotonic() - creds.issued_at > ACCESS_TOKEN_REFRESH_AFTER_SECONDS
        ):
            op = "refresh"
        getattr(self, op)(creds)

    def call(
        self, op: str, fn: Callable[[], T], *, expect: tuple[str, str] | None = None
    ) -> tuple[T | None, tuple[str, str] | None]:
        """Time one call; an expected refusal counts as a served request."""
        started = time.perf_counter()
        try:
            result = fn()
        except grpc.RpcError as error:
            elapsed = time.perf_counter() - started
            key = error_key(error)
            self.tally.errors[(op, *key)] += 1
            if key == expect:
                self.tally.expected.add((op, *key))
                self.tally.ok(op, elapsed)
            return None, key
        self.tally.ok(op, time.perf_counter() - started)
        return result, None

    def signup(self) -> None:
        if self.rng.random() < self.duplicate_rate:
            person = self.registry.pick(self.rng)
            if person is not None:
                self.signup_duplicate(person)
                return
        person = new_person(self.rng)
        verified, _ = self.call("verify", lambda: self.client.verify(person))
        if verified is None:
            return
        email, password = new_email(), new_password()
        signed, _ = self.call(
            "signup",
            lambda: self.client.sign_up(
                verified.verification_token, email=email, password=password
            ),
        )
        if signed is None:
            return
        self.registry.add(person)
        creds = Credentials(
            account_id=signed.account.id,
            email=email,
            password=password,
            access_token=signed.session.access_token,
            refresh_token=signed.session.refresh_token,
        )
        self.accounts.append(creds)
        if len(self.accounts) > MAX_ACCOUNTS_PER_WORKER:
            self.accounts.pop(0)

    def signup_duplicate(self, person: Person) -> None:
        """Verify an already registered person again and try to sign them up a second time."""
        self.tally.duplicates["attempted"] += 1
        verified, _ = self.call("verify_duplicate", lambda: self.client.verify(person))
        if verified is None:
            return
        if verified.duplicate.exists:
            self.tally.duplicates["flagged_by_verification"] += 1
        else:
            self.tally.anomalies["duplicate_not_flagged_by_verification"] += 1
        signed, key = self.call(
            "signup_duplicate",
            lambda: self.client.sign_up(
                verified.verification_token, email=new_email(), password=new_password()
            ),
            expect=DUPLICATE_REFUSAL,
        )
        if signed is not None:
            self.tally.duplicates["accepted"] += 1
            self.tally.anomalies["duplicate_person_signed_up"] += 1
        elif key == DUPLICATE_REFUSAL:
            self.tally.duplicates["refused"] += 1

    def login(self, creds: Credentials) -> None:
        self.call("login", lambda: self.client.login(creds))

    def refresh(self, creds: Credentials) -> None:
        _, key = self.call("refresh", lambda: self.client.refresh(creds))
        if key is not None:
            # The chain is broken (or the server is unwell): stop using this account.
            self.accounts.remove(creds)

    def introspect(self, creds: Credentials) -> None:
        answer, _ = self.call("introspect", lambda: self.client.introspect(creds))
        if answer is not None and (not answer.active or answer.account_id != creds.account_id):
            self.tally.anomalies["fresh_access_token_not_active"] += 1

    def get_account(self, creds: Credentials) -> None:
        answer, _ = self.call("get_account", lambda: self.client.get_account(creds))
        if answer is not None and answer.account.id != creds.account_id:
            self.tally.anomalies["get_account_answered_another_account"] += 1


def run_load(
    address: str,
    *,
    concurrency: int,
    duration: float,
    mix: Mapping[str, float],
    duplicate_rate: float,
    rpc_timeout: float,
    terms_version: str,
    seed: int | None,
) -> tuple[Tally, float]:
    """Run the workers against `address`; returns their merged tally and the elapsed seconds."""
    channel = open_channel(address, rpc_timeout)
    stop = threading.Event()
    registry = Registry()
    master = random.Random(seed)
    try:
        client = IdClient(channel, terms_version=terms_version, timeout=rpc_timeout)
        started = time.monotonic()
        workers = [
            Worker(
                client,
                mix=mix,
                duplicate_rate=duplicate_rate,
                registry=registry,
                rng=random.Random(master.getrandbits(64)),
                deadline=started + duration,
                stop=stop,
            )
            for _ in range(concurrency)
        ]
        threads = [
            threading.Thread(target=w.run, name=f"load-{i}", daemon=True)
            for i, w in enumerate(workers)
        ]
        for thread in threads:
            thread.start()
        try:
            # Each worker finishes its last call by the deadline plus one RPC timeout at most.
            bound = started + duration + rpc_timeout * 3 + 5.0
            for thread in threads:
                thread.join(max(0.0, bound - time.monotonic()))
        finally:
            stop.set()
        elapsed = time.monotonic() - started
        if duplicate_rate > 0 and not any(w.tally.duplicates["attempted"] for w in workers):
            # A short run may end before any duplicate was drawn: probe once, so a run that asks
            # for duplicate detection always exercises it.
            person = registry.pick(master)
            if person is not None:
                probe = Worker(
                    client,
                    mix=mix,
                    duplicate_rate=duplicate_rate,
                    registry=registry,
                    rng=random.Random(master.getrandbits(64)),
                    deadline=0.0,
                    stop=stop,
                )
                probe.signup_duplicate(person)
                workers.append(probe)
    finally:
        channel.close()
    tally = Tally()
    for worker in workers:
        tally.merge(worker.tally)
    return tally, elapsed


def build_report(
    tally: Tally, elapsed: float, *, config: Mapping[str, Any], server_errors: int | None
) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    all_latencies: list[float] = []
    names = sorted(
        {*tally.latencies, *(op for op, _, _ in tally.errors)},
        key=lambda n: (n.replace("_duplicate", ""), n),
    )
    for name in names:
        values = tally.latencies.get(name, [])
        all_latencies.extend(values)
        summary = latency_summary(values, elapsed)
        summary["errors"] = sum(
            n for key, n in tally.errors.items() if key[0] == name and key not in tally.expected
        )
        operations[name] = summary
    total = latency_summary(all_latencies, elapsed)
    total["errors"] = sum(n for key, n in tally.errors.items() if key not in tally.expected)
    errors = [
        {
            "operation": op,
            "code": code,
            "reason": reason,
            "count": count,
            "expected": (op, code, reason) in tally.expected,
        }
        for (op, code, reason), count in sorted(tally.errors.items())
    ]
    internal = sum(n for (_, code, _), n in tally.errors.items() if code in FAILURE_CODES)
    failures: list[str] = []
    if internal:
        failures.append(f"{internal} INTERNAL/UNKNOWN status(es): a server bug (contract §3)")
    for anomaly, count in sorted(tally.anomalies.items()):
        failures.append(f"{count} x {anomaly}")
    return {
        "config": dict(config),
        "elapsed_s": round(elapsed, 3),
        "operations": operations,
        "total": total,
        "errors": errors,
        "internal_errors": internal,
        "duplicates": {
            key: tally.duplicates.get(key, 0)
            for key in ("attempted", "flagged_by_verification", "refused", "accepted")
        },
        "server_error_lines": server_errors,
        "failures": failures,
        "passed": not failures,
    }


def print_report(report: Mapping[str, Any]) -> None:
    c = report["config"]
    print(
        f"loadtest: {c['concurrency']} workers, {report['elapsed_s']:.1f} s, target "
        f"{c['target']} ({'spawned, ' + c['database'] if c['spawned'] else 'external'}), "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"load average (1 min) before/after: {fmt(c['load_average_before'], 2)}/"
        f"{fmt(c['load_average_after'], 2)}"
    )
    mix = ", ".join(f"{op}={w:g}" for op, w in c["mix"].items())
    print(f"mix: {mix}; duplicate people: {c['duplicate_rate']:.0%} of sign-ups")
    print()
    header = f"{'operation':<18}{'ok':>8}{'errors':>8}{'req/s':>10}{'p50 ms':>10}"
    print(f"{header}{'p95 ms':>10}{'p99 ms':>10}")
    rows = [*report["operations"].items(), ("total", report["total"])]
    for name, s in rows:
        print(
            f"{name:<18}{s['ok']:>8}{s['errors']:>8}{fmt(s['req_per_s']):>10}"
            f"{fmt(s['p50_ms'], 2):>10}{fmt(s['p95_ms'], 2):>10}{fmt(s['p99_ms'], 2):>10}"
        )
    print()
    print("errors by code and reason:")
    if not report["errors"]:
        print("  none")
    for e in report["errors"]:
        note = "  (expected)" if e["expected"] else ""
        print(f"  {e['operation']:<18}{e['code']:<20}{e['reason']:<30}{e['count']:>7}{note}")
    d = report["duplicates"]
    print(
        f"duplicates: attempted {d['attempted']}, flagged by verification "
        f"{d['flagged_by_verification']}, refused {d['refused']}, accepted {d['accepted']}"
    )
    print(f"INTERNAL/UNKNOWN: {report['internal_errors']}")
    if report["server_error_lines"] is not None:
        print(f"ERROR lines in the spawned server's log: {report['server_error_lines']}")
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
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", help="host:port of a running idservice (loopback)")
    where.add_argument("--spawn", action="store_true", help="start `idservice serve` for the run")
    parser.add_argument(
        "--database-url",
        type=check_database_url,
        help="with --spawn: the database (default: SQLite in a temporary directory)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of traffic")
    parser.add_argument("--concurrency", type=int, default=8, help="worker threads")
    parser.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX))
    parser.add_argument(
        "--duplicate-rate",
        type=float,
        default=0.1,
        help="share of sign-ups that repeat an already registered person (0..1)",
    )
    parser.add_argument("--rpc-timeout", type=float, default=10.0, help="deadline of each call")
    parser.add_argument("--terms-version", default=DEFAULT_TERMS_VERSION)
    parser.add_argument("--seed", type=int, help="seed of the traffic shape (reproducible mix)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --target that is not a loopback address (a staging deployment)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 3600:
        parser.error("--duration must be in (0, 3600] seconds")
    if not 1 <= args.concurrency <= 512:
        parser.error("--concurrency must be between 1 and 512")
    if not 0 <= args.duplicate_rate <= 1:
        parser.error("--duplicate-rate must be between 0 and 1")
    if not 0 < args.rpc_timeout <= 120:
        parser.error("--rpc-timeout must be in (0, 120] seconds")
    if args.database_url and not args.spawn:
        parser.error("--database-url goes with --spawn")
    if args.target:
        try:
            host, _port = parse_hostport(args.target)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"--target: {exc}")
        if not is_loopback_host(host) and not args.allow_remote:
            parser.error("--target is not a loopback address (pass --allow-remote to mean it)")

    def run(address: str, server: ServerProcess | None) -> dict[str, Any]:
        load_before = load_average()
        tally, elapsed = run_load(
            address,
            concurrency=args.concurrency,
            duration=args.duration,
            mix=args.mix,
            duplicate_rate=args.duplicate_rate,
            rpc_timeout=args.rpc_timeout,
            terms_version=args.terms_version,
            seed=args.seed,
        )
        config = {
            "target": address,
            "spawned": server is not None,
            "database": database_kind(args.database_url) if server else "external",
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "mix": args.mix,
            "duplicate_rate": args.duplicate_rate,
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        }
        return build_report(
            tally,
            elapsed,
            config=config,
            server_errors=server.error_lines if server else None,
        )

    try:
        argon2 = Argon2Config.from_settings() if args.spawn else None
    except ValueError as exc:  # ConfigError names the variable
        print(f"loadtest: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.spawn:
            with spawned_service(args.database_url, argon2=argon2) as srv:
                assert srv.address is not None
                report = run(srv.address, srv)
                if srv.error_lines:
                    print("spawned server log (tail):", file=sys.stderr)
                    print("\n".join(srv.tail), file=sys.stderr)
        else:
            report = run(args.target, None)
    except RuntimeError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("loadtest: interrupted", file=sys.stderr)
        return 130
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
