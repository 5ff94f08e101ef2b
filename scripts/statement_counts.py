"""Count the database statements each RPC runs: reads, writes and transaction control.

The service runs in this process (`build_app` + `create_server` on 127.0.0.1:0, development
settings, sandbox identity provider) on a fresh SQLite file, or on PostgreSQL (`--database
postgres` starts a throwaway cluster; `--database-url` names an existing empty database). A
SQLAlchemy `before_cursor_execute` listener on every engine records each statement with the
thread that ran it. The RPCs run one after another, each once after a warm-up round on another
account; statements from the server's RPC threads are counted against the call that was
running, those of background threads (connection-log writer, outbox dispatcher, probes) apart.

Only the SQL text is recorded (never its parameters), and only with --verbose is it printed.

    .venv/bin/python scripts/statement_counts.py
    .venv/bin/python scripts/statement_counts.py --database postgres --verbose
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in {None, ""}:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from sqlalchemy import event
from sqlalchemy.engine import Engine

from idservice.domain.age import seoul_today
from idservice.v1 import account_pb2, auth_pb2
from scripts.benchmark import database
from scripts.harness import (
    Argon2Config,
    Credentials,
    IdClient,
    bearer,
    check_age_failure,
    check_database_url,
    error_key,
    get_account_failure,
    introspection_failure,
    new_person,
    require,
    service_env,
)

# The server's RPC handler threads, of both pools (`rpc_N`, `rpc-quick_N`), are named after this
# prefix (entrypoints/grpc/pools.py).
RPC_THREAD_PREFIX = "rpc"
READ_VERBS = frozenset({"SELECT"})
WRITE_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE"})
# Cheap parameters: the counts do not depend on them.
SMALL_ARGON2 = Argon2Config(time_cost=1, memory_cost=1024, parallelism=1)
WRONG_PASSWORD = "PasswordLogin (wrong password)"
# What a SQLite write unit of work begins with (adapters/db/engine.py).
SQLITE_BEGIN = "BEGIN IMMEDIATE"
# A password zxcvbn scores highly, different from the sign-up one.
NEW_PASSWORD = "another fine password for counting statements"


_DATA_CHANGE = re.compile(r"\b(INSERT|UPDATE|DELETE)\b")
_COPY_FROM = re.compile(r"\bFROM\s+STDIN\b")


def verb(sql: str) -> str:
    """The statement's kind: SELECT, INSERT, ..., or BEGIN/COMMIT/PRAGMA/SAVEPOINT and so on.
    `COPY … FROM` appends rows (the connection log's batches on PostgreSQL): an INSERT."""
    words = sql.lstrip(" \n\t(").split(None, 1)
    first = words[0].upper() if words else ""
    if first == "COPY":
        return "INSERT" if _COPY_FROM.search(sql.upper()) else "SELECT"
    if first == "WITH":  # a CTE: a write when it, or the statement after it, writes
        found = _DATA_CHANGE.search(sql.upper())
        return found.group(1) if found else "SELECT"
    return first


@dataclass
class Counts:
    reads: int = 0
    writes: int = 0
    other: int = 0
    commits: int = 0
    outcome: str = "ok"
    statements: list[str] = field(default_factory=list)

    def add(self, sql: str) -> None:
        kind = verb(sql)
        if kind in READ_VERBS:
            self.reads += 1
        elif kind in WRITE_VERBS:
            self.writes += 1
        else:
            self.other += 1
        self.statements.append(" ".join(sql.split()))


class StatementLog:
    """Statements by thread kind, charged to the RPC being measured."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: Counts | None = None
        self.background = Counts()

    def on_execute(
        self,
        _conn: Any,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        rpc_thread = threading.current_thread().name.startswith(RPC_THREAD_PREFIX)
        with self._lock:
            if rpc_thread and self.current is not None:
                self.current.add(statement)
            elif not rpc_thread:
                self.background.add(statement)

    def on_begin(self, conn: Any) -> None:
        """SQLite's write units of work send `BEGIN IMMEDIATE` straight to the driver as their
        transaction begins, past `before_cursor_execute`: counted here instead."""
        if conn.dialect.name == "sqlite" and not conn.get_execution_options().get("readonly"):
            self.on_execute(conn, None, SQLITE_BEGIN, None, None, False)

    def on_commit(self, _conn: Any) -> None:
        rpc_thread = threading.current_thread().name.startswith(RPC_THREAD_PREFIX)
        with self._lock:
            target = self.current if rpc_thread else self.background
            if target is not None:
                target.commits += 1

    @contextlib.contextmanager
    def charging(self, counts: Counts) -> Iterator[None]:
        with self._lock:
            self.current = counts
        try:
            yield
        finally:
            with self._lock:
                self.current = None


@dataclass
class Journey:
    """One account through the RPCs, in an order where each call has what it needs."""

    client: IdClient
    raw: Any  # the stubs, for the calls IdClient does not wrap

    def steps(self) -> list[tuple[str, Callable[[], object]]]:
        person = new_person(random.Random())
        state: dict[str, Any] = {}
        timeout = self.client.timeout

        def verify() -> None:
            state["token"] = self.client.verify(person).verification_token

        def sign_up() -> None:
            state["creds"] = self.client.register(person, state["token"])

        def creds() -> Credentials:
            found = state["creds"]
            assert isinstance(found, Credentials)
            return found

        def login() -> None:
            creds().take(self.client.login(creds().email, creds().password).session)

        def wrong_password() -> None:
            with contextlib.suppress(grpc.RpcError):
                self.client.login(creds().email, "not it at all")

        def refresh() -> None:
            creds().take(self.client.refresh(creds().refresh_token).session)

        def introspect() -> None:
            answer = self.client.introspect(creds().access_token)
            require(introspection_failure(answer, creds().account_id))

        def get_account() -> None:
            answer = self.client.get_account(creds().access_token)
            require(get_account_failure(answer, creds().account_id))

        def check_age() -> None:
            as_of = seoul_today(datetime.now(UTC))
            answer = self.client.check_age(creds().access_token, as_of=as_of)
            require(check_age_failure(answer, creds().birth_date, as_of))

        def authorized() -> tuple[tuple[str, str]]:
            return bearer(creds().access_token)

        def update_consents() -> None:
            request = account_pb2.UpdateConsentsRequest(marketing_opt_in=True)
            self.raw.accounts.UpdateConsents(request, timeout=timeout, metadata=authorized())

        def change_password() -> None:
            request = account_pb2.ChangePasswordRequest(
                current_password=creds().password, new_password=NEW_PASSWORD
            )
            self.raw.accounts.ChangePassword(request, timeout=timeout, metadata=authorized())
            creds().password = NEW_PASSWORD

        def export() -> None:
            request = account_pb2.ExportPersonalDataRequest()
            self.raw.accounts.ExportPersonalData(request, timeout=timeout, metadata=authorized())

        def logout() -> None:
            request = auth_pb2.LogoutRequest(refresh_token=creds().refresh_token)
            self.raw.auth.Logout(request, timeout=timeout, metadata=authorized())

        def jwks() -> None:
            self.raw.auth.GetJwks(auth_pb2.GetJwksRequest(), timeout=timeout)

        def withdraw() -> None:
            request = account_pb2.WithdrawRequest(password=creds().password)
            self.raw.accounts.Withdraw(request, timeout=timeout, metadata=authorized())

        return [
            ("CompleteVerification", verify),
            ("SignUp", sign_up),
            ("PasswordLogin", login),
            (WRONG_PASSWORD, wrong_password),
            ("RefreshSession", refresh),
            ("IntrospectToken", introspect),
            ("GetAccount", get_account),
            ("CheckAge (account)", check_age),
            ("UpdateConsents", update_consents),
            ("ExportPersonalData", export),
            ("GetJwks", jwks),
            ("ChangePassword", change_password),
            ("PasswordLogin (after change)", login),
            ("Logout", logout),
            ("PasswordLogin (again)", login),
            ("Withdraw", withdraw),
        ]


@dataclass
class Stubs:
    accounts: Any
    auth: Any


def run_step(step: Callable[[], object]) -> str:
    """ "ok", or the code and reason the call failed with (the journey goes on)."""
    try:
        step()
    except grpc.RpcError as error:
        return " ".join(error_key(error))
    return "ok"


def count(database_url: str | None, var_dir: Path) -> tuple[list[tuple[str, Counts]], Counts]:
    from idservice.bootstrap import build_app
    from idservice.config import Settings
    from idservice.entrypoints.grpc.server import create_server
    from idservice.v1 import account_pb2_grpc, auth_pb2_grpc

    url = database_url or f"sqlite:///{var_dir / 'idservice.db'}"
    env = service_env(url, var_dir, SMALL_ARGON2, "1") | {"IDSERVICE_LOG_LEVEL": "WARNING"}
    settings = Settings.from_env(
        {k: v for k, v in env.items() if k.startswith("IDSERVICE_")}, read_dotenv=False
    )
    log = StatementLog()
    event.listen(Engine, "before_cursor_execute", log.on_execute)
    event.listen(Engine, "commit", log.on_commit)
    event.listen(Engine, "begin", log.on_begin)
    try:
        app = build_app(settings)
        try:
            running = create_server(app, "127.0.0.1:0")
            try:
                with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                    client = IdClient(channel, timeout=30.0)
                    stubs = Stubs(
                        accounts=account_pb2_grpc.AccountServiceStub(channel),
                        auth=auth_pb2_grpc.AuthServiceStub(channel),
                    )
                    for _name, step in Journey(client, stubs).steps():  # warm-up, not counted
                        run_step(step)
                    time.sleep(1.5)  # let the first connection-log write and dispatch pass
                    log.background = Counts()
                    rows: list[tuple[str, Counts]] = []
                    for name, step in Journey(client, stubs).steps():
                        counts = Counts()
                        with log.charging(counts):
                            counts.outcome = run_step(step)
                        rows.append((name, counts))
                    time.sleep(1.5)  # one more connection-log write
            finally:
                running.halt()
        finally:
            app.close()
    finally:
        event.remove(Engine, "before_cursor_execute", log.on_execute)
        event.remove(Engine, "commit", log.on_commit)
    return rows, log.background


def print_table(kind: str, rows: Sequence[tuple[str, Counts]], background: Counts) -> None:
    print(f"database statements per RPC ({kind}; counted on the server's RPC threads)")
    print()
    print("| RPC | reads | writes | other | statements | commits |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, c in rows:
        failed = "" if c.outcome == "ok" else f" (failed: {c.outcome})"
        figures = (c.reads, c.writes, c.other, len(c.statements), c.commits)
        print(f"| {name}{failed} | " + " | ".join(map(str, figures)) + " |")
    print()
    print(
        "other: transaction control sent as SQL (SQLite's BEGIN IMMEDIATE, SAVEPOINT, RELEASE); "
        "commits: transactions committed."
    )
    print(
        f"Background threads meanwhile ({len(rows)} RPCs; connection-log writer, outbox "
        f"dispatcher, probes): {background.reads} reads, {background.writes} writes, "
        f"{background.other} other, {background.commits} commits."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--database-url", type=check_database_url)
    parser.add_argument("--verbose", action="store_true", help="print each statement's SQL")
    parser.add_argument("--json", type=Path, help="also write the counts as JSON here")
    args = parser.parse_args(argv)
    kind = "postgresql" if args.database == "postgres" else "sqlite"
    if args.database_url is not None:
        kind = "sqlite" if args.database_url.startswith("sqlite") else "postgresql"
    try:
        with (
            tempfile.TemporaryDirectory(prefix="idservice-count-") as tmp,
            database(args.database, args.database_url) as url,
        ):
            var_dir = Path(tmp) / "var"
            var_dir.mkdir()
            rows, background = count(url, var_dir)
    except RuntimeError as exc:
        print(f"statement_counts: {exc}", file=sys.stderr)
        return 1
    print_table(kind, rows, background)
    if args.verbose:
        for name, c in rows:
            print(f"\n{name}:")
            for sql in c.statements:
                print(f"  {sql[:160]}")
        print("\nbackground:")
        for sql in background.statements:
            print(f"  {sql[:160]}")
    if args.json:
        data = {
            "database": kind,
            "rpcs": {
                name: {
                    "reads": c.reads,
                    "writes": c.writes,
                    "other": c.other,
                    "commits": c.commits,
                    "outcome": c.outcome,
                }
                for name, c in rows
            },
            "background": {
                "reads": background.reads,
                "writes": background.writes,
                "other": background.other,
                "commits": background.commits,
            },
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    # The wrong password is refused on purpose; any other failure is a finding.
    failed = [n for n, c in rows if c.outcome != "ok" and n != WRONG_PASSWORD]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
