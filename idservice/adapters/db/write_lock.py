"""One queue for the SQLite writers of every server process on one database file.

SQLite lets one writer in at a time; a writer that finds the database locked sleeps and retries
in SQLite's busy handler, which is neither fair nor quick under contention. Writers therefore
queue: first on a lock of their own process (`threading.Lock`, with the caller's timeout), then,
for a database file, on an exclusive `flock` of a lock file beside it (`<database>.write-lock`),
which serialises the processes (`IDSERVICE_PROCESSES`, or several instances on one file). The
kernel releases a `flock` when its process dies, so a killed process never leaves the queue
stuck. `:memory:` and `file:` URI databases belong to one process: the thread lock alone.

POSIX record locks (`lockf`) are per process and `flock` is per open file, so the thread lock is
what keeps the threads of one process apart; the file lock is taken only by the thread at the
head of its process's queue.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from sqlalchemy import Engine

LOCK_FILE_SUFFIX = ".write-lock"


class WriteLock:
    """The writers' lock of one process: `acquire(timeout)` then `release()`."""

    def __init__(self, lock_file: Path | None = None) -> None:
        self._threads = threading.Lock()
        self._lock_file = lock_file
        self._fd: int | None = None

    @property
    def lock_file(self) -> Path | None:
        return self._lock_file

    def acquire(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for this process's turn, then for the file's.

        The file lock is waited for in the kernel's queue (a blocking `flock`): another
        process holds it only for one write transaction, and its death releases it.
        """
        if not self._threads.acquire(timeout=timeout):
            return False
        if self._lock_file is None:
            return True
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return True

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _file(self) -> int:
        # Opened once per process (under the thread lock) and kept open for the next writes.
        if self._fd is None:
            assert self._lock_file is not None
            self._fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd


def sqlite_lock_file(engine: Engine) -> Path | None:
    """`<database>.write-lock` for a SQLite database file; None for memory and URI databases."""
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if engine.url.query.get("mode") == "memory":
        return None
    path = Path(database).expanduser()
    return path.with_name(path.name + LOCK_FILE_SUFFIX)


def write_lock_for(engine: Engine) -> WriteLock | None:
    """The writers' queue for SQLite (None for PostgreSQL, whose writers need none)."""
    if engine.dialect.name != "sqlite":
        return None
    return WriteLock(sqlite_lock_file(engine))
