"""Attempts per caller in fixed windows, shared by every instance through the database."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import BindParameter, Connection, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from idservice.adapters.db import tables as t
from idservice.service_layer.ports import AttemptGate

# A hit re-reads its row when a concurrent hit changed the window under it; more rounds than
# this would mean the row keeps changing, and the attempt is refused for a second.
MAX_HIT_ROUNDS = 8
BUSY_RETRY = timedelta(seconds=1)

_C = t.attempt_counters.c


def _at(name: str) -> BindParameter[datetime]:
    """A datetime parameter converted by the columns' UTC type wherever it stands."""
    return bindparam(name, type_=t.UtcDateTime())


# Statements are built once, here: each call then hits SQLAlchemy's compiled cache without
# rebuilding or re-keying its statement. A parameter of an UPDATE is never named after a column
# of its table (SQLAlchemy would take it for one more column to set).
_KEY = (_C.scope == bindparam("counter_scope"), _C.key_hash == bindparam("counter_key"))
# (`count` under another name: a row is a tuple, whose own `count` is a method.)
_READ = select(_C.window_start, _C.blocked_until, _C.count.label("hits")).where(*_KEY)
# Parameters named after the columns fill them in.
_FIRST = insert(t.attempt_counters)
# Writes that name the window they read.
_SAME_WINDOW = (*_KEY, _C.window_start == _at("read_window_start"))
_NEW_WINDOW = (
    update(t.attempt_counters)
    .where(*_SAME_WINDOW)
    .values(window_start=_at("now"), count=1, blocked_until=None)
)
_COUNT = (
    update(t.attempt_counters).where(*_SAME_WINDOW).values(count=_C.count + 1).returning(_C.count)
)
_UNCOUNT = update(t.attempt_counters).where(*_SAME_WINDOW).values(count=_C.count - 1)
_BLOCK = update(t.attempt_counters).where(*_KEY).values(blocked_until=_at("until"))
_RELEASE = (
    update(t.attempt_counters)
    .where(*_KEY, _C.window_start <= _at("counted_at"), _C.count > 0)
    .values(count=_C.count - 1)
)
_PURGE = delete(t.attempt_counters).where(
    _C.window_start < _at("before"),
    (_C.blocked_until.is_(None)) | (_C.blocked_until < _at("before")),
)


class SqlAttemptCounterRepository:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def hit(
        self,
        scope: str,
        key_hash: str,
        *,
        now: datetime,
        window: timedelta,
        limit: int,
        block_for: timedelta | None,
    ) -> AttemptGate:
        """Count one attempt.

        Every write names the window it read (`window_start`), so two instances that both see
        a window end cannot both start a new one: the loser reads the row again. The count is
        raised in the database (`count + 1 ... RETURNING`), so concurrent hits never admit more
        than `limit` in a window on PostgreSQL (row locks) or SQLite (one writer at a time).
        """
        key = {"counter_scope": scope, "counter_key": key_hash}
        for _ in range(MAX_HIT_ROUNDS):
            row = self._c.execute(_READ, key).first()
            if row is None:
                try:
                    with self._c.begin_nested():
                        self._c.execute(
                            _FIRST,
                            {"scope": scope, "key_hash": key_hash, "window_start": now, "count": 1},
                        )
                    return AttemptGate(admitted=True)
                except IntegrityError:  # a concurrent first attempt: count on its row
                    continue
            if row.blocked_until is not None and row.blocked_until > now:
                return AttemptGate(admitted=False, blocked_until=row.blocked_until)
            same_window = {**key, "read_window_start": row.window_start}
            if block_for is None and row.window_start + window > now and row.hits >= limit:
                # At the limit already: refused on the read, no write and no row lock (a flood
                # from one address is then reads). A count a release lowered since is seen by
                # the next call.
                return AttemptGate(admitted=False, blocked_until=row.window_start + window)
            if row.window_start + window <= now:
                started = self._c.execute(_NEW_WINDOW, {**same_window, "now": now}).rowcount
                if started:
                    return AttemptGate(admitted=True)
                continue
            count = self._c.execute(_COUNT, same_window).scalar_one_or_none()
            if count is None:
                continue
            if count <= limit:
                return AttemptGate(admitted=True)
            if block_for is None:
                # A fixed window refuses while its count is at the limit, without counting the
                # refusal or blocking beyond it: a count `release` lowers (a login that turned
                # out right) admits again, and the window's end admits all.
                self._c.execute(_UNCOUNT, same_window)
                return AttemptGate(admitted=False, blocked_until=row.window_start + window)
            until = now + block_for
            self._c.execute(_BLOCK, {**key, "until": until})
            return AttemptGate(admitted=False, blocked_until=until)
        return AttemptGate(admitted=False, blocked_until=now + BUSY_RETRY)

    def release(self, scope: str, key_hash: str, *, counted_at: datetime) -> None:
        self._c.execute(
            _RELEASE, {"counter_scope": scope, "counter_key": key_hash, "counted_at": counted_at}
        )

    def purge_expired(self, *, before: datetime) -> int:
        """Forget counters whose window started before `before` and that block nobody."""
        return self._c.execute(_PURGE, {"before": before}).rowcount
