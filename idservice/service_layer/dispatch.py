"""Outbox delivery (contract §4): every event at least once, retried with backoff, in order per
account, given up on (a dead letter) only after a bound.

`serve` runs this in a background thread unless IDSERVICE_DISPATCH_IN_SERVE=false, and
`idservice dispatch` runs it alone (both through `idservice.entrypoints.worker`). Several
dispatchers may run against one database: each event is claimed with a lease (CLAIM_LEASE)
before it is sent, so it normally goes out once; after a crash mid-delivery it goes out again
when the lease ends (receivers de-duplicate by `event_id`).

One account's events go out in the order they were written: the outbox holds an event back
while an earlier event of its account is neither delivered nor dead. A dead letter holds back
nothing (one event the receiver keeps refusing must not silence the account for good); it waits
for `idservice outbox replay`.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from idservice.domain.events import EventType
from idservice.service_layer.ports import (
    Clock,
    DeliveryFailed,
    DueEvent,
    EventSink,
    OutboxEntry,
    PendingEvent,
    UnitOfWorkFactory,
)
from idservice.service_layer.use_cases import Command

log = logging.getLogger(__name__)

# How long a claimed event is left to its dispatcher before another may send it: a dispatcher
# killed mid-delivery holds its event back at most this long. A delivery is given up on well
# within it (the webhook after 10 s in all, `EventSink.max_delivery_seconds`), and the lease
# runs from the claim, just before the call, so it is not renewed: the margin covers recording
# the outcome. A delivery that outlives its lease anyway (a stalled process, skewed clocks)
# records nothing: every write after the claim requires the lease to still be the event's.
CLAIM_LEASE = timedelta(seconds=30)
# Retry delays double from the first to the cap: 5 s, 10 s, 20 s, ... 1 h, then hourly.
FIRST_RETRY = timedelta(seconds=5)
MAX_RETRY = timedelta(hours=1)
# A failed delivery makes the event a dead letter once it has failed this many times AND was
# written this long ago: 20 attempts take about 10.5 hours of backoff, so an outage of the
# receiver is ridden out for three days (a long weekend) before anyone must replay, and an event
# is never given up on without having been tried 20 times (dispatchers down, held back).
DEAD_AFTER_ATTEMPTS = 20
DEAD_AFTER_AGE = timedelta(hours=72)
BATCH = 100
LIST_LIMIT = 100

# Event types that carry personal data (`CARRIES_PERSONAL_DATA`), each with the data key naming
# the guardian consent request it serves: delivered, such an event is deleted at once unless
# that request is still pending (its close deletes it then: `delete_delivered_matching`).
CLOSED_WITH_REQUEST = {EventType.GUARDIAN_CONSENT_REQUESTED: "consent_request_id"}


@dataclass(frozen=True, slots=True)
class DispatchReport:
    delivered: int = 0
    failed: int = 0
    # How many due events the call looked at, and the last one: the cursor for a next page
    # (see `idservice dispatch --once`).
    seen: int = field(default=0, compare=False)
    last: DueEvent | None = field(default=None, compare=False)


def retry_delay(attempts: int, *, jitter: float = 1.0) -> timedelta:
    """The wait after the `attempts`-th failed delivery (1-based), times `jitter`."""
    exponent = min(max(attempts - 1, 0), 20)
    delay: timedelta = min(FIRST_RETRY * (2**exponent), MAX_RETRY) * jitter
    return delay


def is_dead(attempts: int, *, created_at: datetime, now: datetime) -> bool:
    """Whether an event that has now failed `attempts` times is given up on."""
    return attempts >= DEAD_AFTER_ATTEMPTS and now - created_at >= DEAD_AFTER_AGE


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True, repr=False)
class DispatchDue(Command[DispatchReport]):
    """Send the events due now, in order (at most `limit`, only those behind `after`)."""

    limit: int = BATCH
    should_stop: Callable[[], bool] = _never
    after: DueEvent | None = None
    lease: timedelta = CLAIM_LEASE


def dispatch_due(
    cmd: DispatchDue, *, uow: UnitOfWorkFactory, sink: EventSink, clock: Clock
) -> DispatchReport:
    with uow(readonly=True) as tx:
        due = tx.outbox.due(now=clock(), limit=cmd.limit, after=cmd.after)
    delivered = failed = 0
    for entry in due:
        if cmd.should_stop():
            break
        outcome = _deliver(entry.id, cmd.lease, uow=uow, sink=sink, clock=clock)
        delivered += outcome is True
        failed += outcome is False
    return DispatchReport(
        delivered=delivered, failed=failed, seen=len(due), last=due[-1] if due else None
    )


def _deliver(
    event_id: str, lease_length: timedelta, *, uow: UnitOfWorkFactory, sink: EventSink, clock: Clock
) -> bool | None:
    """Claim, send and record one event: True delivered, False failed, None not claimed."""
    # The lease runs from the claim, not from the start of the batch, so a slow batch never
    # hands out leases that have already ended.
    claimed_at = clock()
    lease = claimed_at + lease_length
    with uow() as tx:
        event = tx.outbox.claim(event_id, now=claimed_at, until=lease)
        tx.commit()
    if event is None:
        return None  # another dispatcher has it, or an earlier event of its account came back
    try:
        if event.body is None:
            raise DeliveryFailed("the payload cannot be decrypted (is its key in the ring?)")
        sink.deliver(event_id=event.id, event_type=event.type, body=event.body)
    except DeliveryFailed as failure:
        _record_failure(event, lease, str(failure), uow=uow, clock=clock)
        return False
    with uow() as tx:
        recorded = tx.outbox.mark_delivered(
            event.id, lease=lease, now=clock(), keep_while_pending=_request_of(event)
        )
        tx.commit()
    if not recorded:
        log.warning(
            "outbox event %s %s was delivered but is no longer this dispatcher's (its lease "
            "ended, or it was deleted meanwhile); it may be delivered again",
            event.type,
            event.id,
        )
    return True


def _request_of(event: PendingEvent) -> str | None:
    """For an event carrying personal data, the consent request it serves ("" if it names
    none, which is never pending: such an event is deleted once delivered)."""
    key = next((k for t, k in CLOSED_WITH_REQUEST.items() if t.value == event.type), None)
    if key is None or event.body is None:
        return None
    try:
        request_id = json.loads(event.body).get("data", {}).get(key)
    except (ValueError, AttributeError):  # not the document `Event` writes: keep nothing
        return ""
    return request_id if isinstance(request_id, str) else ""


def _record_failure(
    event: PendingEvent, lease: datetime, why: str, *, uow: UnitOfWorkFactory, clock: Clock
) -> None:
    attempts, now = event.attempts + 1, clock()
    if is_dead(attempts, created_at=event.created_at, now=now):
        with uow() as tx:
            buried = tx.outbox.mark_dead(
                event.id, lease=lease, attempts=attempts, now=now, error=why
            )
            tx.commit()
        if not buried:
            log.warning("outbox event %s %s not delivered: %s", event.type, event.id, why)
            return
        log.error(
            "outbox event %s %s is a dead letter after %d attempts: %s; "
            "`idservice outbox replay %s` queues it again",
            event.type,
            event.id,
            attempts,
            why,
            event.id,
        )
        return
    # ±20 % jitter keeps a webhook that comes back from being hit by every retry at once.
    delay = retry_delay(attempts, jitter=random.uniform(0.8, 1.2))  # noqa: S311
    with uow() as tx:
        # Only while this dispatcher's lease holds: past it, another one may be sending.
        kept = tx.outbox.reschedule(
            event.id, lease=lease, attempts=attempts, next_attempt_at=now + delay, error=why
        )
        tx.commit()
    log.warning(
        "outbox event %s %s not delivered (attempt %d): %s; next try in %d s",
        event.type,
        event.id,
        attempts,
        why,
        delay.total_seconds() if kept else max((lease - now).total_seconds(), 0),
    )


@dataclass(frozen=True, slots=True, repr=False)
class DispatchAllDue(Command[DispatchReport]):
    """Try every event due now exactly once, page by page (`idservice dispatch --once`)."""

    lease: timedelta = CLAIM_LEASE


def dispatch_all_due(
    cmd: DispatchAllDue, *, uow: UnitOfWorkFactory, sink: EventSink, clock: Clock
) -> DispatchReport:
    """Pages follow the outbox's order, so an event that fails and falls due again while later
    pages are sent is not tried a second time, and none is skipped."""
    delivered = failed = seen = 0
    after = None
    while True:
        report = dispatch_due(
            DispatchDue(after=after, lease=cmd.lease), uow=uow, sink=sink, clock=clock
        )
        delivered, failed, seen = (
            delivered + report.delivered,
            failed + report.failed,
            seen + report.seen,
        )
        if report.seen < BATCH or report.last is None:
            return DispatchReport(delivered=delivered, failed=failed, seen=seen)
        after = report.last


# -- operators: `idservice outbox` -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OutboxListing:
    """How many events are queued and dead, and the first `limit` of them (dead ones first)."""

    pending: int
    dead: int
    events: tuple[OutboxEntry, ...]


@dataclass(frozen=True, slots=True, repr=False)
class ListOutbox(Command[OutboxListing]):
    """The undelivered events, dead letters first (type, id, attempts, error; no payload)."""

    limit: int = LIST_LIMIT


def list_outbox(cmd: ListOutbox, *, uow: UnitOfWorkFactory) -> OutboxListing:
    with uow(readonly=True) as tx:
        pending, dead = tx.outbox.count_undelivered()
        entries = tx.outbox.undelivered(limit=cmd.limit)
    return OutboxListing(pending=pending, dead=dead, events=tuple(entries))


@dataclass(frozen=True, slots=True, repr=False)
class ReplayDeadEvents(Command[int]):
    """Queue dead letters again (no attempts, due now): those in `event_ids`, or all with
    `every`. Answers how many were dead and are queued again."""

    event_ids: tuple[str, ...] = ()
    every: bool = False


def replay_dead_events(cmd: ReplayDeadEvents, *, uow: UnitOfWorkFactory, clock: Clock) -> int:
    if not cmd.every and not cmd.event_ids:
        return 0
    with uow() as tx:
        replayed = tx.outbox.replay_dead(None if cmd.every else cmd.event_ids, now=clock())
        tx.commit()
    if replayed:
        log.info("%d dead outbox event(s) queued again", replayed)
    return replayed
