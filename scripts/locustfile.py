"""Locust load test of idservice over gRPC (docs/loadtest.md).

Each simulated user signs up a new sandbox person (CompleteVerification + SignUp), then runs a
weighted mix of tasks on its accounts: sign-ups, PasswordLogin, RefreshSession,
IntrospectToken, GetAccount and CheckAge. A share of sign-ups (`--duplicate-rate`) repeats a
person already registered, with a new verification attempt: CompleteVerification must flag
`duplicate.exists` and SignUp must be refused `ALREADY_EXISTS IDENTITY_ALREADY_REGISTERED`.

Every call goes through a grpc client interceptor that fires Locust's `request` event, so the
statistics, the CSV files, the HTML report, the web UI and distributed runs are Locust's own.
A request **fails** on INTERNAL or UNKNOWN, on an accepted or unflagged duplicate, and on a wrong
answer (a fresh access token introspecting inactive or as another account, GetAccount answering
another account, CheckAge's 만 나이 wrong for the person's birth date, a new person flagged as a
duplicate), and on any refusal but overload's: `RESOURCE_EXHAUSTED` and `DEADLINE_EXCEEDED`
and the expected refusal of duplicates are reported as rows of their own (their type is the
status code and reason) and do not fail the run.

    .venv/bin/locust -f scripts/locustfile.py --host 127.0.0.1:50051
    .venv/bin/locust -f scripts/locustfile.py --host 127.0.0.1:50051 --headless -u 8 -t 30s

`--host` is the gRPC target host:port; it must be a loopback address unless `--allow-remote`
is given (a sandbox deployment: the sandbox provider is refused in production).
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

if __package__ in {None, ""}:
    # Loaded by Locust as a file: make the repository root importable so the shared code
    # resolves as scripts.harness, the same name mypy and the tests use.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gevent  # type: ignore[import-untyped]
import grpc
import grpc.experimental.gevent as grpc_gevent  # type: ignore[import-not-found]
from locust import User, constant, events, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC, update_stats_history

from scripts.harness import (
    DEFAULT_TERMS_VERSION,
    Credentials,
    IdClient,
    Person,
    check_age_failure,
    duplicate_signup_failure,
    duplicate_verification_failure,
    error_failure,
    get_account_failure,
    introspection_failure,
    new_email,
    new_password,
    new_person,
    new_person_verification_failure,
    refusal_label,
    target_refusal,
)

# grpc's own threads would not cooperate with gevent's greenlets (Locust's gRPC example).
grpc_gevent.init_gevent()
# grpc's gevent mode waits for each call's answer on a thread of the hub's pool, 10 threads by
# default: with more calls in flight than that (10 users in a password call), every other
# call's latency would include the wait for a free thread, not the server's answer. Threads are
# started only as calls need them.
HUB_THREADS = 1024
gevent.get_hub().threadpool.maxsize = HUB_THREADS

R = TypeVar("R")
# A check of one call: (response, error) -> why the request fails, or None.
Judge = Callable[[Any, grpc.RpcError | None], str | None]

LOG = logging.getLogger("idservice.loadtest")
# The type of the rows of calls answered OK; refusals carry "<CODE> <REASON>" instead.
REQUEST_TYPE = "gRPC"
DUPLICATE = " (duplicate)"
SEOUL = ZoneInfo("Asia/Seoul")
# Accounts a user keeps for its login/refresh/introspect traffic (bounds memory in long runs).
MAX_ACCOUNTS_PER_USER = 32
# The people duplicates are drawn from, per Locust process (bounded the same way).
MAX_REGISTERED_PEOPLE = 10_000


if TYPE_CHECKING:  # generic in grpc-stubs only
    _UnaryUnaryClientInterceptor = grpc.UnaryUnaryClientInterceptor[Any, Any]
else:
    _UnaryUnaryClientInterceptor = grpc.UnaryUnaryClientInterceptor


class WrongAnswer(Exception):
    """Why a request failed: a bug status, or an answer the contract rules out."""


# -- the interceptor -------------------------------------------------------------------------
@dataclass
class Outcome:
    """One call as the interceptor saw it, held until the task has judged the answer."""

    name: str
    start_time: float
    response_time_ms: float
    response_length: int
    error: grpc.RpcError | None


class Verdict:
    """The task's judgement of the calls made inside `LocustInterceptor.judged`."""

    def __init__(self) -> None:
        self.judged = False
        self.failure: str | None = None

    def judge(self, failure: str | None) -> None:
        self.judged = True
        self.failure = failure


