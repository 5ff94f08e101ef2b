"""`scripts/loadtest`: the Locust load test, headless, against a spawned server or a --target.

Without --target it starts `python -m idservice serve` in a temporary directory (SQLite there,
or --database-url), on 127.0.0.1 with a port the OS picks, read from the start-up log line; the
server gets SIGTERM when the run ends. Then it runs `locust -f scripts/locustfile.py --headless`
against it and exits with Locust's exit code: non-zero when any request failed by the rules of
scripts/locustfile.py (docs/loadtest.md).

    scripts/loadtest --run-time 30s --users 8 --csv load --html load.html
    scripts/loadtest --database-url postgresql+psycopg://postgres@127.0.0.1:5432/load
    scripts/loadtest --target 127.0.0.1:50051 -- --duplicate-rate 0.2 --weight-login 5

Arguments after `--` (or any this command does not know) go to Locust as they are.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

if __package__ in {None, ""}:
    # Run as a file: make the repository root importable (scripts.harness, as mypy names it).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.harness import (
    Argon2Config,
    check_database_url,
    dying_with_parent,
    spawned_service,
    target_refusal,
)

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
SERVER_LOG_TAIL_SHOWN = 40
# A task makes at most two calls, each with a 10 s deadline (--rpc-timeout).
STOP_TIMEOUT = "25s"


def locust_argv(args: argparse.Namespace, address: str, extra: Sequence[str]) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "locust",
        "--locustfile",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        address,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate or args.users),
        "--run-time",
        args.run_time,
        # Users finish the task at hand when the time is up: no sign-up is cut in half.
        "--stop-timeout",
        STOP_TIMEOUT,
    ]
    if args.csv:
        argv += ["--csv", args.csv]
    if args.html:
        argv += ["--html", args.html]
    if args.allow_remote:
        argv.append("--allow-remote")
    return argv + [a for a in extra if a != "--"]


class Terminated(Exception):
    """SIGTERM reached this script: stop Locust and the spawned server, then clean up."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated


# The exit code of a run cut short by SIGTERM (as a shell reports 128 + 15).
TERMINATED_EXIT = 143


def run_locust(argv: Sequence[str]) -> int:
    # Locust ends with this script even if it is killed outright (no orphan keeps calling).
    process = subprocess.Popen(dying_with_parent(argv))
    try:
        return process.wait()
    except KeyboardInterrupt:
        # Locust got the same SIGINT: it stops its users and writes its reports.
        return process.wait()
    except Terminated:
        # Locust did not get it. A second SIGTERM must not cut the wait for Locust short; and
        # Locust is given SIGINT, its Ctrl-C, on which it writes every report (on SIGTERM it
        # writes no HTML report).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        process.send_signal(signal.SIGINT)
        process.wait()
        return TERMINATED_EXIT


def _sets_host(arg: str) -> bool:
    """Locust's --host in any form its parser takes: -H, -HX, --host[=X] or an abbreviation
    such as --ho."""
    name = arg.split("=", 1)[0]
    return (arg.startswith("-H") and not arg.startswith("--")) or (
        len(name) >= len("--ho") and "--host".startswith(name)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # an abbreviation could swallow one of Locust's own options
    )
    parser.add_argument(
        "--target", help="host:port of a running idservice (default: spawn one for the run)"
    )
    parser.add_argument(
        "--database-url",
        type=check_database_url,
        help="the spawned server's database (default: SQLite in a temporary directory)",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --target that is not a loopback address (a sandbox deployment)",
    )
    parser.add_argument("-u", "--users", type=int, default=8, help="simulated users")
    parser.add_argument(
        "-r", "--spawn-rate", type=float, help="users started per second (default: all at once)"
    )
    parser.add_argument("-t", "--run-time", default="30s", help="e.g. 30s, 5m, 1h")
    parser.add_argument("--csv", metavar="PREFIX", help="write PREFIX_stats.csv and the others")
    parser.add_argument("--html", metavar="FILE", help="write Locust's HTML report here")
    args, extra = parser.parse_known_args(argv)
    # A run stopped by SIGTERM (a CI timeout, `kill`) still stops Locust and the spawned
    # server and removes the temporary directory, and says it was cut short (exit 143).
    signal.signal(signal.SIGTERM, _on_sigterm)
    if not 1 <= args.users <= 10_000:
        parser.error("--users must be between 1 and 10000")
    if args.database_url and args.target:
        parser.error("--database-url is for the spawned server; leave out --target")
    if any(_sets_host(a) for a in extra):
        # Handed on, Locust's own --host would win over the server this script points it at.
        parser.error("the target is --target HOST:PORT (this script sets Locust's --host)")
    if args.target:
        refusal = target_refusal(args.target, allow_remote=args.allow_remote)
        if refusal:
            parser.error(f"--target: {refusal}")
        try:
            return run_locust(locust_argv(args, args.target, extra))
        except Terminated:
            return TERMINATED_EXIT

    try:
        argon2 = Argon2Config.from_settings()
    except ValueError as exc:  # ConfigError names the variable
        print(f"loadtest: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        with spawned_service(args.database_url, argon2=argon2) as server:
            assert server.address is not None
            print(f"loadtest: spawned idservice on {server.address}", flush=True)
            code = run_locust(locust_argv(args, server.address, extra))
    except RuntimeError as exc:  # the server did not start
        print(f"loadtest: {exc}", file=sys.stderr)
        return 1
    except Terminated:  # before Locust ran: the server is stopped and its directory gone
        print("loadtest: stopped by SIGTERM", file=sys.stderr)
        return TERMINATED_EXIT
    print(f"loadtest: error lines in the spawned server's log: {server.error_lines}")
    if server.error_lines:
        print("spawned server log (tail):", file=sys.stderr)
        print("\n".join(list(server.tail)[-SERVER_LOG_TAIL_SHOWN:]), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
