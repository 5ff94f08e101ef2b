"""What the load test (scripts/locustfile.py, scripts/loadtest), scripts/demo,
scripts/benchmark.py and scripts/statement_counts.py share.

- addresses: loopback checks of targets and database URLs;
- errors: a failed call's status code and ErrorInfo reason;
- sandbox people: `sandbox:<name>:<birth date>:<phone>:<seed>:<attempt>`, a new person per seed;
- a typed client over the generated idservice.v1 stubs;
- the load test's failure rules, as functions of real answers and real errors;
- a spawned `idservice serve` in a temporary directory (SQLite unless a URL is given), and a
  channel to it.

Nothing here imports Locust (which patches the standard library with gevent on import), so the
command, the demo and the tests can use it as they are.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import json
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
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2
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

# The terms a spawned server (default configuration) asks SignUp to accept.
DEFAULT_TERMS_VERSION = "2024-05-15"
# Contract §3: INTERNAL is a bug; UNKNOWN is what grpc answers for an exception that escaped.
FAILURE_CODES = frozenset({"INTERNAL", "UNKNOWN"})
# What SignUp must answer for an already registered person (contract §3).
DUPLICATE_REFUSAL = ("ALREADY_EXISTS", "IDENTITY_ALREADY_REGISTERED")
# How an overloaded server is meant to answer: reported, never a failure of the run.
OVERLOAD_CODES = frozenset({"RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"})
TOLERATED_CODES = OVERLOAD_CODES
# Adults only, so no sign-up needs a guardian (korea-rules: 만 14 / 만 19).
BIRTH_YEARS = (1960, 2000)
ADULT_AGE = 19
NAMES = ("김민준", "이서연", "박지후", "최하은", "정도윤", "강수아", "조예준", "윤지아")
# A spawned server gets this long to migrate and bind, and this long to drain when stopped.
STARTUP_TIMEOUT_SECONDS = 60.0
SERVER_SHUTDOWN_GRACE = "2s"
STOP_TIMEOUT_SECONDS = 15.0
LISTENING = re.compile(r"idservice listening on (\S+):(\d+)")
SERVER_LOG_TAIL_LINES = 200
# ERROR lines of a spawned server's log kept for reports (the log carries no personal data).
SERVER_ERRORS_KEPT = 3
SERVER_ERROR_CHARS = 400


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


def target_refusal(target: str, *, allow_remote: bool) -> str | None:
    """Why `target` may not be loaded, or None: host:port, on loopback unless allowed."""
    try:
        host, _port = parse_hostport(target)
    except argparse.ArgumentTypeError as exc:
        return f"{target!r}: {exc}"
    if not is_loopback_host(host) and not allow_remote:
        return f"{target} is not a loopback address (pass --allow-remote for a sandbox deployment)"
    return None


# libpq's environment variables that say where to connect: a spawned server gets none of them,
# so only its URL decides (and check_database_url has checked that).
LIBPQ_LOCATION_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR")


def database_hosts(url: str) -> list[str]:
    """Where libpq would connect for a PostgreSQL URL: each entry of its `host` and `hostaddr`
    lists, as the driver receives them (a directory is a Unix socket's, "" libpq's default
    socket). ValueError for a URL that names a service (a file decides where it goes)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    _args, kwargs = parsed.get_dialect()().create_connect_args(parsed)
    if "service" in kwargs:
        raise ValueError("a service name leaves the address to a file")
    hosts: list[str] = []
    for key in ("host", "hostaddr"):
        value = kwargs.get(key)
        if value is not None:
            hosts += [entry.strip() for entry in str(value).split(",")]
    return hosts


def is_local_database_host(host: str) -> bool:
    """A Unix socket's directory, libpq's default socket (""), or a loopback address."""
    return host == "" or host.startswith("/") or is_loopback_host(host)


