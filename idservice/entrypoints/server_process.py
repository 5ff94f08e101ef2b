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
from typing import TYPE_CHECKING

from idservice.config import Settings
from idservice.entrypoints.supervisor import (
    HEARTBEAT,
    HEARTBEAT_SECONDS,
    PR_SET_PDEATHSIG,
    PURGING_PROCESS,
    READY,
    STALLED_AFTER_SECONDS,
)

if TYPE_CHECKING:
    from idservice.entrypoints.grpc.server import TrackedExecutor

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
        stop.wait()
        running.stop(settings.shutdown_grace.total_seconds())
    finally:
        done.set()
        heart.join()
        os.close(args.ready_fd)
    log.info("server process %d (pid %d) stopped", index, os.getpid())
    return 0


def beat(
    fd: int,
    executor: TrackedExecutor,
    stop: threading.Event,
    *,
    every: float = HEARTBEAT_SECONDS,
    stalled_after: float = STALLED_AFTER_SECONDS,
) -> None:
    """Write a heartbeat on `fd` every `every` seconds until `stop`, except while `executor`
    has had work and finished none for `stalled_after` seconds: the supervisor then kills and
    restarts this process (a heartbeat that cannot be written is dropped)."""
    os.set_blocking(fd, False)
    reported = False
    while not stop.wait(every):
        stalled = executor.stalled_for()
        if stalled >= stalled_after:
            if not reported:
                log.error(
                    "no RPC has finished for %.0fs while calls wait: heartbeats stop, so the "
                    "supervisor restarts this process",
                    stalled,
                )
                reported = True
            continue
        reported = False
        try:
            os.write(fd, HEARTBEAT)
        except BlockingIOError:
            pass  # the supervisor has not read the last ones yet: it knows we are alive
        except OSError:
            return  # the supervisor is gone; its death signal stops this process
