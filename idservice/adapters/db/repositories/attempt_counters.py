"""Attempts per caller in fixed windows, shared by every instance through the database."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from idservice.adapters.db import tables as t
from idservice.service_layer.ports import AttemptGate


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
        block_for: timedelta,
    ) -> AttemptGate:
        a = t.attempt_counters.c
        key = (a.scope == scope, a.key_hash == key_hash)
        row = self._c.execute(select(a.window_start, a.count, a.blocked_until).where(*key)).first()
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
                row = self._c.execute(
                    select(a.window_start, a.count, a.blocked_until).where(*key)
                ).one()
        if row.blocked_until is not None and row.blocked_until > now:
            return AttemptGate(admitted=False, blocked_until=row.blocked_until)
        if row.window_start + window <= now:
            self._c.execute(
                update(t.attempt_counters)
                .where(*key)
                .values(window_start=now, count=1, blocked_until=None)
            )
            return AttemptGate(admitted=True)
        count = self._c.execute(
            update(t.attempt_counters).where(*key).values(count=a.count + 1).returning(a.count)
        ).scalar_one()
        if count > limit:
            until = now + block_for
            self._c.execute(update(t.attempt_counters).where(*key).values(blocked_until=until))
            return AttemptGate(admitted=False, blocked_until=until)
        return AttemptGate(admitted=True)

    def purge_expired(self, *, before: datetime) -> int:
        """Forget counters whose window started before `before` and that block nobody."""
        a = t.attempt_counters.c
        return self._c.execute(
            delete(t.attempt_counters).where(
                a.window_start < before,
                (a.blocked_until.is_(None)) | (a.blocked_until < before),
            )
        ).rowcount
