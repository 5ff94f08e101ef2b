"""How the supervisor watches its serving processes' heartbeats (`Supervisor._look_after_children`),
on real child processes (`sleep`) and real pipes; the end-to-end case is in
tests/e2e/test_processes.py (a process stopped with SIGSTOP)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from idservice.entrypoints.heartbeat import (
    HEARTBEAT,
    HUNG_AFTER_SECONDS,
    READY,
    SUPERVISOR_PAUSED_SECONDS,
)
from idservice.entrypoints.supervisor import SHUTDOWN_MARGIN_SECONDS, Slot, Supervisor
from tests.conftest import make_settings


@pytest.fixture
def supervisor(tmp_path: Path) -> Supervisor:
    return Supervisor(make_settings(tmp_path, f"sqlite:///{tmp_path / 'idservice.db'}"))


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "120"])
    yield process
    process.kill()
    process.wait()


def serving_slot(supervisor: Supervisor, process: subprocess.Popen[bytes]) -> tuple[Slot, int]:
    """Slot 1 holding `process`, ready, its pipe's write end returned."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    slot = supervisor.slots[0]
    slot.process, slot.ready_fd = process, read_fd
    supervisor.slots = [slot]
    os.write(write_fd, READY)
    supervisor._look_after_children()
    assert slot.ready
    return slot, write_fd


def killed(process: subprocess.Popen[bytes]) -> bool:
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        return False
    return process.returncode == -9


def test_a_process_that_keeps_beating_is_left_alone(
    supervisor: Supervisor, child: subprocess.Popen[bytes]
) -> None:
    slot, write_fd = serving_slot(supervisor, child)
    slot.beat_at -= HUNG_AFTER_SECONDS + 1
    os.write(write_fd, HEARTBEAT)
    supervisor._look_after_children()
    assert child.poll() is None and not slot.hung
    os.close(write_fd)


def test_a_silent_process_is_killed(supervisor: Supervisor, child: subprocess.Popen[bytes]) -> None:
    slot, write_fd = serving_slot(supervisor, child)
    slot.beat_at -= HUNG_AFTER_SECONDS + 1
    supervisor._look_after_children()
    assert slot.hung and killed(child)
    os.close(write_fd)


def test_after_its_own_pause_the_supervisor_gives_every_process_a_fresh_start(
    supervisor: Supervisor, child: subprocess.Popen[bytes]
) -> None:
    slot, write_fd = serving_slot(supervisor, child)
    # The supervisor did not run for a while (a paused container): its children did not either.
    slot.beat_at -= HUNG_AFTER_SECONDS + 1
    supervisor._last_look = time.monotonic() - SUPERVISOR_PAUSED_SECONDS - 1
    supervisor._look_after_children()
    assert child.poll() is None and not slot.hung
    # Silence from then on counts again.
    slot.beat_at -= HUNG_AFTER_SECONDS + 1
    supervisor._look_after_children()
    assert slot.hung and killed(child)
    os.close(write_fd)


def test_a_process_still_running_long_after_it_closed_its_pipe_is_killed(
    supervisor: Supervisor, child: subprocess.Popen[bytes]
) -> None:
    slot, write_fd = serving_slot(supervisor, child)
    os.close(write_fd)  # its own drain is over: it exits now
    supervisor._look_after_children()
    assert slot.closed_at is not None and child.poll() is None and not slot.hung
    slot.closed_at -= SHUTDOWN_MARGIN_SECONDS + 1  # ... but it did not
    supervisor._look_after_children()
    assert slot.hung and killed(child)
