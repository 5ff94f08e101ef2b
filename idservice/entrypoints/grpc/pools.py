"""The API's handler threads: a pool that can wait for its tasks and tell when it has stalled
(`TrackedExecutor`), and the two pools every server process runs calls on (`HandlerPools`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

from idservice.config import Settings

# A quick pool whose every thread has been busy this long with no task finishing hands new
# tasks to the main pool: its calls take well under a millisecond each, so it is held (a client
# that sent headers and no message holds a thread while grpc waits for the message).
OVERFLOW_AFTER_SECONDS = 0.05


class TrackedExecutor(futures.ThreadPoolExecutor):
    """A thread pool that can wait until every task handed to it has finished, and tell when
    it has stalled: every thread busy, tasks queued behind them, and none finishing.

    With `overflow`, a task submitted while every thread is busy and none has finished for
    `overflow_after` seconds goes to `overflow` instead of waiting here.
    """

    def __init__(
        self,
        max_workers: int,
        thread_name_prefix: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        overflow: futures.Executor | None = None,
        overflow_after: float = OVERFLOW_AFTER_SECONDS,
    ) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._idle = threading.Condition()
        self._outstanding = 0
        self._thread_count = max_workers
        self._clock = clock
        self._overflow = overflow
        self._overflow_after = overflow_after
        # Tasks finished (or refused by a pool shut down).
        self.finished = 0
        # When a task last finished, or tasks last began to queue behind busy threads.
        self._progress_at = clock()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        with self._idle:
            held = (
                self._overflow is not None
                and self._outstanding >= self._thread_count
                and self._clock() - self._progress_at >= self._overflow_after
            )
            if not held:
                if self._outstanding == self._thread_count:
                    self._progress_at = self._clock()  # the first task to wait for a thread
                self._outstanding += 1
        if held:
            assert self._overflow is not None
            return self._overflow.submit(fn, *args, **kwargs)
        try:
            return super().submit(self._run, fn, *args, **kwargs)
        except BaseException:
            self._finished()
            raise

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._idle:
            self.finished += 1
            self._outstanding -= 1
            self._progress_at = self._clock()
            if self._outstanding == 0:
                self._idle.notify_all()

    def stalled_for(self) -> float:
        """Seconds for which every thread has been busy with tasks queued behind them and none
        has finished (0 while a thread is free): a pool whose every thread is stuck. One long
        task, or a few, while other threads serve is not a stall."""
        with self._idle:
            if self._outstanding <= self._thread_count:
                return 0.0
            return max(self._clock() - self._progress_at, 0.0)

    def outstanding(self) -> int:
        """Tasks queued or running."""
        return self._outstanding

    def wait_idle(self, timeout: float) -> bool:
        """True once no task is queued or running; False if `timeout` seconds pass first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout=max(timeout, 0.0))


class HandlerPools:
    """The API's two thread pools, seen as one by the gate, the drain and the heartbeat.

    - `main` (IDSERVICE_MAX_WORKERS threads) runs every call that may wait on something other
      than the database: an Argon2 hash, an identity or SNS provider, a notification.
    - `quick` runs the calls of `QUICK_METHODS`, which only compute and use the database. With
      SQLite, whose statements never wait on a network, a few threads keep the CPU busy, and
      every thread more only competes for the interpreter's lock: 16 calls in flight on 64
      threads cost 15–30 % more CPU per call than on 4 (docs/performance.md). A PostgreSQL
      statement waits for its round trip, so there the pool is larger. A quick pool held for
      `OVERFLOW_AFTER_SECONDS` (every thread busy, none finishing) sends new calls to `main`.
    """

    def __init__(self, main: TrackedExecutor, quick: TrackedExecutor) -> None:
        self.main = main
        self.quick = quick

    def outstanding(self) -> int:
        """Tasks queued or running on either pool."""
        return self.main.outstanding() + self.quick.outstanding()

    def stalled_for(self) -> float:
        """The main pool's stall. A held quick pool hands new calls to the main pool
        (`overflow`), so it leaves no call unserved that a restart would serve; a process whose
        calls hang for good stalls the main pool with them."""
        return self.main.stalled_for()

    def wait_idle(self, timeout: float) -> bool:
        """True once neither pool has a task queued or running; False if `timeout` seconds
        pass first."""
        deadline = time.monotonic() + max(timeout, 0.0)
        return self.main.wait_idle(timeout) and self.quick.wait_idle(deadline - time.monotonic())

    def shutdown(self, *, wait: bool = True, cancel_futures: bool = False) -> None:
        self.main.shutdown(wait=wait, cancel_futures=cancel_futures)
        self.quick.shutdown(wait=wait, cancel_futures=cancel_futures)


# Calls that compute and use the database, nothing else (no Argon2, no provider over HTTP, no
# notification): the hot token and read paths. They run on `HandlerPools.quick`.
QUICK_METHODS = frozenset(
    {
        "IntrospectToken",
        "GetJwks",
        "RefreshSession",
        "Logout",
        "GetAccount",
        "CheckAge",
        "GetConsentRequest",
        "ListWards",
        "GetWard",
    }
)
# Threads of the quick pool of each server process. One process runs Python on one CPU at a
# time, so on SQLite 4 keep it busy (2 to 4 measured alike, 8 and 64 alike and worse).
QUICK_THREADS_SQLITE = 4
QUICK_THREADS_POSTGRES = 16


def quick_threads(settings: Settings) -> int:
    """The quick pool's size: 4 on SQLite, 16 on PostgreSQL, at most IDSERVICE_MAX_WORKERS."""
    sqlite = settings.database_url.startswith("sqlite")
    return min(QUICK_THREADS_SQLITE if sqlite else QUICK_THREADS_POSTGRES, settings.max_workers)
