"""One server process of `idservice serve --server-process N`, started by the supervisor
(`idservice.entrypoints.supervisor`): it serves on the shared port until SIGTERM, then drains."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import os
import signal
import threading
from types import FrameType

from idservice.config import Settings
from idservice.entrypoints.heartbeat import READY, beat
from idservice.entrypoints.logs import name_process
from idservice.entrypoints.signals import wait_for_signal
from idservice.entrypoints.supervisor import PR_SET_PDEATHSIG, PURGING_PROCESS

log = logging.getLogger("idservice")


def _die_with_supervisor(supervisor_pid: int) -> bool:
    """Ask for SIGTERM when the supervisor dies; False if it is already gone."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is not None:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            log.warning("cannot ask to stop with the supervisor (prctl failed)")
    # It may have died before the request: then the parent is already someone else.
    return os.getppid() == supervisor_pid


def serve_one(settings: Settings, args: argparse.Namespace) -> int:
    """One server process of a supervisor: serve on the shared port until SIGTERM, then drain."""
    from idservice.bootstrap import build_app
    from idservice.entrypoints.grpc.instruments import observers
    from idservice.entrypoints.grpc.server import create_server

    index: int = args.server_process
    name_process(index)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not _die_with_supervisor(args.supervisor_pid):
        return 0
    # The supervisor migrated and checked the keys; this re-checks the ring under the lock.
    app = build_app(settings, migrate=False, observers=observers())
    try:
        # The retention jobs run once per instance: in PURGING_PROCESS only.
        purge, health = index == PURGING_PROCESS, args.health_address
        running = create_server(
            app, args.server_address, reuse_port=True, health_address=health, purge=purge
        )
    except BaseException:
        app.close()
        raise
    try:
        os.write(args.ready_fd, READY)
    except BaseException:
        os.close(args.ready_fd)
        raise
    # Heartbeats go on through the drain (finishing calls is progress), until the process ends.
    done = threading.Event()
    heart = threading.Thread(
        target=beat, args=(args.ready_fd, running.executor, done), name="heartbeat", daemon=True
    )
    heart.start()
    try:
        wait_for_signal(stop)
        running.stop(settings.shutdown_grace.total_seconds())
    finally:
        done.set()
        heart.join()
        os.close(args.ready_fd)
    log.info("server process %d (pid %d) stopped", index, os.getpid())
    return 0


def add_server_process_arguments(parser: argparse.ArgumentParser) -> None:
    """The options the supervisor starts a server process with (hidden from --help)."""
    parser.add_argument("--server-process", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prepare-database", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server-address", help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--health-address", help=argparse.SUPPRESS)
