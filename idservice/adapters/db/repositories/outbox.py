"""The outbox: events written in the state change's transaction, payloads encrypted."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, tuple_, update

from idservice.adapters.crypto import FieldCipher, FieldDecryptError
from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import OUTBOX_PAYLOAD
from idservice.domain.events import Event
from idservice.service_layer.ports import PendingEvent


class SqlOutboxRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def add(self, event: Event) -> None:
        self._c.execute(
            insert(t.outbox).values(
                id=event.id,
                type=event.type.value,
                payload_ct=OUTBOX_PAYLOAD.encrypt(self._cipher, event.id, event.document()),
                created_at=event.occurred_at,
                attempts=0,
                next_attempt_at=event.occurred_at,
            )
        )

    def due(
        self, *, now: datetime, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[tuple[str, datetime]]:
        """(id, created_at) of undelivered events due by `now`, oldest first.

        With `after` (a previous page's last (created_at, id)), only the events after it.
        """
        o = t.outbox.c
        query = select(o.id, o.created_at).where(o.delivered_at.is_(None), o.next_attempt_at <= now)
        if after is not None:
            query = query.where(tuple_(o.created_at, o.id) > tuple_(*after))
        rows = self._c.execute(query.order_by(o.created_at, o.id).limit(limit)).all()
        return [(row.id, row.created_at) for row in rows]

    def claim(self, event_id: str, *, now: datetime, until: datetime) -> PendingEvent | None:
        """Take a due event for delivery until `until` (a lease); None if another took it.

        A dispatcher that dies mid-delivery leaves the lease to run out, and the event is sent
        again (at least once; receivers de-duplicate by `event_id`).
        """
        o = t.outbox.c
        taken = self._c.execute(
            update(t.outbox)
            .where(o.id == event_id, o.delivered_at.is_(None), o.next_attempt_at <= now)
            .values(next_attempt_at=until)
        ).rowcount
        if taken != 1:
            return None
        row = self._c.execute(
            select(o.type, o.attempts, o.payload_ct).where(o.id == event_id)
        ).one()
        try:
            body: bytes | None = OUTBOX_PAYLOAD.decrypt(
                self._cipher, event_id, row.payload_ct
            ).encode("utf-8")
        except FieldDecryptError:
            body = None  # e.g. its key left the ring: reported, retried, never blocking others
        return PendingEvent(id=event_id, type=row.type, attempts=row.attempts, body=body)

    def mark_delivered(self, event_id: str, *, now: datetime) -> None:
        o = t.outbox.c
        self._c.execute(
            update(t.outbox)
            .where(o.id == event_id, o.delivered_at.is_(None))
            .values(delivered_at=now, attempts=o.attempts + 1)
        )

    def reschedule(
        self, event_id: str, *, lease: datetime, attempts: int, next_attempt_at: datetime
    ) -> bool:
        """Set the next attempt, only while the caller's lease is still the event's."""
        o = t.outbox.c
        result = self._c.execute(
            update(t.outbox)
            .where(o.id == event_id, o.delivered_at.is_(None), o.next_attempt_at == lease)
            .values(attempts=attempts, next_attempt_at=next_attempt_at)
        )
        return bool(result.rowcount == 1)

    def purge_delivered(self, *, before: datetime) -> int:
        """Delete events delivered before `before` (their payloads may hold personal data)."""
        o = t.outbox.c
        return self._c.execute(
            delete(t.outbox).where(o.delivered_at.is_not(None), o.delivered_at < before)
        ).rowcount

    def delete_matching(self, event_type: str, *, key: str, values: set[str]) -> int:
        """Delete the events of `event_type` whose data has `key` in `values` (destruction).

        Payloads are encrypted, so each candidate is decrypted once to be matched; one that
        cannot be decrypted is skipped (its key has left the ring: nobody can read it).
        """
        if not values:
            return 0
        o = t.outbox.c
        doomed = []
        for row in self._c.execute(select(o.id, o.payload_ct).where(o.type == event_type)):
            try:
                plain = OUTBOX_PAYLOAD.decrypt(self._cipher, row.id, row.payload_ct)
            except FieldDecryptError:
                continue
            if json.loads(plain).get("data", {}).get(key) in values:
                doomed.append(row.id)
        if not doomed:
            return 0
        return self._c.execute(delete(t.outbox).where(o.id.in_(doomed))).rowcount