def check_database_url(url: str) -> str:
    """A sqlite URL, or a PostgreSQL URL on loopback or a local socket (load never leaves this
    machine)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise argparse.ArgumentTypeError("not a SQLAlchemy database URL") from None
    backend = parsed.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise argparse.ArgumentTypeError("expected a sqlite:// or postgresql+psycopg:// URL")
    database = parsed.database or ""
    if (
        backend == "sqlite"
        and database
        and database != ":memory:"
        # A URI filename's path is checked too (`file:keep.db?uri=true`).
        and not Path(database.removeprefix("file:").partition("?")[0]).is_absolute()
    ):
        # The server runs in a temporary directory, deleted after the run: a relative path
        # would be a database there, gone with it.
        raise argparse.ArgumentTypeError("a SQLite file needs an absolute path (sqlite:////…)")
    if backend == "postgresql":
        try:
            hosts = database_hosts(url)
        except (ArgumentError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"not a usable database URL: {exc}") from None
        if not all(is_local_database_host(host) for host in hosts):
            raise argparse.ArgumentTypeError(
                "the database must be on a loopback address or a local socket"
            )
    return url


# -- errors ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErrorAnswer:
    """A failed call: status code name, ErrorInfo reason ("-" when none) and metadata."""

    code: str
    reason: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.code, self.reason)


def read_error(error: grpc.RpcError) -> ErrorAnswer:
    """What a failed call answered (contract §3: a status code and an ErrorInfo reason)."""
    if not isinstance(error, grpc.Call):
        return ErrorAnswer("UNKNOWN", "-")
    code = error.code()
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    reason, metadata = "-", {}
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = str(info.reason) or "-"
            metadata = dict(info.metadata)
    return ErrorAnswer(name, reason, metadata)


def error_key(error: grpc.RpcError) -> tuple[str, str]:
    """(status code name, ErrorInfo reason) of a failed call; reason "-" when there is none."""
    return read_error(error).key


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
    """A new adult (fresh seed: new CI/DI) with a valid mobile number.

    The seed is a UUID with its hyphens: the service refuses anything shaped like a resident
    registration number in the id, which a bare 32-hex seed can be.
    """
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


def age_on(birth: date, day: date) -> int:
    """만 나이 on `day` (korea-rules.md Age 1-2), computed apart from the service's own code.

    Born 29 February: (2, 28) sorts before (2, 29), so the year is gained on 1 March in a
    non-leap year, as the rules say.
    """
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


# -- client ----------------------------------------------------------------------------------
# The part of an access token's lifetime used before it is refreshed.
REFRESH_AT_FRACTION = 0.5


def token_lifetime(access_token: str) -> float | None:
    """Seconds from a JWT's `iat` to its `exp` (read, not verified: the server checks it), or
    None when the token is not a JWT with both."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        issued, expires = claims["iat"], claims["exp"]
    except (IndexError, ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (issued, expires)):
        return None
    return float(expires - issued)


