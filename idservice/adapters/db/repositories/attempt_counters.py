"""Attempts per caller in fixed windows, shared by every instance through the database."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from idservice.adapters.db import tables as t
from idservice.service_layer.ports import AttemptGate

# A hit re-reads its row when a concurrent hit changed the window under it; more rounds than
# this would mean the row keeps changing, and the attempt is refused for a second.
MAX_HIT_ROUNDS = 8
BUSY_RETRY = timedelta(seconds=1)


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
        a = t.attempt_counters.c
        key = (a.scope == scope, a.key_hash == key_hash)
        for _ in range(MAX_HIT_ROUNDS):
            row = self._c.execute(select(a.window_start, a.blocked_until).where(*key)).first()
            if row is None:
                try:
                    with self._c.begin_nested():
                        self._c.execute(
                            insert(t.attempt_counters).values(
                                scope=scope, key_hash=key_hash, window_start=now, count=1
                            )
                        )
                    return AttemptGate(admitted=True)
                except IntegrityError:  # a concurrent first attempt: count on its row
                    continue
            if row.blocked_until is not None and row.blocked_until > now:
                return AttemptGate(admitted=False, blocked_until=row.blocked_until)
            same_window = (*key, a.window_start == row.window_start)
            if row.window_start + window <= now:
                started = self._c.execute(
                    update(t.attempt_counters)
                    .where(*same_window)
                    .values(window_start=now, count=1, blocked_until=None)
                ).rowcount
                if started:
                    return AttemptGate(admitted=True)
                continue
            count = self._c.execute(
                update(t.attempt_counters)
                .where(*same_window)
                .values(count=a.count + 1)
                .returning(a.count)
            ).scalar_one_or_none()
            if count is None:
                continue
            if count <= limit:
                return AttemptGate(admitted=True)
            until = now + block_for if block_for is not None else row.window_start + window
            self._c.execute(update(t.attempt_counters).where(*key).values(blocked_until=until))
            return AttemptGate(admitted=False, blocked_until=until)
        return AttemptGate(admitted=False, blocked_until=now + BUSY_RETRY)

    def release(self, scope: str, key_hash: str, *, counted_at: datetime) -> None:
        a = t.attempt_counters.c
        self._c.execute(
            update(t.attempt_counters)
            .where(
                a.scope == scope,
                a.key_hash == key_hash,
                a.window_start <= counted_at,
                a.count > 0,
            )
            .values(count=a.count - 1)
        )

    def purge_expired(self, *, before: datetime) -> int:
        """Forget counters whose window started before `before` and that block nobody."""
        a = t.attempt_counters.c
        return self._c.execute(
            delete(t.attempt_counters).where(
                a.window_start < before,
                (a.blocked_until.is_(None)) | (a.blocked_until < before),
            )
        ).rowcount
