"""Row locks held from a test, to line concurrent calls up behind them on PostgreSQL."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from sqlalchemy import select, text

from idservice.adapters.db import tables as t
from idservice.bootstrap import App

WAIT_SECONDS = 15


@contextlib.contextmanager
def account_row_held(app: App, account_id: str) -> Iterator[Callable[[int], None]]:
    """On PostgreSQL, the account's row locked by another transaction until the block ends, as
    an UPDATE would lock it (FOR NO KEY UPDATE: writes to the account wait, the foreign-key
    checks of rows referring to it do not); yields a wait for that many calls to be queued on
    a lock. On SQLite (one writer at a time, no row locks) there is nothing to hold."""
    if app.engine.dialect.name != "postgresql":
        yield lambda _count: None
        return
    with app.engine.connect() as holder, app.engine.connect() as watcher:
        holder.execute(
            select(t.accounts.c.id)
            .where(t.accounts.c.id == account_id)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE
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