@dataclass
class Credentials:
    """One signed-up account, the person behind it and its latest session."""

    account_id: str
    email: str
    password: str
    access_token: str
    refresh_token: str
    person: Person | None = None
    # When (time.monotonic()) the access token is half spent and should be refreshed.
    refresh_due: float = field(default_factory=time.monotonic)

    @classmethod
    def of(
        cls,
        account_id: str,
        email: str,
        password: str,
        session: common_pb2.Session,
        person: Person | None = None,
    ) -> Credentials:
        """The credentials of a new session (SignUp's), refresh due by its token's lifetime."""
        creds = cls(account_id, email, password, "", "", person)
        creds.take(session)
        return creds

    @property
    def birth_date(self) -> str:
        """The person's birth date (accounts opened by `IdClient.register` know their person)."""
        if self.person is None:
            raise ValueError("these credentials do not name their person")
        return self.person.birth_date

    def take(self, session: common_pb2.Session) -> None:
        """Keep a session's tokens; the access token is refreshed once half its lifetime (as
        the server gave it: `IDSERVICE_ACCESS_TOKEN_TTL`, at most 15 minutes) has passed."""
        self.access_token = session.access_token
        self.refresh_token = session.refresh_token
        # The JWT's exp - iat, both by the server's clock: a load machine whose clock is off
        # still refreshes half way. Else the expiry against this machine's clock.
        left = token_lifetime(session.access_token)
        if left is None:
            expires = session.access_token_expires_at.ToDatetime(tzinfo=UTC)
            left = (expires - datetime.now(UTC)).total_seconds()
        self.refresh_due = time.monotonic() + max(0.0, left) * REFRESH_AT_FRACTION


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
        self._check_age: grpc.UnaryUnaryMultiCallable[
            identity_pb2.CheckAgeRequest, identity_pb2.CheckAgeResponse
        ] = identity.CheckAge
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
        self._logout: grpc.UnaryUnaryMultiCallable[
            auth_pb2.LogoutRequest, auth_pb2.LogoutResponse
        ] = auth.Logout
        self._introspect_token: grpc.UnaryUnaryMultiCallable[
            auth_pb2.IntrospectTokenRequest, auth_pb2.IntrospectTokenResponse
        ] = auth.IntrospectToken
        self.terms_version = terms_version
        self.timeout = timeout

    def verify(
        self, person: Person, attempt: int | None = None
    ) -> identity_pb2.CompleteVerificationResponse:
        request = identity_pb2.CompleteVerificationRequest(
            verification_id=person.verification_id(attempt or next_attempt())
        )
        return self._complete_verification(request, timeout=self.timeout)

    def sign_up(
        self, verification_token: str, *, email: str, password: str
    ) -> account_pb2.SignUpResponse:
        request = account_pb2.SignUpRequest(
            idempotency_key=str(uuid.uuid4()),
            email=email,
            password=password,
            verification_token=verification_token,
            consents=common_pb2.Consents(
                terms_version=self.terms_version, privacy_policy_version=self.terms_version
            ),
        )
        return self._sign_up(request, timeout=self.timeout)

    def register(self, person: Person, verification_token: str | None = None) -> Credentials:
        """SignUp of `person` with a new email and password, after CompleteVerification unless
        its token is given: the new account's credentials. Raises grpc.RpcError."""
        token = verification_token or self.verify(person).verification_token
        email, password = new_email(), new_password()
        signed = self.sign_up(token, email=email, password=password)
        return Credentials.of(signed.account.id, email, password, signed.session, person)

    def login(self, email: str, password: str) -> auth_pb2.PasswordLoginResponse:
        request = auth_pb2.PasswordLoginRequest(email=email, password=password)
        return self._password_login(request, timeout=self.timeout)

    def refresh(self, refresh_token: str) -> auth_pb2.RefreshSessionResponse:
        request = auth_pb2.RefreshSessionRequest(refresh_token=refresh_token)
        return self._refresh_session(request, timeout=self.timeout)

    def logout(self, refresh_token: str) -> auth_pb2.LogoutResponse:
        request = auth_pb2.LogoutRequest(refresh_token=refresh_token)
        return self._logout(request, timeout=self.timeout)

    def introspect(self, access_token: str) -> auth_pb2.IntrospectTokenResponse:
        request = auth_pb2.IntrospectTokenRequest(access_token=access_token)
        return self._introspect_token(request, timeout=self.timeout)

    def get_account(self, access_token: str) -> account_pb2.GetAccountResponse:
        return self._get_account(
            account_pb2.GetAccountRequest(),
            timeout=self.timeout,
            metadata=bearer(access_token),
        )

    def check_age(self, access_token: str, *, as_of: date) -> identity_pb2.CheckAgeResponse:
        """The caller's own account against 민법 성년 (만 19) on `as_of`."""
        request = identity_pb2.CheckAgeRequest(
            account=empty_pb2.Empty(),
            policy=identity_pb2.AGE_POLICY_KR_ADULT,
            as_of=as_of.isoformat(),
        )
        return self._check_age(request, timeout=self.timeout, metadata=bearer(access_token))


