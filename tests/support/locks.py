"""Concurrent calls from a test: released together (`at_once`), or lined up behind a row lock
held on PostgreSQL (`queued_behind`)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TypeVar

from sqlalchemy import Table, select, text

from idservice.adapters.db import tables as t
from idservice.bootstrap import App

WAIT_SECONDS = 15
T = TypeVar("T")


def at_once(*calls: Callable[[], T]) -> list[T]:
    """Each call on a thread of its own, all released together: their results, in order."""
    start = threading.Barrier(len(calls), timeout=WAIT_SECONDS)

    def released(call: Callable[[], T]) -> T:
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(released, calls))


def queued_behind(
    held: AbstractContextManager[Callable[[int], None]], *calls: Callable[[], T]
) -> list[T]:
    """Start `calls` in threads, each once the ones before it wait behind the held row, then
    let the row go: their results, in the order given (on SQLite they just run at once)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        with held as wait_for:
            futures = []
            for queued, call in enumerate(calls, start=1):
                futures.append(pool.submit(call))
                wait_for(queued)
        return [future.result(timeout=WAIT_SECONDS * 2) for future in futures]


@contextlib.contextmanager
def account_row_held(app: App, account_id: str) -> Iterator[Callable[[int], None]]:
    """On PostgreSQL, the account's row locked by another transaction until the block ends, as
    an UPDATE would lock it (FOR NO KEY UPDATE: writes to the account wait, the foreign-key
    checks of rows referring to it do not); yields a wait for that many calls to be queued on
    a lock. On SQLite (one writer at a time, no row locks) there is nothing to hold."""
    with row_held(app, t.accounts, account_id, key_share=True) as wait_for:
        yield wait_for


@contextlib.contextmanager
def row_held(
    app: App, table: Table, row_id: str, *, key_share: bool
) -> Iterator[Callable[[int], None]]:
    """On PostgreSQL, the row of `table` whose `id` is `row_id` locked by another transaction
    until the block ends: FOR NO KEY UPDATE with `key_share` (rows referring to it may still
    be written), else FOR UPDATE (their foreign-key checks wait too). Yields a wait for that
    many calls to be queued on a lock. On SQLite there is nothing to hold."""
    if app.engine.dialect.name != "postgresql":
        yield lambda _count: None
        return
    with app.engine.connect() as holder, app.engine.connect() as watcher:
        holder.execute(
            select(table.c.id).where(table.c.id == row_id).with_for_update(key_share=key_share)
        )

        def wait_for(count: int) -> None:
            deadline = time.monotonic() + WAIT_SECONDS
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            while watcher.execute(waiting).scalar_one() < count:
                watcher.rollback()
                assert time.monotonic() < deadline, f"fewer than {count} calls waiting"
                time.sleep(0.02)
            watcher.rollback()

        yield wait_for
        holder.rollback()
