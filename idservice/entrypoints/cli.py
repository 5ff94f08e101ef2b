"""The `idservice` command: serve, migrate, purge, dispatch, reencrypt (and --version)."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from sqlalchemy.exc import SQLAlchemyError

from idservice.config import ConfigError, Settings
from idservice.domain.errors import DomainError

log = logging.getLogger("idservice")


# Libraries whose INFO lines are noise, or (httpx) would log upstream URLs with ids.
QUIET_LOGGERS = ("alembic", "httpx", "httpcore")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


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


def cmd_serve(settings: Settings, _args: argparse.Namespace) -> int:
    from idservice.bootstrap import build_app
    from idservice.entrypoints.grpc.server import create_server

    app = build_app(settings)
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
        "idservice listening on %s:%d (env=%s, identity provider=%s)",
        host,
        running.port,
        settings.env,
        settings.identity_provider,
    )
    stop = _stop_on_signals("draining")
    stop.wait()
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
    from idservice.service_layer.dispatch import DispatchAllDue

    app = build_app(settings)
    try:
        if args.once:
            report = app.handle(DispatchAllDue())
            print(f"delivered: {report.delivered}")  # noqa: T201
            print(f"failed: {report.failed}")  # noqa: T201
            return 0
        stop = _stop_on_signals("stopping")
        target = "the webhook" if settings.notify_webhook_url else "the log"
        log.info("dispatching outbox events to %s", target)
        dispatch_until(app, stop)
        log.info("stopped")
        return 0
    finally:
        app.close()


COMMANDS = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "purge": cmd_purge,
    "dispatch": cmd_dispatch,
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
        "Run every retention and destruction job once (expired verifications and idempotent "
        "responses, ended sessions, finished re-join holds, child accounts whose guardian "
        "consent window ended, delivered outbox events) and print how many of each it "
        "destroyed: counts only, no personal data. serve runs it every "
        "IDSERVICE_PURGE_INTERVAL.",
    ),
    "dispatch": (
        "deliver outbox events (serve does this too unless told not to)",
        "Deliver outbox events to IDSERVICE_NOTIFY_WEBHOOK_URL (or log their type and id) "
        "until SIGTERM, for deployments that run delivery apart from the servers (set "
        "IDSERVICE_DISPATCH_IN_SERVE=false there).",
    ),
    "reencrypt": (
        "re-encrypt personal fields under the current data key",
        "Re-encrypt every personal field under the current (first) key of IDSERVICE_DATA_KEYS, "
        "after a key rotation, and print how many values each table had re-encrypted.",
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    try:
        settings = _settings()
    except ConfigError as exc:
        print(f"idservice: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    _configure_logging(settings.log_level)
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