def bearer(access_token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {access_token}"),)


# -- the load test's failure rules -----------------------------------------------------------
# Each rule answers why a call fails the run, or None. A refusal that is not a failure is
# reported (by code and reason) and counted, but the run still passes.
class WrongAnswer(Exception):
    """A call succeeded with an answer the contract rules out."""


def require(failure: str | None) -> None:
    """Raise WrongAnswer with a rule's verdict, if it has one."""
    if failure is not None:
        raise WrongAnswer(failure)


def error_failure(error: grpc.RpcError) -> str | None:
    """INTERNAL and UNKNOWN fail (contract §3: a bug); overload's refusals are only reported
    (`TOLERATED_CODES`). Any other refusal fails too: nothing in the load's mix should get one,
    so it means a server gone (UNAVAILABLE), a misconfigured run (TERMS_VERSION_MISMATCH) or a
    wrong answer (a live token refused). The expected refusal of a repeated person is judged
    by its task (`duplicate_signup_failure`)."""
    answer = read_error(error)
    if answer.code in FAILURE_CODES:
        return f"{answer.code} {answer.reason}: a server bug (contract §3)"
    if answer.code in TOLERATED_CODES:
        return None
    return f"{answer.code} {answer.reason}: a refusal the load's calls should never get"


def new_person_verification_failure(
    response: identity_pb2.CompleteVerificationResponse,
) -> str | None:
    """A new person (a seed never seen) must not be flagged as holding an account."""
    if response.duplicate.exists:
        return "a new person's verification was flagged duplicate.exists"
    return None


def duplicate_verification_failure(
    response: identity_pb2.CompleteVerificationResponse,
) -> str | None:
    """A registered person verified again must come back with duplicate.exists."""
    if not response.duplicate.exists:
        return "a registered person's verification did not flag duplicate.exists"
    return None


def duplicate_signup_failure(
    response: account_pb2.SignUpResponse | None, error: grpc.RpcError | None
) -> str | None:
    """A registered person's second SignUp must be refused IDENTITY_ALREADY_REGISTERED."""
    if error is None:
        return "a registered person signed up a second time"
    if error_key(error) == DUPLICATE_REFUSAL:
        return None
    return error_failure(error)


def introspection_failure(
    response: auth_pb2.IntrospectTokenResponse, account_id: str
) -> str | None:
    """A fresh access token must introspect active, as its own account."""
    if not response.active:
        return "a fresh access token introspected inactive"
    if response.account_id != account_id:
        return "a fresh access token introspected as another account"
    return None


def get_account_failure(response: account_pb2.GetAccountResponse, account_id: str) -> str | None:
    """GetAccount answers the account of the bearer token, no other."""
    if response.account.id != account_id:
        return "GetAccount answered with another account"
    return None


def check_age_failure(
    response: identity_pb2.CheckAgeResponse, birth_date: str, as_of: date
) -> str | None:
    """CheckAge (민법 성년) must give the person's 만 나이 on `as_of` and the gate it implies."""
    expected = age_on(date.fromisoformat(birth_date), as_of)
    if response.age != expected:
        return f"CheckAge answered age {response.age} where 만 나이 is {expected}"
    if response.allowed != (expected >= ADULT_AGE):
        return f"CheckAge answered allowed={response.allowed} for age {expected} (성년 is 19)"
    return None


def refusal_label(error: grpc.RpcError) -> str:
    """How a refusal is named in reports: "CODE REASON"."""
    answer = read_error(error)
    return f"{answer.code} {answer.reason}"


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


# Runs in the child, which sets its parent-death signal itself and then becomes the command:
# no Python code runs between fork and exec in the parent's image (a `preexec_fn` would, with
# every at-fork hook of the parent's libraries, which can deadlock a threaded parent; grpc's
# did). prctl(PR_SET_PDEATHSIG) survives the exec. A parent already gone exits at once.
_PARENT_DEATH_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def dying_with_parent(argv: Sequence[str]) -> list[str]:
    """Linux: `argv` run so that it gets SIGTERM if we die (even by SIGKILL), not orphaned."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-c", _PARENT_DEATH_LAUNCHER, str(os.getpid()), *argv]


# How long a server whose output ended is given to exit before it is called still starting.
EXIT_NOTICE_SECONDS = 2.0


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
        self.first_errors: list[str] = []
        self.address: str | None = None
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            dying_with_parent(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._reader = threading.Thread(target=self._drain, name="server-log", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.tail.append(line)
            if '"level": "error"' in line or " ERROR " in line:
                self.error_lines += 1
                if len(self.first_errors) < SERVER_ERRORS_KEPT:
                    self.first_errors.append(line[:SERVER_ERROR_CHARS])
            if self.address is None:
                match = self._ready_pattern.search(line)
                if match:
                    self.address = f"{match.group(1)}:{match.group(2)}"
                    self._ready.set()
        self._ready.set()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float) -> str:
        self._ready.wait(timeout)
        if self.address is None:
            try:  # its output ended: it may be exiting, not yet reaped
                exited: int | None = self.process.wait(timeout=EXIT_NOTICE_SECONDS)
            except subprocess.TimeoutExpired:
                exited = None
            self.stop()
            log = "\n".join(self.tail)
            what = (
                f"exited with code {exited} before it started"
                if exited is not None
                else f"did not start within {timeout:.0f}s"
            )
            raise RuntimeError(f"server {what}; its output:\n{log}")
        return self.address

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


def service_env(
    database_url: str,
    var_dir: Path,
    argon2: Argon2Config | None,
    processes: str | None = None,
) -> dict[str, str]:
    """A development configuration on a free loopback port; nothing inherited from IDSERVICE_*.

    `processes` (IDSERVICE_PROCESSES) is left to the configuration's default when None.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("IDSERVICE_") and k not in LIBPQ_LOCATION_VARIABLES
    }
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
    if processes is not None:
        env["IDSERVICE_PROCESSES"] = processes
    if argon2 is not None:
        env["IDSERVICE_ARGON2_TIME_COST"] = str(argon2.time_cost)
        env["IDSERVICE_ARGON2_MEMORY_COST"] = str(argon2.memory_cost)
        env["IDSERVICE_ARGON2_PARALLELISM"] = str(argon2.parallelism)
    return env


