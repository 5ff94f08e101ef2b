"""The in-memory outbox repository; mirrors `idservice.adapters.db.repositories.outbox` (the
contract suite in `tests/integration/test_repository_contract_records.py` runs on both).

Order is (created_at, position, id); an event is held back while an earlier event of its account
is neither delivered nor dead; a lease is the `next_attempt_at` a claim set.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime

from idservice.domain.events import Event
from idservice.service_layer.ports import DueEvent, OutboxEntry, PendingEvent
from tests.fakes.storage_state import FakeIntegrityError, FakeState, OutboxRow, StateAccess, utc

# The SQL column `last_error` is String(200).
ERROR_CHARS = 200


def _held_back(state: FakeState, event_id: str, row: OutboxRow) -> bool:
    if row.account_id is None:
        return False
    return any(
        other.account_id == row.account_id
        and other.delivered_at is None
        and other.dead_at is None
        and other.order(other_id) < row.order(event_id)
        for other_id, other in state.outbox.items()
    )


def _queued(row: OutboxRow) -> bool:
    return row.delivered_at is None and row.dead_at is None


class FakeOutboxRepository:
    def __init__(self, access: StateAccess) -> None:
        self._access = access
        self._positions = 0

    def add(self, event: Event) -> None:
        state = self._access.write()
        if event.id in state.outbox:
            raise FakeIntegrityError("pk_outbox")
        occurred_at = utc(event.occurred_at)
        account_id = event.data.get("account_id")
        state.outbox[event.id] = OutboxRow(
            type=event.type.value,
            document=event.document(),
            created_at=occurred_at,
            attempts=0,
            next_attempt_at=occurred_at,
            account_id=account_id if isinstance(account_id, str) else None,
            position=self._positions,
        )
        self._positions += 1

    def due(self, *, now: datetime, limit: int, after: DueEvent | None = None) -> list[DueEvent]:
        now = utc(now)
        state = self._access.read()
        due = sorted(
            row.order(event_id)
            for event_id, row in state.outbox.items()
            if _queued(row) and row.next_attempt_at <= now and not _held_back(state, event_id, row)
        )
        if after is not None:
            cursor = (utc(after.created_at), after.position, after.id)
            due = [entry for entry in due if entry > cursor]
        return [
            DueEvent(id=event_id, created_at=created_at, position=position)
            for created_at, position, event_id in due[: max(limit, 0)]
        ]

    def claim(self, event_id: str, *, now: datetime, until: datetime) -> PendingEvent | None:
        state = self._access.write()
        row = state.outbox.get(event_id)
        if (
            row is None
            or not _queued(row)
            or row.next_attempt_at > utc(now)
            or _held_back(state, event_id, row)
        ):
            return None
        row.next_attempt_at = utc(until)
        return PendingEvent(
            id=event_id,
            type=row.type,
            attempts=row.attempts,
            body=row.document.encode("utf-8"),
            created_at=row.created_at,
        )

    def _leased(self, event_id: str, lease: datetime) -> OutboxRow | None:
        row = self._access.write().outbox.get(event_id)
        if row is None or not _queued(row) or row.next_attempt_at != utc(lease):
            return None
        return row

    def mark_delivered(
        self,
        event_id: str,
        *,
        lease: datetime,
        now: datetime,
        keep_while_pending: str | None = None,
    ) -> bool:
        row = self._leased(event_id, lease)
        if row is None:
            return False
        row.delivered_at, row.attempts = utc(now), row.attempts + 1
        if keep_while_pending is not None:
            state = self._access.write()
            request = state.consent_requests.get(keep_while_pending)
            if request is None or request.status != "pending":
                del state.outbox[event_id]
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
        row = self._leased(event_id, lease)
        if row is None:
            return False
        row.attempts, row.next_attempt_at = attempts, utc(next_attempt_at)
        row.last_error = error[:ERROR_CHARS]
        return True

    def mark_dead(
        self, event_id: str, *, lease: datetime, attempts: int, now: datetime, error: str
    ) -> bool:
        row = self._leased(event_id, lease)
        if row is None:
            return False
        row.attempts, row.dead_at, row.last_error = attempts, utc(now), error[:ERROR_CHARS]
        return True

    def replay_dead(self, event_ids: Collection[str] | None, *, now: datetime) -> int:
        replayed = 0
        for event_id, row in self._access.write().outbox.items():
            if row.delivered_at is not None or row.dead_at is None:
                continue
            if event_ids is not None and event_id not in event_ids:
                continue
            row.dead_at, row.attempts, row.last_error = None, 0, None
            row.next_attempt_at = utc(now)
            replayed += 1
        return replayed

    def undelivered(self, *, limit: int) -> list[OutboxEntry]:
        rows = sorted(
            (
                (row.dead_at is None, row.order(event_id), event_id, row)
                for event_id, row in self._access.read().outbox.items()
                if row.delivered_at is None
            ),
            key=lambda entry: (entry[0], entry[1]),
        )
        return [
            OutboxEntry(
                id=event_id,
                type=row.type,
                attempts=row.attempts,
                created_at=row.created_at,
                next_attempt_at=row.next_attempt_at,
                dead_at=row.dead_at,
                last_error=row.last_error,
            )
            for _, _, event_id, row in rows[: max(limit, 0)]
        ]

    def count_undelivered(self) -> tuple[int, int]:
        undelivered = [r for r in self._access.read().outbox.values() if r.delivered_at is None]
        dead = sum(1 for row in undelivered if row.dead_at is not None)
        return len(undelivered) - dead, dead

    def purge_delivered(self, *, before: datetime) -> int:
        before = utc(before)
        state = self._access.write()
        old = [
            event_id
            for event_id, row in state.outbox.items()
            if row.delivered_at is not None and row.delivered_at < before
        ]
        for event_id in old:
            del state.outbox[event_id]
        return len(old)

    def delete_matching(self, event_type: str, *, key: str, values: set[str]) -> int:
        return self._delete(self._matching(event_type, key, values))

    def delete_delivered_matching(self, event_type: str, *, key: str, values: set[str]) -> int:
        outbox = self._access.read().outbox
        doomed = [
            event_id
            for event_id in self._matching(event_type, key, values)
            if outbox[event_id].delivered_at is not None
        ]
        return self._delete(doomed)

    def _matching(self, event_type: str, key: str, values: set[str]) -> list[str]:
        if not values:
            return []
        return [
            event_id
            for event_id, row in self._access.read().outbox.items()
            if row.type == event_type
            and json.loads(row.document).get("data", {}).get(key) in values
        ]

    def _delete(self, event_ids: list[str]) -> int:
        if not event_ids:
            return 0
        state = self._access.write()
        for event_id in event_ids:
            del state.outbox[event_id]
        return len(event_ids)
