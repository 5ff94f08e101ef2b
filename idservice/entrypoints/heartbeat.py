"""The heartbeat between a server process and its supervisor (supervisor.py), both sides.

A server process writes `READY` on its pipe once it serves, and then `HEARTBEAT` every
`HEARTBEAT_SECONDS` (`beat`), through its drain too, except while its RPC pool is stalled:
every thread busy, calls queued, none finishing for `STALLED_AFTER_SECONDS`. The supervisor kills
a serving process silent for `HUNG_AFTER_SECONDS`; after a pause of its own of
`SUPERVISOR_PAUSED_SECONDS` or more it first gives every process a fresh start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from idservice.entrypoints.grpc.pools import HandlerPools, TrackedExecutor
    from idservice.entrypoints.supervisor import Slot

log = logging.getLogger("idservice")

READY = b"ready"
HEARTBEAT = b"."
HEARTBEAT_SECONDS = 1.0
STALLED_AFTER_SECONDS = 60.0
HUNG_AFTER_SECONDS = 15.0
# A supervisor that itself did not run for this long (the container paused, the machine
# stalled) cannot tell silence from its own absence.
SUPERVISOR_PAUSED_SECONDS = 5.0


def beat(
    fd: int,
    executor: TrackedExecutor | HandlerPools,
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


def take_messages(slot: Slot, now: float) -> None:
    """Take the readiness message and the heartbeats a server process has sent (supervisor)."""
    while slot.ready_fd is not None:
        try:
            data = os.read(slot.ready_fd, 4096)
        except BlockingIOError:
            return
        if not data:  # the process closed it: its drain is over and it exits
            slot.close_pipe()
            slot.closed_at = now
            return
        slot.beat_at = now
        if not slot.ready:
            if not data.startswith(READY):
                slot.close_pipe()  # not ours to understand: the exit will tell
                return
            slot.ready, slot.ready_at, slot.startup_failures = True, now, 0
            log.info("server process %d (pid %d) serving", slot.index, slot.pid)


def kill_if_hung(slot: Slot, now: float, *, exit_margin: float) -> None:
    """Kill a serving process that went silent, or that outlived the end of its own drain by
    `exit_margin` seconds (supervisor)."""
    assert slot.process is not None
    if slot.closed_at is not None:
        # It closed its pipe at the end of a drain of its own (a SIGTERM sent to it alone):
        # it exits at once, unless something holds it up.
        if now - slot.closed_at < exit_margin:
            return
        log.error(
            "server process %d (pid %d) still running %.0fs after its drain: killing it",
            slot.index,
            slot.pid,
            now - slot.closed_at,
        )
    elif slot.ready_fd is None:
        return  # its pipe said something we do not understand: its exit will tell
    else:
        silent = now - slot.beat_at
        if silent < HUNG_AFTER_SECONDS:
            return
        log.error(
            "server process %d (pid %d) sent no heartbeat for %.0fs (stopped, stuck, or "
            "every RPC thread busy with none finishing for %.0fs): killing it",
            slot.index,
            slot.pid,
            silent,
            STALLED_AFTER_SECONDS,
        )
    slot.hung = True
    with contextlib.suppress(ProcessLookupError):
        slot.process.kill()