@contextlib.contextmanager
def spawned_service(
    database_url: str | None,
    *,
    argon2: Argon2Config | None,
    processes: str | None = None,
    prefix: str = "idservice-load-",
) -> Iterator[ServerProcess]:
    """Run `idservice serve` on 127.0.0.1 (port chosen by the OS) in a temporary directory.

    The directory's name starts with `prefix`; `processes` is as for `service_env`.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        var_dir = Path(tmp) / "var"
        var_dir.mkdir()  # the service creates only the default ./var; this one is named
        url = database_url or f"sqlite:///{var_dir / 'idservice.db'}"
        server = ServerProcess(
            [sys.executable, "-m", "idservice", "serve"],
            ready=LISTENING,
            env=service_env(url, var_dir, argon2, processes),
            cwd=Path(tmp),
        )
        try:
            server.wait_ready(STARTUP_TIMEOUT_SECONDS)
            yield server
        finally:
            server.stop()


def open_channel(address: str, timeout: float, *, own_connection: bool = False) -> grpc.Channel:
    """A channel to `address`, connected within `timeout` seconds (else RuntimeError)."""
    # A local subchannel pool gives this channel its own TCP connection.
    options = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
    channel = grpc.insecure_channel(address, options=options)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        raise RuntimeError(f"cannot connect to {address} within {timeout:.0f}s") from None
    return channel
