"""What the database connection pool does, told to an observer (for metrics): each connection
checked out and in, and how long each checkout took (waiting for a free connection, or opening a
new one, and the pre-ping).

Attached to an engine after it is built (`observe_pool`), so the engine's own construction
(`engine.py`) stays as it is. SQLAlchemy has events for a checkout and a checkin but none for
the start of a checkout, so the pool's `connect` is timed by a wrapper, put back on the new pool
each time the engine's pool is recreated (`Engine.dispose`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Engine, event
from sqlalchemy.pool import Pool, PoolProxiedConnection

# Marks a pool whose `connect` is already timed (a pool is shared by an engine's option copies).
_TIMED = "_idservice_timed_connect"


class ConnectionPoolObserver(Protocol):
    """Told of each checkout (with the seconds it took) and checkin. Called on the threads using
    the database: keep it cheap and non-raising."""

    def checked_out(self) -> None: ...

    def checked_in(self) -> None: ...

    def waited(self, seconds: float) -> None: ...


def observe_pool(engine: Engine, observer: ConnectionPoolObserver) -> None:
    """Tell `observer` about `engine`'s pool from now on (and about the pools that replace it).

    Attach after the engine's own listeners: a checkout listener of theirs may refuse a dead
    connection (the pool then retries), and ours, called last, sees only the checkouts that
    succeeded, so every one it counts is later checked in.
    """

    def on_checkout(_dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        observer.checked_out()

    def on_checkin(_dbapi_connection: Any, _record: Any) -> None:
        observer.checked_in()

    def on_disposed(disposed: Engine) -> None:
        _time_checkouts(disposed.pool, observer.waited)

    # Pool events listened for on the engine move to the pool that replaces it on dispose.
    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "engine_disposed", on_disposed)
    _time_checkouts(engine.pool, observer.waited)


def _time_checkouts(pool: Pool, waited: Callable[[float], None]) -> None:
    if getattr(pool, _TIMED, False):
        return
    connect = pool.connect

    @functools.wraps(connect)
    def timed_connect() -> PoolProxiedConnection:
        started = time.perf_counter()
        try:
            return connect()
        finally:
            waited(time.perf_counter() - started)

    # An instance attribute: the pool class (and so engine.py's choice of it) stays as it is.
    pool.connect = timed_connect  # type: ignore[method-assign]
    setattr(pool, _TIMED, True)
