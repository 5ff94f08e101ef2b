"""Outbox delivery (contract §4): every event at least once, retried with backoff.

`serve` runs this in a background thread unless IDSERVICE_DISPATCH_IN_SERVE=false, and
`idservice dispatch` runs it alone (both through `idservice.entrypoints.worker`). Several
dispatchers may run against one database: each event is claimed with a short lease before it
is sent, so it normally goes out once; after a crash mid-delivery it goes out again when the
lease ends (receivers de-duplicate by `event_id`).
Events are sent oldest first but not strictly in order across retries and dispatchers.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from idservice.service_layer.ports import Clock, DeliveryFailed, EventSink, UnitOfWorkFactory
from idservice.service_layer.use_cases import Command

log = logging.getLogger(__name__)

# How long a claimed event is left to its dispatcher before another may send it again; far
# beyond a webhook call, which is given up on after 10 s in all.
CLAIM_LEASE = timedelta(minutes=5)
# Retry delays double from the first to the cap: 5 s, 10 s, 20 s, ... 1 h, then hourly.
FIRST_RETRY = timedelta(seconds=5)
MAX_RETRY = timedelta(hours=1)
BATCH = 100


@dataclass(frozen=True, slots=True)
class DispatchReport:
    delivered: int = 0
    failed: int = 0
    # How many due events the call looked at, and the last one's (created_at, id): the cursor
    # for a next page (see `idservice dispatch --once`).
    seen: int = field(default=0, compare=False)
    last: tuple[datetime, str] | None = field(default=None, compare=False)


def retry_delay(attempts: int, *, jitter: float = 1.0) -> timedelta:
    """The wait after the `attempts`-th failed delivery (1-based), times `jitter`."""
    exponent = min(max(attempts - 1, 0), 20)
    delay: timedelta = min(FIRST_RETRY * (2**exponent), MAX_RETRY) * jitter
    return delay


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class DispatchDue(Command[DispatchReport]):
    """Send the events due now, oldest first (at most `limit`, only those past `after`)."""

    limit: int = BATCH
    should_stop: Callable[[], bool] = _never
    after: tuple[datetime, str] | None = None


def dispatch_due(
    cmd: DispatchDue, *, uow: UnitOfWorkFactory, sink: EventSink, clock: Clock
) -> DispatchReport:
    with uow(readonly=True) as tx:
        due = tx.outbox.due(now=clock(), limit=cmd.limit, after=cmd.after)
    delivered = failed = 0
    for event_id, _created_at in due:
        if cmd.should_stop():
            break
        # The lease runs from the claim, not from the start of the batch, so a slow batch
        # never hands out leases that have already ended.
        claimed_at = clock()
        lease = claimed_at + CLAIM_LEASE
        with uow() as tx:
            event = tx.outbox.claim(event_id, now=claimed_at, until=lease)
            tx.commit()
        if event is None:
            continue  # another dispatcher has it
        try:
            if event.body is None:
                raise DeliveryFailed("the payload cannot be decrypted (is its key in the ring?)")
            sink.deliver(event_id=event.id, event_type=event.type, body=event.body)
        except DeliveryFailed as failure:
            _retry_later(
                event.id, event.type, event.attempts + 1, lease, str(failure), uow=uow, clock=clock
            )
            failed += 1
            continue
        with uow() as tx:
            tx.outbox.mark_delivered(event.id, now=clock())
            tx.commit()
        delivered += 1
    last = (due[-1][1], due[-1][0]) if due else None
    return DispatchReport(delivered=delivered, failed=failed, seen=len(due), last=last)


def _retry_later(
    event_id: str,
    event_type: str,
    attempts: int,
    lease: datetime,
    why: str,
    *,
    uow: UnitOfWorkFactory,
    clock: Clock,
) -> None:
    # ±20 % jitter keeps a webhook that comes back from being hit by every retry at once.
    delay = retry_delay(attempts, jitter=random.uniform(0.8, 1.2))  # noqa: S311
    with uow() as tx:
        # Only while this dispatcher's lease holds: past it, another one may be sending.
        kept = tx.outbox.reschedule(
            event_id, lease=lease, attempts=attempts, next_attempt_at=clock() + delay
        )
        tx.commit()
    log.warning(
        "outbox event %s %s not delivered (attempt %d): %s; next try in %d s",
        event_type,
        event_id,
        attempts,
        why,
        delay.total_seconds() if kept else CLAIM_LEASE.total_seconds(),
    )


@dataclass(frozen=True, slots=True)
class DispatchAllDue(Command[DispatchReport]):
    """Try every event due now exactly once, page by page (`idservice dispatch --once`)."""


def dispatch_all_due(
    cmd: DispatchAllDue, *, uow: UnitOfWorkFactory, sink: EventSink, clock: Clock
) -> DispatchReport:
    """Pages follow (created_at, id), so an event that fails and falls due again while later
    pages are sent is not tried a second time, and none is skipped."""
    delivered = failed = seen = 0
    after = None
    while True:
        report = dispatch_due(DispatchDue(after=after), uow=uow, sink=sink, clock=clock)
        delivered, failed, seen = (
            delivered + report.delivered,
            failed + report.failed,
            seen + report.seen,
        )
        if report.seen < BATCH or report.last is None:
            return DispatchReport(delivered=delivered, failed=failed, seen=seen)
        after = report.last