class LocustInterceptor(_UnaryUnaryClientInterceptor):
    """Fires Locust's `request` event for every unary call on the channel it wraps.

    Calls made inside `judged()` are reported when the block ends, failed or not as the task
    judged their answer; other calls are reported at once by the status rules alone.
    """

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self._held: list[Outcome] | None = None
        self._name: str | None = None

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        name = self._name or str(client_call_details.method).rpartition("/")[2]
        start_time = time.time()
        started = time.perf_counter()
        call = continuation(client_call_details, request)
        error = call.exception()
        response_time_ms = (time.perf_counter() - started) * 1000.0
        length = 0 if error is not None else call.result().ByteSize()
        outcome = Outcome(name, start_time, response_time_ms, length, error)
        if self._held is not None:
            self._held.append(outcome)
        else:
            self.report(outcome, error_failure(error) if error is not None else None)
        return call

    @contextlib.contextmanager
    def judged(self, name: str | None) -> Iterator[Verdict]:
        """Hold the calls of the block (named `name`, else by method) for the task's verdict."""
        verdict = Verdict()
        self._held, self._name = [], name
        try:
            yield verdict
        finally:
            held, self._held, self._name = self._held, None, None
            for outcome in held:
                if verdict.judged:
                    failure = verdict.failure
                elif outcome.error is not None:
                    failure = error_failure(outcome.error)
                else:
                    failure = None
                self.report(outcome, failure)

    def report(self, outcome: Outcome, failure: str | None) -> None:
        refused = outcome.error is not None and failure is None
        self.environment.events.request.fire(  # type: ignore[no-untyped-call]
            request_type=refusal_label(outcome.error)
            if refused and outcome.error is not None
            else REQUEST_TYPE,
            name=outcome.name,
            start_time=outcome.start_time,
            response_time=outcome.response_time_ms,
            response_length=outcome.response_length,
            exception=WrongAnswer(failure) if failure is not None else None,
            context={},
        )


# -- people already registered ---------------------------------------------------------------
class Registry:
    """People whose sign-up succeeded in this Locust process: the pool of duplicates."""

    def __init__(self) -> None:
        self._people: list[Person] = []
        self.duplicates = 0

    def add(self, person: Person) -> None:
        if len(self._people) < MAX_REGISTERED_PEOPLE:
            self._people.append(person)

    def pick_duplicate(self, rng: random.Random, rate: float) -> Person | None:
        """A registered person for a share `rate` of sign-ups; the first chance always.

        The first sign-up after someone registered repeats a person, so even a short run
        exercises duplicate detection.
        """
        if not self._people or rate <= 0:
            return None
        if self.duplicates and rng.random() >= rate:
            return None
        self.duplicates += 1
        return rng.choice(self._people)


REGISTRY = Registry()


# -- options ---------------------------------------------------------------------------------
TASK_NAMES = ("signup", "login", "refresh", "introspect", "get_account", "check_age")


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _add_options(parser: LocustArgumentParser) -> None:
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        env_var="LOCUST_ALLOW_REMOTE",
        include_in_web_ui=False,
        help="allow a --host that is not a loopback address (a sandbox deployment)",
    )
    parser.add_argument(
        "--duplicate-rate",
        type=float,
        default=0.1,
        env_var="LOCUST_DUPLICATE_RATE",
        help="share of sign-ups that repeat an already registered person (0..1)",
    )
    parser.add_argument(
        "--rpc-timeout",
        type=float,
        default=10.0,
        env_var="LOCUST_RPC_TIMEOUT",
        help="deadline of each call, seconds",
    )
    parser.add_argument(
        "--terms-version",
        default=DEFAULT_TERMS_VERSION,
        env_var="LOCUST_TERMS_VERSION",
        help="terms and privacy policy version SignUp accepts",
    )
    for name in TASK_NAMES:
        parser.add_argument(
            f"--weight-{name.replace('_', '-')}",
            type=int,
            default=None,
            env_var=f"LOCUST_WEIGHT_{name.upper()}",
            help=f"weight of the {name} task (default: its @task weight)",
        )


