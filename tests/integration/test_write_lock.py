"""SQLite writers of several processes queue on one lock file beside the database."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine

from idservice.adapters.db.write_lock import WriteLock, sqlite_lock_file, write_lock_for

# Holds the write lock of the database given in argv[1] until its stdin closes.
HOLDER = """
import sys
from sqlalchemy import create_engine
from idservice.adapters.db.write_lock import write_lock_for
lock = write_lock_for(create_engine("sqlite:///" + sys.argv[1]))
assert lock is not None and lock.acquire(timeout=30)
print("held", flush=True)
sys.stdin.read()
lock.release()
"""
WAIT_SECONDS = 30.0


def test_the_lock_file_lies_beside_the_database(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'idservice.db'}")
    assert sqlite_lock_file(engine) == tmp_path / "idservice.db.write-lock"


def test_memory_databases_queue_threads_only() -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        lock = write_lock_for(create_engine(url))
        assert lock is not None and lock.lock_file is None, url
        assert lock.acquire(timeout=1)
        assert not lock.acquire(timeout=0.05)  # the thread lock alone still excludes
        lock.release()


def test_postgresql_needs_no_lock() -> None:
    assert write_lock_for(create_engine("postgresql+psycopg://u@127.0.0.1/x")) is None


def test_a_writer_waits_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    database = tmp_path / "idservice.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "held"
        lock = WriteLock(sqlite_lock_file(create_engine(f"sqlite:///{database}")))
        released_at = time.monotonic() + 0.5
        # Released half a second from now: a timer closes the holder's stdin.
        threading.Timer(0.5, holder.stdin.close).start()
        assert lock.acquire(timeout=WAIT_SECONDS)
        assert time.monotonic() >= released_at - 0.05
        lock.release()
    finally:
        holder.kill()
        holder.wait(WAIT_SECONDS)


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    database = tmp_path / "idservice.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(WAIT_SECONDS)
    lock = WriteLock(sqlite_lock_file(create_engine(f"sqlite:///{database}")))
    assert lock.acquire(timeout=WAIT_SECONDS)
    lock.release()
