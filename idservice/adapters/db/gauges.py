"""A few counts of the stored state for the metrics (the outbox's backlog, consent requests by
state): cheap aggregate reads, taken every few seconds by a background thread, never per scrape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, case, func, select

from idservice.adapters.db import tables as t
from idservice.domain.guardian_consent import ConsentRequestStatus


@dataclass(frozen=True, slots=True)
class StorageGauges:
    """The stored state the metrics show, as of `taken_at`."""

    taken_at: datetime
    # Events neither delivered nor dead, and the age of the oldest of them (0 with none).
    outbox_pending: int
    outbox_oldest_pending_seconds: float
    # Events that gave up (`idservice outbox replay` sends them again).
    outbox_dead_letters: int
    # Every state of ConsentRequestStatus, zero included; a pending request past its window
    # counts as expired (what GetConsentRequest answers), before the purge closes it.
    consent_requests: dict[str, int]


def read_storage_gauges(engine: Engine, now: datetime) -> StorageGauges:
    """Two aggregate queries in one read-only connection (on SQLite no write lock is taken)."""
    o = t.outbox.c
    undelivered = o.delivered_at.is_(None)
    pending = and_(undelivered, o.dead_at.is_(None))
    outbox_query = select(
        func.coalesce(func.sum(case((pending, 1), else_=0)), 0),
        func.coalesce(func.sum(case((o.dead_at.is_not(None), 1), else_=0)), 0),
        func.min(case((pending, o.created_at), else_=None)),
    ).where(undelivered)
    r = t.guardian_consent_requests.c
    state = case(
        (
            and_(r.status == ConsentRequestStatus.PENDING.value, r.expires_at <= now),
            ConsentRequestStatus.EXPIRED.value,
        ),
        else_=r.status,
    )
    # Grouped outside: PostgreSQL does not see two renderings of a bound expression as one.
    states = select(state.label("state")).subquery()
    consent_query = select(states.c.state, func.count()).group_by(states.c.state)
    with engine.execution_options(readonly=True).connect() as connection:
        pending_count, dead_count, oldest = connection.execute(outbox_query).one()
        by_state = {str(name): int(count) for name, count in connection.execute(consent_query)}
    # min() keeps the column's type: an aware datetime on every database, or None.
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return StorageGauges(
        taken_at=now,
        outbox_pending=int(pending_count),
        outbox_oldest_pending_seconds=age,
        outbox_dead_letters=int(dead_count),
        consent_requests={
            status.value: by_state.get(status.value, 0) for status in ConsentRequestStatus
        },
    )
