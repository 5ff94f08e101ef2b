"""The `idservice` command: serve, migrate, purge, dispatch, outbox, audit, reencrypt (and
--version)."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from idservice.config import ConfigError, Settings, misspelt_variables
from idservice.domain.errors import DomainError
from idservice.domain.instants import utc_text
from idservice.entrypoints.cli_parser import Parser
from idservice.entrypoints.logs import configure_logging
from idservice.entrypoints.server_process import add_server_process_arguments
from idservice.entrypoints.signals import wait_for_signal

if TYPE_CHECKING:
    from idservice.service_layer.dispatch import OutboxListing

log = logging.getLogger("idservice")


def _configure_logging(level: str) -> None:
    """One JSON object per line on stderr (timestamp, level, logger, event; a request id during
    calls), at IDSERVICE_LOG_LEVEL: see `idservice.entrypoints.logs`."""
    configure_logging(level)


def _settings() -> Settings:
    return Settings.from_env()


def _stop_on_signals(doing: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT (logged as "received SIGTERM: <doing>")."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: %s", signal.Signals(signum).name, doing)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """One process (IDSERVICE_PROCESSES=1), or a supervisor of several (see supervisor.py)."""
    if getattr(args, "prepare_database", False):
        from idservice.bootstrap import prepare_database

        prepare_database(settings)
        return 0
    if getattr(args, "server_process", None) is not None:
        from idservice.entrypoints.server_process import serve_one

        return serve_one(settings, args)
    if settings.process_count > 1:
        from idservice.entrypoints.supervisor import supervise

        return supervise(settings)
    from idservice.bootstrap import build_app
    from idservice.entrypoints.grpc.instruments import observers
    from idservice.entrypoints.grpc.server import create_server

    app = build_app(settings, observers=observers())
    if settings.metrics_listen:
        from idservice.entrypoints.grpc.metrics import serve_metrics

        try:
            serve_metrics(settings.metrics_listen)
        except OSError as exc:
            app.close()
            raise ConfigError(
                "IDSERVICE_METRICS_LISTEN", f"cannot listen: {exc.strerror}"
            ) from None
    try:
        running = create_server(app)
    except BaseException:
        app.close()
        raise
    host = settings.listen.rpartition(":")[0]
    log.info(
        "idservice listening on %s:%d (env=%s, identity provider=%s, database=%s)",
        host,
        running.port,
        settings.env,
        settings.identity_provider,
        settings.database_kind,
    )
    if settings.health_listen:
        log.info(
            "health service (plaintext, nothing else) on %s:%d",
            settings.health_listen.rpartition(":")[0],
            running.health_port,
        )
    stop = _stop_on_signals("draining")
    wait_for_signal(stop)
    running.stop(settings.shutdown_grace.total_seconds())
    log.info("stopped")
    return 0


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from idservice.bootstrap import migrate_database

    print(f"database at revision {migrate_database(settings)}")  # noqa: T201
    return 0


def cmd_reencrypt(settings: Settings, _args: argparse.Namespace) -> int:
    from idservice.bootstrap import build_app

    app = build_app(settings)
    try:
        counts = app.reencrypt()
    finally:
        app.close()
    for table, count in counts.items():
        print(f"{table}: {count} value(s) re-encrypted")  # noqa: T201
    return 0


def cmd_purge(settings: Settings, _args: argparse.Namespace) -> int:
    from idservice.bootstrap import build_app
    from idservice.service_layer.retention import Purge

    app = build_app(settings)
    try:
        counts = app.handle(Purge())
    finally:
        app.close()
    for what, count in counts.items():
        print(f"{what}: {count}")  # noqa: T201
    return 0


def cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    """Deliver outbox events until SIGTERM/SIGINT, or once (`--once`) and print counts."""
    from idservice.bootstrap import build_app
    from idservice.entrypoints.worker import dispatch_until
    from idservice.service_layer.dispatch import CLAIM_LEASE, DispatchAllDue

    lease = CLAIM_LEASE if args.claim_lease is None else timedelta(seconds=args.claim_lease)
    app = build_app(settings)
    try:
        if args.once:
            report = app.handle(DispatchAllDue(lease=lease))
            print(f"delivered: {report.delivered}")  # noqa: T201
            print(f"failed: {report.failed}")  # noqa: T201
            return 0
        stop = _stop_on_signals("stopping")
        target = "the webhook" if settings.notify_webhook_url else "the log"
        log.info("dispatching outbox events to %s", target)
        dispatch_until(app, stop, lease=lease)
        log.info("stopped")
        return 0
    finally:
        app.close()


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    """List undelivered and dead outbox events, or queue dead ones again."""
    from idservice.bootstrap import build_app
    from idservice.service_layer.dispatch import ListOutbox, ReplayDeadEvents

    app = build_app(settings)
    try:
        if args.action == "list":
            _print_outbox(app.handle(ListOutbox(limit=args.limit)))
            return 0
        event_ids = () if args.all else (args.event_id,)
        replayed = app.handle(ReplayDeadEvents(event_ids=event_ids, every=args.all))
    finally:
        app.close()
    print(f"replayed: {replayed}")  # noqa: T201
    if not args.all and not replayed:
        print(f"idservice: no dead outbox event {args.event_id}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


def _print_outbox(listing: OutboxListing) -> None:
    """One tab-separated line per event (never its payload), then the counts."""
    print("state\ttype\tevent_id\tattempts\tnext_attempt_or_dead_since\tlast_error")  # noqa: T201
    for entry in listing.events:
        state, when = (
            ("dead", entry.dead_at) if entry.dead_at else ("pending", entry.next_attempt_at)
        )
        error = " ".join((entry.last_error or "-").split())
        print(  # noqa: T201
            f"{state}\t{entry.type}\t{entry.id}\t{entry.attempts}\t{utc_text(when)}\t{error}"
        )
    print(f"pending: {listing.pending}")  # noqa: T201
    print(f"dead: {listing.dead}")  # noqa: T201
    hidden = listing.pending + listing.dead - len(listing.events)
    if hidden > 0:
        print(f"not shown: {hidden} (see --limit)")  # noqa: T201


# `audit verify` could not read the chain (the database is unreachable): no verdict, which a
# scheduled check must tell apart from a break (exit 1).
AUDIT_NOT_CHECKED_EXIT = 3


def cmd_audit(settings: Settings, _args: argparse.Namespace) -> int:
    """`audit verify`: check the access audit's hash chain; exit 1 at the first break, 3 when
    the chain could not be read."""
    from idservice.bootstrap import build_app
    from idservice.service_layer.audit import VerifyAccessAudit

    try:
        # The database as it is (no migration): a wrong URL must not become an empty, "intact"
        # chain. A database that cannot be read is no verdict either way.
        app = build_app(settings, migrate=False)
        try:
            result = app.handle(VerifyAccessAudit())
        finally:
            app.close()
    except (DomainError, SQLAlchemyError, OSError) as exc:
        # The URL may carry a password: the reason or the error class only.
        cause = exc.reason.value if isinstance(exc, DomainError) else type(exc).__name__
        print(  # noqa: T201
            f"idservice: audit not checked ({cause}); check IDSERVICE_DATABASE_URL and that "
            "the database is reachable",
            file=sys.stderr,
        )
        return AUDIT_NOT_CHECKED_EXIT
    print(f"records checked: {result.checked}")  # noqa: T201
    if result.broken is not None:
        print(f"broken at {result.broken.describe()}")  # noqa: T201
        return 1
    print(f"ok (last seq {result.last.seq}, hash {result.last.hash})")  # noqa: T201
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "purge": cmd_purge,
    "dispatch": cmd_dispatch,
    "outbox": cmd_outbox,
    "audit": cmd_audit,
    "reencrypt": cmd_reencrypt,
}


# Each subcommand: (one-line help in the command list, description for its own --help).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": (
        "run the gRPC server",
        "Run the gRPC server (with health and reflection) on IDSERVICE_LISTEN. Migrates the "
        "database first, delivers outbox events and runs the retention jobs periodically. With "
        "no configuration at all: SQLite under ./var/, development keys in ./var/keys/, the "
        "sandbox identity provider, 127.0.0.1:50051. SIGTERM drains in-flight calls, then exits.",
    ),
    "migrate": (
        "apply database migrations to IDSERVICE_DATABASE_URL",
        "Apply the database migrations (Alembic) to IDSERVICE_DATABASE_URL and print the "
        "revision reached. Safe to run repeatedly and from several processes at once.",
    ),
    "purge": (
        "run every retention job once and print counts",
        "Run every retention and destruction job once (expired verifications, SNS sign-up "
        "tickets and idempotent responses, ended sessions, spent attempt counters, finished "
        "re-join holds, child accounts whose guardian consent window ended, delivered outbox "
        "events, consent records and outcomes past their period, connection-log entries older "
        "than IDSERVICE_CONNECTION_LOG_RETENTION, access-audit records older than "
        "IDSERVICE_ACCESS_AUDIT_RETENTION; and the marketing reconfirmations that came due) and "
        "print a count per job: counts only, no personal data. serve runs it every "
        "IDSERVICE_PURGE_INTERVAL.",
    ),
    "dispatch": (
        "deliver outbox events (serve does this too unless told not to)",
        "Deliver outbox events to IDSERVICE_NOTIFY_WEBHOOK_URL (or log their type and id) "
        "until SIGTERM, for deployments that run delivery apart from the servers (set "
        "IDSERVICE_DISPATCH_IN_SERVE=false there). Each event is claimed for 30 s while it is "
        "sent, so the events of a dispatcher that was killed are taken over within a minute.",
    ),
    "outbox": (
        "list undelivered and dead outbox events, or queue dead ones again",
        "Inspect the outbox in IDSERVICE_DATABASE_URL: `list` shows the events not yet "
        "delivered and the dead letters (given up on after 20 failed attempts and 72 hours), "
        "`replay` queues dead letters again. Payloads are never shown.",
    ),
    "audit": (
        "check the access audit's hash chain",
        "Check the access audit in IDSERVICE_DATABASE_URL: the hash-chained records of every "
        "access to a person's data on someone else's behalf (a guardian's calls).",
    ),
    "reencrypt": (
        "re-encrypt personal fields under the current data key",
        "Re-encrypt every personal field under the current (first) key of IDSERVICE_DATA_KEYS, "
        "after a key rotation, and print how many values each table had re-encrypted.",
    ),
}
# `idservice outbox` actions: (one-line help, description for its own --help).
OUTBOX_ACTIONS: dict[str, tuple[str, str]] = {
    "list": (
        "print pending and dead events",
        "Print one tab-separated line per undelivered outbox event, dead letters first: state "
        "(pending or dead), type, event id, failed attempts, the next attempt (pending) or "
        "when it was given up on (dead), and the last delivery error. Payloads, which may hold "
        "a guardian's name and phone, are never printed. Then the number of pending and dead "
        "events.",
    ),
    "replay": (
        "queue dead events again",
        "Put a dead letter (EVENT_ID) or every dead letter (--all) back in the queue: its "
        "attempts are reset and it is due at once; a running dispatcher delivers it. Prints "
        "how many were queued again; exits 1 when EVENT_ID names no dead event.",
    ),
}
# `idservice audit` actions: (one-line help, description for its own --help).
AUDIT_ACTIONS: dict[str, tuple[str, str]] = {
    "verify": (
        "check the hash chain; exit 1 at a break, 3 if it cannot be read",
        "Check the access audit's hash chain from its anchor (where retention last deleted) to "
        "its tail: every record must match its hash and follow the one before it, and none may "
        "be missing or added. Prints how many records were checked and `ok` with the last seq "
        "and hash (keep it elsewhere to compare later); at a break, prints the seq where the "
        "chain first breaks and how (altered, deleted, inserted), never a record's content, "
        "and exits 1. Exits 3, with no verdict, when the database cannot be read.",
    ),
}
CONFIGURATION_NOTE = (
    "Configuration comes from IDSERVICE_* environment variables (a .env file in the working "
    "directory is read too; the environment wins); see README.md for the list. Invalid "
    "configuration exits with code 2 and one line naming the variable."
)


def _version() -> str:
    try:
        return importlib.metadata.version("idservice")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="idservice",
        description="The identity verification and account registration gRPC service.",
        epilog=CONFIGURATION_NOTE,
    )
    parser.add_argument("--version", action="version", version=f"idservice {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {
        name: sub.add_parser(name, help=summary, description=details, epilog=CONFIGURATION_NOTE)
        for name, (summary, details) in SUBCOMMANDS.items()
    }
    parsers["dispatch"].add_argument(
        "--once", action="store_true", help="deliver what is due, print counts and exit"
    )
    # How a supervisor starts each of its server processes (IDSERVICE_PROCESSES).
    add_server_process_arguments(parsers["serve"])
    # A test hook: a shorter claim lease, so a crash-and-restart test need not wait 30 s.
    parsers["dispatch"].add_argument("--claim-lease", type=_positive_int, help=argparse.SUPPRESS)
    actions = parsers["outbox"].add_subparsers(dest="action", required=True, metavar="ACTION")
    outbox = {
        name: actions.add_parser(name, help=summary, description=details, epilog=CONFIGURATION_NOTE)
        for name, (summary, details) in OUTBOX_ACTIONS.items()
    }
    outbox["list"].add_argument(
        "--limit", type=_positive_int, default=100, help="print at most this many events (100)"
    )
    target = outbox["replay"].add_mutually_exclusive_group(required=True)
    target.add_argument("event_id", nargs="?", metavar="EVENT_ID", help="the dead event's id")
    target.add_argument("--all", action="store_true", help="every dead event")
    audit = parsers["audit"].add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, (summary, details) in AUDIT_ACTIONS.items():
        audit.add_parser(name, help=summary, description=details, epilog=CONFIGURATION_NOTE)
    return parser


# gRPC's own log lines are plain text on stderr, where every other line is JSON, and at its
# default level it writes one for every connection that fails its TLS handshake (anyone who
# reaches the port can add them). Below ERROR they stay off unless the operator sets
# GRPC_VERBOSITY; gRPC reads it when it starts, so before anything imports grpc.
GRPC_VERBOSITY_DEFAULT = "ERROR"


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("GRPC_VERBOSITY", GRPC_VERBOSITY_DEFAULT)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings()
    except ConfigError as exc:
        print(f"idservice: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    _configure_logging(settings.log_level)
    # Said once per command: not again by the processes `serve` starts (they read the same).
    said_by_parent = getattr(args, "server_process", None) is not None or getattr(
        args, "prepare_database", False
    )
    for name, meant in [] if said_by_parent else misspelt_variables():
        log.warning("%s is not a configuration variable (%s?): ignored", name, meant)
    if settings.production and settings.database_kind == "sqlite" and not said_by_parent:
        log.warning(
            "IDSERVICE_DATABASE_URL is SQLite in production: one file on this machine, shared "
            "with no other instance; production takes a postgresql+psycopg:// URL"
        )
    # Databases, keys and logs this process creates are its own (no group/other access).
    os.umask(0o077)
    try:
        return COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"idservice: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except DomainError as exc:
        # e.g. the database cannot be reached while migrating at start-up.
        print(f"idservice: {exc.reason.value}: {exc.message}", file=sys.stderr)  # noqa: T201
        return 1
    except SQLAlchemyError as exc:
        # The URL may carry a password: name the variable and the error class only.
        print(  # noqa: T201
            f"idservice: database error ({type(exc).__name__}); check IDSERVICE_DATABASE_URL "
            "and that the database is reachable",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
