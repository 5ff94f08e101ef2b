"""A server process's heartbeat: its RPC pool's progress (`TrackedExecutor.stalled_for`) and the
beats it writes for the supervisor (`server_process.beat`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from idservice.entrypoints.grpc.pools import OVERFLOW_AFTER_SECONDS, HandlerPools, TrackedExecutor
from idservice.entrypoints.heartbeat import HEARTBEAT, beat


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pool(clock: FakeClock) -> Iterator[TrackedExecutor]:
    executor = TrackedExecutor(max_workers=1, thread_name_prefix="test", clock=clock)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def test_an_idle_pool_is_never_stalled(pool: TrackedExecutor, clock: FakeClock) -> None:
    clock.now += 3600
    assert pool.stalled_for() == 0.0
    pool.submit(lambda: None).result()
    clock.now += 3600
    assert pool.stalled_for() == 0.0


def test_a_pool_with_every_thread_busy_and_tasks_queued_is_stalled_since_they_queued(
    pool: TrackedExecutor, clock: FakeClock
) -> None:
    release = threading.Event()
    stuck = pool.submit(release.wait)  # the one thread is busy: not a stall yet
    clock.now += 3600  # one long task for an hour: still not a stall
    assert pool.stalled_for() == 0.0
    queued = pool.submit(lambda: None)  # waits behind it: the stall starts now
    assert pool.stalled_for() == 0.0
    clock.now += 45
    assert pool.stalled_for() == 45.0
    clock.now += 30
    assert pool.stalled_for() == 75.0
    release.set()
    stuck.result(5)
    queued.result(5)
    assert pool.stalled_for() == 0.0


def test_long_tasks_beside_free_threads_are_no_stall(clock: FakeClock) -> None:
    executor = TrackedExecutor(max_workers=2, thread_name_prefix="test", clock=clock)
    release = threading.Event()
    try:
        long_one = executor.submit(release.wait)  # a reflection stream, a long lock wait
        clock.now += 600
        assert executor.stalled_for() == 0.0
        executor.submit(lambda: None).result(5)  # the other thread serves
        clock.now += 600
        assert executor.stalled_for() == 0.0
    finally:
        release.set()
        long_one.result(5)
        executor.shutdown(wait=True)


def test_a_finished_task_restarts_the_stall_clock(clock: FakeClock) -> None:
    executor = TrackedExecutor(max_workers=2, thread_name_prefix="test", clock=clock)
    first, second = threading.Event(), threading.Event()
    try:
        a = executor.submit(first.wait)
        executor.submit(second.wait)
        queued = executor.submit(lambda: None)
        clock.now += 50
        assert executor.stalled_for() == 50.0
        first.set()
        a.result(5)
        queued.result(5)  # a thread came free and took it
        assert executor.stalled_for() == 0.0
        c = executor.submit(first.wait)  # already set: finishes
        c.result(5)
        held = threading.Event()
        d = executor.submit(held.wait)
        e = executor.submit(lambda: None)  # both threads busy again, one queued
        clock.now += 10
        assert executor.stalled_for() == 10.0
        held.set()
        d.result(5)
        e.result(5)
    finally:
        first.set()
        second.set()
        executor.shutdown(wait=True)


def _beats(read_fd: int) -> bytes:
    os.set_blocking(read_fd, False)
    try:
        return os.read(read_fd, 4096)
    except BlockingIOError:
        return b""


def test_beats_go_out_while_the_pool_moves_and_stop_while_it_is_stalled(
    pool: TrackedExecutor, clock: FakeClock
) -> None:
    read_fd, write_fd = os.pipe()
    stop = threading.Event()
    heart = threading.Thread(
        target=beat, args=(write_fd, pool, stop), kwargs={"every": 0.01, "stalled_after": 60.0}
    )
    heart.start()
    release = threading.Event()
    try:
        threading.Event().wait(0.2)
        assert set(_beats(read_fd)) == set(HEARTBEAT)  # idle: it beats
        stuck = pool.submit(release.wait)
        queued = pool.submit(lambda: None)  # behind the stuck one: the stall starts
        clock.now += 59
        threading.Event().wait(0.2)
        assert _beats(read_fd)  # not yet stalled for long: it beats
        clock.now += 2
        threading.Event().wait(0.2)
        _beats(read_fd)  # a beat may have been on its way
        threading.Event().wait(0.2)
        assert _beats(read_fd) == b""  # stalled for 61 s: silent
        release.set()
        stuck.result(5)
        queued.result(5)
        threading.Event().wait(0.2)
        assert _beats(read_fd)  # moving again: it beats again
    finally:
        release.set()
        stop.set()
        heart.join(5)
        os.close(read_fd)
        os.close(write_fd)
    assert not heart.is_alive()


def test_a_full_pipe_or_a_gone_supervisor_does_not_stop_the_process(
    pool: TrackedExecutor,
) -> None:
    read_fd, write_fd = os.pipe()
    stop = threading.Event()
    heart = threading.Thread(target=beat, args=(write_fd, pool, stop), kwargs={"every": 0.001})
    heart.start()
    threading.Event().wait(0.3)  # nobody reads: the pipe may fill, the writes are dropped
    assert heart.is_alive()
    os.close(read_fd)  # the reader is gone: the next write fails and the heart stops quietly
    heart.join(5)
    assert not heart.is_alive()
    os.close(write_fd)


def test_the_two_handler_pools_are_counted_and_waited_for_as_one(clock: FakeClock) -> None:
    main = TrackedExecutor(max_workers=1, thread_name_prefix="main", clock=clock)
    pools = HandlerPools(
        main=main,
        quick=TrackedExecutor(max_workers=1, thread_name_prefix="quick", clock=clock),
    )
    release_main, release_quick = threading.Event(), threading.Event()
    try:
        running = [pools.main.submit(release_main.wait), pools.quick.submit(release_quick.wait)]
        queued = pools.quick.submit(lambda: None)  # behind the quick pool's one thread
        assert pools.outstanding() == 3
        release_main.set()
        running[0].result(5)
        assert not pools.wait_idle(0.05)  # the quick pool still works
        release_quick.set()
        assert pools.wait_idle(5)
        assert queued.done() and pools.outstanding() == 0
        assert (pools.main.finished, pools.quick.finished) == (1, 2)
    finally:
        release_main.set()
        release_quick.set()
        pools.shutdown(wait=True)


def test_a_held_quick_pool_hands_new_calls_to_the_main_pool_and_stops_no_heartbeat(
    clock: FakeClock,
) -> None:
    """A client that sends headers and no message holds a quick thread while grpc waits for
    the message: once no quick call has finished for OVERFLOW_AFTER_SECONDS, the next ones run
    on the main pool, and the process is not taken for hung."""
    main = TrackedExecutor(max_workers=2, thread_name_prefix="main", clock=clock)
    quick = TrackedExecutor(max_workers=1, thread_name_prefix="quick", clock=clock, overflow=main)
    pools = HandlerPools(main=main, quick=quick)
    held = threading.Event()
    try:
        pools.quick.submit(held.wait)
        early = quick.submit(lambda: "queued")  # busy a moment only: it waits its turn
        assert quick.outstanding() == 2
        clock.now += 2 * OVERFLOW_AFTER_SECONDS
        spilled = quick.submit(lambda: "ran")
        assert spilled.result(5) == "ran"  # on the main pool, while the quick one is held
        assert (quick.outstanding(), main.finished) == (2, 1)
        clock.now += 3600
        assert quick.stalled_for() > 3600
        assert pools.stalled_for() == 0.0  # the main pool serves: no reason to restart
        held.set()
        assert early.result(5) == "queued"
    finally:
        held.set()
        pools.shutdown(wait=True)
