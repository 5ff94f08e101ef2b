"""The outbox port: events written in the state change's transaction, delivered by leases."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from idservice.domain.events import Event


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An outbox event claimed for delivery; `body` is its JSON document, None if undecryptable."""

    id: str
    type: str
    attempts: int
    body: bytes | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DueEvent:
    """An outbox event due for delivery, with its place in the outbox's order: created_at, then
    its position among the events of its transaction, then id (`after=` resumes behind it)."""

    id: str
    created_at: datetime
    position: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An undelivered outbox event as an operator sees it (never its payload)."""

    id: str
    type: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    # Set for a dead letter: given up on, no longer dispatched until replayed.
    dead_at: datetime | None
    # The last failed attempt's safe message (DeliveryFailed: no URL, no payload).
    last_error: str | None


class OutboxRepository(Protocol):
    """Events written in the state change's transaction, claimed with leases for delivery.

    The outbox's order is (created_at, position, id), `position` counting the events written by
    one transaction. An event is *held back* while an earlier event of the same account is
    neither delivered nor dead: one account's events go out in the order they were written.
    A lease is the `next_attempt_at` a claim set; every later write of a delivery (delivered,
    rescheduled, dead) happens only while that value is still the caller's lease.
    """

    def add(self, event: Event) -> None:
        """Store the event, due at once, with `event.data["account_id"]` (when present) as its
        account and the next position of this transaction."""

    def due(self, *, now: datetime, limit: int, after: DueEvent | None = None) -> list[DueEvent]:
        """Events due by `now`, neither delivered nor dead nor held back, in the outbox's order
        (only those behind `after`, a previous page's last, when given)."""

    def claim(self, event_id: str, *, now: datetime, until: datetime) -> PendingEvent | None:
        """Take an event `due` would hand out, for delivery until `until` (the lease); None if
        another dispatcher took it, or it is delivered, dead, held back or gone."""

    def mark_delivered(
        self,
        event_id: str,
        *,
        lease: datetime,
        now: datetime,
        keep_while_pending: str | None = None,
    ) -> bool:
        """Record the delivery, only under the caller's lease (False, and nothing changes,
        otherwise). With `keep_while_pending` (a guardian consent request id), an event that
        carries personal data: it is deleted at once unless that request is still pending."""

    def reschedule(
        self,
        event_id: str,
        *,
        lease: datetime,
        attempts: int,
        next_attempt_at: datetime,
        error: str,
    ) -> bool:
        """Record a failed attempt and set the next one, only under the caller's lease."""

    def mark_dead(
        self, event_id: str, *, lease: datetime, attempts: int, now: datetime, error: str
    ) -> bool:
        """Record a failed attempt and park the event as a dead letter (no longer dispatched,
        holding back nothing), only under the caller's lease."""

    def replay_dead(self, event_ids: Collection[str] | None, *, now: datetime) -> int:
        """Put dead letters back in the queue, due at `now` with no attempts and no error;
        `None`: every dead letter. Returns how many were dead and are queued again."""

    def undelivered(self, *, limit: int) -> list[OutboxEntry]:
        """Undelivered events for an operator: dead letters first, then pending events, each in
        the outbox's order."""

    def count_undelivered(self) -> tuple[int, int]:
        """(pending, dead): how many undelivered events are queued and how many are dead."""

    def purge_delivered(self, *, before: datetime) -> int: ...

    def delete_matching(self, event_type: str, *, key: str, values: set[str]) -> int:
        """Delete the events of `event_type` whose data has `key` in `values` (destruction)."""

    def delete_delivered_matching(self, event_type: str, *, key: str, values: set[str]) -> int:
        """As `delete_matching`, but only events already delivered: for the transaction that
        closes a guardian consent request, after its change to the request row."""