def option(environment: Environment, name: str, default: Any = None) -> Any:
    options = environment.parsed_options
    return getattr(options, name, default) if options is not None else default


def task_weights(environment: Environment) -> dict[str, int]:
    """Each task's weight: its @task(n), or the --weight-<task> option when given."""
    weights: dict[str, int] = {}
    for name in TASK_NAMES:
        default = int(getattr(getattr(IdserviceUser, name), "locust_task_weight", 1))
        given = option(environment, f"weight_{name}")
        weights[name] = default if given in {None, ""} else int(given)
    return weights


def options_refusal(environment: Environment) -> str | None:
    weights = task_weights(environment)
    if any(w < 0 for w in weights.values()) or not sum(weights.values()):
        return "task weights must be non-negative, and at least one positive"
    if not 0 <= float(option(environment, "duplicate_rate", 0.1)) <= 1:
        return "--duplicate-rate must be between 0 and 1"
    if not 0 < float(option(environment, "rpc_timeout", 10.0)) <= 120:
        return "--rpc-timeout must be in (0, 120] seconds"
    return None


@events.init.add_listener  # type: ignore[untyped-decorator]
def _check_options(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master checks; a worker gets the master's options when the test starts
    refusal = options_refusal(environment) or target_refusal(
        environment.host or IdserviceUser.host or "",
        allow_remote=bool(option(environment, "allow_remote", False)),
    )
    if refusal:
        LOG.error("idservice load test refused: %s", refusal)
        sys.exit(2)


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _report_the_end(environment: Environment, **_kwargs: Any) -> None:
    """Put the end of the run in the reports, however short the run was.

    The report's charts are sampled every 5 s while the test runs: add the last moment. The CSV
    files are rewritten every second: wait one more round, so they hold every request.
    """
    if environment.runner is None or isinstance(environment.runner, WorkerRunner):
        return
    update_stats_history(environment.runner)
    if option(environment, "csv_prefix"):
        time.sleep(CSV_STATS_INTERVAL_SEC + 0.25)  # Locust patched it: other greenlets run


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _summarize(environment: Environment, **_kwargs: Any) -> None:
    """Log the refusals that did not fail the run; a run nothing answered fails."""
    if isinstance(environment.runner, WorkerRunner):
        return
    entries = environment.stats.entries.values()
    answered = sum(e.num_requests - e.num_failures for e in entries if e.method == REQUEST_TYPE)
    for entry in sorted(entries, key=lambda e: (e.name, e.method or "")):
        if entry.method != REQUEST_TYPE:
            LOG.info(
                "refused, not failed: %s %s x %d", entry.name, entry.method, entry.num_requests
            )
    if environment.stats.total.num_requests and not answered:
        LOG.error("no call was answered OK")
        environment.process_exit_code = 1


# -- the user --------------------------------------------------------------------------------
class IdserviceUser(User):
    """One client of idservice: its own channel, accounts and weighted tasks, no think time."""

    host = "127.0.0.1:50051"
    wait_time = constant(0)

    def on_start(self) -> None:
        refusal = target_refusal(
            self.host, allow_remote=bool(option(self.environment, "allow_remote", False))
        )
        if refusal:
            LOG.error("idservice load test refused: %s", refusal)
            raise StopUser
        self.rng = random.Random()
        self.duplicate_rate = float(option(self.environment, "duplicate_rate", 0.1))
        self.interceptor = LocustInterceptor(self.environment)
        self.channel = grpc.intercept_channel(grpc.insecure_channel(self.host), self.interceptor)
        self.client = IdClient(
            self.channel,
            terms_version=str(option(self.environment, "terms_version", DEFAULT_TERMS_VERSION)),
            timeout=float(option(self.environment, "rpc_timeout", 10.0)),
        )
        self.accounts: list[Credentials] = []
        # The tasks by the weights of this run (a worker has the master's options by now).
        self.tasks = [
            getattr(IdserviceUser, name)
            for name, weight in task_weights(self.environment).items()
            for _ in range(weight)
        ]
        self.sign_up_new_person()

    def on_stop(self) -> None:
        channel = getattr(self, "channel", None)
        if channel is not None:
            channel.close()

    def rpc(self, name: str | None, call: Callable[[], R], judge: Judge | None = None) -> R | None:
        """Make one call, reported under `name` (default: the method) as `judge` rules."""
        with self.interceptor.judged(name) as verdict:
            try:
                response, error = call(), None
            except grpc.RpcError as exc:
                response, error = None, exc
            if judge is not None:
                verdict.judge(judge(response, error))
        return response

    def account(self) -> Credentials | None:
        if not self.accounts:
            self.sign_up_new_person()
        return self.rng.choice(self.accounts) if self.accounts else None

    # -- sign-ups ----------------------------------------------------------------------------
    def sign_up_new_person(self) -> None:
        person = new_person(self.rng)
        verified = self.rpc(
            None,
            lambda: self.client.verify(person),
            lambda r, e: new_person_verification_failure(r) if e is None else error_failure(e),
        )
        if verified is None:
            return
        email, password = new_email(), new_password()
        signed = self.rpc(
            None,
            lambda: self.client.sign_up(
                verified.verification_token, email=email, password=password
            ),
        )
        if signed is None:
            return
        REGISTRY.add(person)
        self.accounts.append(
            Credentials.of(signed.account.id, email, password, signed.session, person)
        )
        if len(self.accounts) > MAX_ACCOUNTS_PER_USER:
            self.accounts.pop(0)

    def sign_up_again(self, person: Person) -> None:
        """Verify a registered person anew and try to sign them up a second time."""
        verified = self.rpc(
            "CompleteVerification" + DUPLICATE,
            lambda: self.client.verify(person),
            lambda r, e: duplicate_verification_failure(r) if e is None else error_failure(e),
        )
        if verified is None:
            return
        self.rpc(
            "SignUp" + DUPLICATE,
            lambda: self.client.sign_up(
                verified.verification_token, email=new_email(), password=new_password()
            ),
            duplicate_signup_failure,
        )

    @task(2)
    def signup(self) -> None:
        person = REGISTRY.pick_duplicate(self.rng, self.duplicate_rate)
        if person is not None:
            self.sign_up_again(person)
        else:
            self.sign_up_new_person()

    # -- the account's calls -----------------------------------------------------------------
    @task(2)
    def login(self) -> None:
        creds = self.account()
        if creds is None:
            return
        answer = self.rpc(None, lambda: self.client.login(creds.email, creds.password))
        if answer is not None:
            creds.take(answer.session)

    @task(2)
    def refresh(self) -> None:
        creds = self.account()
        if creds is not None:
            self.refresh_account(creds)

    def refresh_account(self, creds: Credentials) -> None:
        answer = self.rpc(None, lambda: self.client.refresh(creds.refresh_token))
        if answer is not None:
            creds.take(answer.session)
        else:
            # The rotation chain may be broken (or the server unwell): leave this account.
            self.accounts.remove(creds)

    def fresh_account(self) -> Credentials | None:
        """An account whose access token is within the first half of its lifetime (refreshed if
        not: the call then goes to another account)."""
        creds = self.account()
        if creds is not None and time.monotonic() >= creds.refresh_due:
            self.refresh_account(creds)
            return None
        return creds

    @task(3)
    def introspect(self) -> None:
        creds = self.fresh_account()
        if creds is None:
            return
        self.rpc(
            None,
            lambda: self.client.introspect(creds.access_token),
            lambda r, e: (
                introspection_failure(r, creds.account_id) if e is None else error_failure(e)
            ),
        )

    @task(3)
    def get_account(self) -> None:
        creds = self.fresh_account()
        if creds is None:
            return
        self.rpc(
            None,
            lambda: self.client.get_account(creds.access_token),
            lambda r, e: (
                get_account_failure(r, creds.account_id) if e is None else error_failure(e)
            ),
        )

    @task(2)
    def check_age(self) -> None:
        creds = self.fresh_account()
        if creds is None or creds.person is None:
            return
        birth_date = creds.person.birth_date
        today = seoul_today()
        self.rpc(
            None,
            lambda: self.client.check_age(creds.access_token, as_of=today),
            lambda r, e: check_age_failure(r, birth_date, today) if e is None else error_failure(e),
        )


def seoul_today() -> date:
    """The calendar date in Asia/Seoul (korea-rules.md Age 3)."""
    return datetime.now(SEOUL).date()
