"""The outbox: events written in the state change's transaction, payloads encrypted.

Order is (created_at, position, id); `position` counts the events one transaction wrote, so two
events of one transaction keep their order. An event is held back while an earlier event of its
account is neither delivered nor dead: one NOT EXISTS subquery on the `account_id` index, in
`due` and again in `claim`. A lease is the `next_attempt_at` a claim set; the writes that end a
delivery match it exactly, so a dispatcher whose lease ran out changes nothing.

The statements of the dispatch path are built once (module level, a `bindparam` for each
value), so each call reuses SQLAlchemy's compiled form. A claim is one `UPDATE ... RETURNING`:
the lease and the event's document in one statement.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Integer,
    String,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    tuple_,
    update,
)

from idservice.adapters.crypto import FieldCipher, FieldDecryptError
from idservice.adapters.db import tables as t
from idservice.adapters.db.compiled import CompiledStatement
from idservice.adapters.db.encrypted_columns import OUTBOX_PAYLOAD
from idservice.domain.events import Event
from idservice.domain.guardian_consent import ConsentRequestStatus
from idservice.service_layer.ports import DueEvent, OutboxEntry, PendingEvent

# What `last_error` holds at most (the column's width).
ERROR_CHARS = 200

_o = t.outbox.c


def _order(table: Any) -> ColumnElement[Any]:
    return tuple_(table.created_at, table.position, table.id)


def _held_back() -> ColumnElement[bool]:
    """An earlier event of the same account is neither delivered nor dead (correlated to the
    outer `outbox`)."""
    earlier = t.outbox.alias("earlier").c
    return exists().where(
        earlier.account_id == _o.account_id,
        earlier.delivered_at.is_(None),
        earlier.dead_at.is_(None),
        _order(earlier) < _order(_o),
    )


def _at(name: str) -> BindParameter[datetime]:
    """A parameter for a datetime column: converted to UTC like the column's own values."""
    return bindparam(name, type_=t.UtcDateTime())


# Built once; the insert (an event of every sign-up and reuse) runs on the driver's cursor
# (compiled.py).
_ADD = CompiledStatement(
    insert(t.outbox),
    columns=(
        "id",
        "type",
        "payload_ct",
        "created_at",
        "attempts",
        "next_attempt_at",
        "account_id",
        "position",
    ),
)
_DUE_NOW = (
    _o.delivered_at.is_(None),
    _o.dead_at.is_(None),
    _o.next_attempt_at <= _at("now"),
    ~_held_back(),
)
_DUE_ORDER = (_o.created_at, _o.position, _o.id)
_DUE = (
    select(_o.id, _o.created_at, _o.position)
    .where(*_DUE_NOW)
    .order_by(*_DUE_ORDER)
    .limit(bindparam("limit", type_=Integer))
)
_DUE_AFTER = (
    select(_o.id, _o.created_at, _o.position)
    .where(
        *_DUE_NOW,
        _order(_o)
        > tuple_(
            _at("after_created_at"),
            bindparam("after_position", type_=Integer),
            bindparam("after_id", type_=String),
        ),
    )
    .order_by(*_DUE_ORDER)
    .limit(bindparam("limit", type_=Integer))
)
_CLAIM = (
    update(t.outbox)
    .where(_o.id == bindparam("event_id"), *_DUE_NOW)
    .values(next_attempt_at=_at("until"))
    .returning(_o.type, _o.attempts, _o.payload_ct, _o.created_at)
)
# The writes that end a delivery: only while the caller's lease is still the event's.
_UNDER_LEASE = and_(
    _o.id == bindparam("event_id"),
    _o.delivered_at.is_(None),
    _o.dead_at.is_(None),
    _o.next_attempt_at == _at("lease"),
)
_MARK_DELIVERED = (
    update(t.outbox).where(_UNDER_LEASE).values(delivered_at=_at("now"), attempts=_o.attempts + 1)
)
_r = t.guardian_consent_requests.c
_DELETE_UNLESS_PENDING = delete(t.outbox).where(
    _o.id == bindparam("event_id"),
    ~exists().where(
        _r.id == bindparam("request_id"), _r.status == ConsentRequestStatus.PENDING.value
    ),
)
_RESCHEDULE = (
    update(t.outbox)
    .where(_UNDER_LEASE)
    .values(
        attempts=bindparam("attempt_count", type_=Integer),
        next_attempt_at=_at("next_at"),
        last_error=bindparam("error", type_=String),
    )
)
_MARK_DEAD = (
    update(t.outbox)
    .where(_UNDER_LEASE)
    .values(
        attempts=bindparam("attempt_count", type_=Integer),
        dead_at=_at("now"),
        last_error=bindparam("error", type_=String),
    )
)


class SqlOutboxRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher
        # One repository per unit of work: the positions of this transaction's events.
        self._positions = 0

    def add(self, event: Event) -> None:
        account_id = event.data.get("account_id")
        _ADD.rowcount(
            self._c,
            {
                "id": event.id,
                "type": event.type.value,
                "payload_ct": OUTBOX_PAYLOAD.encrypt(self._cipher, event.id, event.document()),
                "created_at": event.occurred_at,
                "attempts": 0,
                "next_attempt_at": event.occurred_at,
                "account_id": account_id if isinstance(account_id, str) else None,
                "position": self._positions,
            },
        )
        self._positions += 1

    def due(self, *, now: datetime, limit: int, after: DueEvent | None = None) -> list[DueEvent]:
        params: dict[str, Any] = {"now": now, "limit": max(limit, 0)}
        if after is None:
            rows = self._c.execute(_DUE, params).all()
        else:
            params |= {
                "after_created_at": after.created_at,
                "after_position": after.position,
                "after_id": after.id,
            }
            rows = self._c.execute(_DUE_AFTER, params).all()
        return [
            DueEvent(id=row.id, created_at=row.created_at, position=row.position) for row in rows
        ]

    def claim(self, event_id: str, *, now: datetime, until: datetime) -> PendingEvent | None:
        """Take an event `due` would hand out, for delivery until `until` (the lease).

        A dispatcher that dies mid-delivery leaves the lease to run out, and the event is sent
        again (at least once; receivers de-duplicate by `event_id`).
        """
        row = self._c.execute(_CLAIM, {"event_id": event_id, "now": now, "until": until}).first()
        if row is None:
            return None
        try:
            body: bytes | None = OUTBOX_PAYLOAD.decrypt(
                self._cipher, event_id, row.payload_ct
            ).encode("utf-8")
        except FieldDecryptError:
            body = None  # e.g. its key left the ring: reported, retried, never blocking others
        return PendingEvent(
            id=event_id, type=row.type, attempts=row.attempts, body=body, created_at=row.created_at
        )

    def mark_delivered(
        self,
        event_id: str,
        *,
        lease: datetime,
        now: datetime,
        keep_while_pending: str | None = None,
    ) -> bool:
        """Record the delivery under the caller's lease; with `keep_while_pending`, delete the
        event instead unless that consent request is still pending.

        The UPDATE comes first: it holds the row, so a transaction closing the request that
        deletes the delivered event (`delete_delivered_matching`) waits for this one and then
        finds it delivered; a close committed before the DELETE below is seen by it.
        """
        recorded = self._c.execute(
            _MARK_DELIVERED, {"event_id": event_id, "lease": lease, "now": now}
        ).rowcount
        if recorded != 1:
            return False
        if keep_while_pending is not None:
            self._c.execute(
                _DELETE_UNLESS_PENDING, {"event_id": event_id, "request_id": keep_while_pending}
            )
        return True

    def reschedule(
        self,
        event_id: str,
        *,
        lease: datetime,
        attempts: int,
        next_attempt_at: datetime,
        error: str,
    ) -> bool:
        result = self._c.execute(
            _RESCHEDULE,
            {
                "event_id": event_id,
                "lease": lease,
                "attempt_count": attempts,
                "next_at": next_attempt_at,
                "error": error[:ERROR_CHARS],
            },
        )
        return bool(result.rowcount == 1)

    def mark_dead(
        self, event_id: str, *, lease: datetime, attempts: int, now: datetime, error: str
    ) -> bool:
        result = self._c.execute(
            _MARK_DEAD,
            {
                "event_id": event_id,
                "lease": lease,
                "attempt_count": attempts,
                "now": now,
                "error": error[:ERROR_CHARS],
            },
        )
        return bool(result.rowcount == 1)

    def replay_dead(self, event_ids: Collection[str] | None, *, now: datetime) -> int:
        query = update(t.outbox).where(_o.delivered_at.is_(None), _o.dead_at.is_not(None))
        if event_ids is not None:
            if not event_ids:
                return 0
            query = query.where(_o.id.in_(sorted(set(event_ids))))
        result = self._c.execute(
            query.values(dead_at=None, attempts=0, next_attempt_at=now, last_error=None)
        )
        return int(result.rowcount)

    def undelivered(self, *, limit: int) -> list[OutboxEntry]:
        rows = self._c.execute(
            select(
                _o.id,
                _o.type,
                _o.attempts,
                _o.created_at,
                _o.next_attempt_at,
                _o.dead_at,
                _o.last_error,
            )
            .where(_o.delivered_at.is_(None))
            .order_by(case((_o.dead_at.is_(None), 1), else_=0), _o.created_at, _o.position, _o.id)
            .limit(max(limit, 0))
        ).all()
        return [
            OutboxEntry(
                id=row.id,
                type=row.type,
                attempts=row.attempts,
                created_at=row.created_at,
                next_attempt_at=row.next_attempt_at,
                dead_at=row.dead_at,
                last_error=row.last_error,
            )
            for row in rows
        ]

    def count_undelivered(self) -> tuple[int, int]:
        dead = case((_o.dead_at.is_not(None), 1), else_=0)
        row = self._c.execute(
            select(func.count(), func.coalesce(func.sum(dead), 0)).where(_o.delivered_at.is_(None))
        ).one()
        total, dead_count = int(row[0]), int(row[1])
        return total - dead_count, dead_count

    def purge_delivered(self, *, before: datetime) -> int:
        """Delete events delivered before `before` (their payloads may hold personal data)."""
        return self._c.execute(
            delete(t.outbox).where(_o.delivered_at.is_not(None), _o.delivered_at < before)
        ).rowcount

    def delete_matching(self, event_type: str, *, key: str, values: set[str]) -> int:
        """Delete the events of `event_type` whose data has `key` in `values` (destruction).

        Payloads are encrypted, so each candidate is decrypted once to be matched; one that
        cannot be decrypted is skipped (its key has left the ring: nobody can read it).
        """
        doomed = self._matching(event_type, key, values)
        if not doomed:
            return 0
        return self._c.execute(delete(t.outbox).where(_o.id.in_(doomed))).rowcount

    def delete_delivered_matching(self, event_type: str, *, key: str, values: set[str]) -> int:
        """As `delete_matching`, for delivered events only.

        Candidates are matched whatever their state and the DELETE re-checks `delivered_at`:
        an event whose delivery is being recorded right now is waited for (its row is held)
        and deleted once that commits.
        """
        doomed = self._matching(event_type, key, values)
        if not doomed:
            return 0
        return self._c.execute(
            delete(t.outbox).where(_o.id.in_(doomed), _o.delivered_at.is_not(None))
        ).rowcount

    def _matching(self, event_type: str, key: str, values: set[str]) -> list[str]:
        if not values:
            return []
        doomed = []
        for row in self._c.execute(select(_o.id, _o.payload_ct).where(_o.type == event_type)):
            try:
                plain = OUTBOX_PAYLOAD.decrypt(self._cipher, row.id, row.payload_ct)
            except FieldDecryptError:
                continue
            if json.loads(plain).get("data", {}).get(key) in values:
                doomed.append(row.id)
        return doomed
