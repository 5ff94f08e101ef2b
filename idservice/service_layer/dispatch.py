"""Outbox delivery (contract §4): every event at least once, retried with backoff.

`serve` runs this in a background thread unless IDSERVICE_DISPATCH_IN_SERVE=false, and
`idservice dispatch` runs it alone. Several dispatchers may run against one database: each event
is claimed with a short lease before it is sent, so it normally goes out once; after a crash
mid-delivery it goes out again when the lease ends (receivers de-duplicate by `event_id`).
Events are sent oldest first but not strictly in order across retries and dispatchers.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from idservice.service_layer.ports import DeliveryFailed, EventSink
from idservice.service_layer.services import Services

log = logging.getLogger(__name__)

# How long a claimed event is left to its dispatcher before another may send it again; far
# beyond a webhook call, which is given up on after 10 s in all.
CLAIM_LEASE = timedelta(minutes=5)
# Retry delays double from the first to the cap: 5 s, 10 s, 20 s, ... 1 h, then hourly.
FIRST_RETRY = timedelta(seconds=5)
MAX_RETRY = timedelta(hours=1)
BATCH = 100
# How long a running dispatcher sleeps when nothing is due.
POLL_SECONDS = 1.0


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


def dispatch_due(
    svc: Services,
    sink: EventSink,
    *,
    limit: int = BATCH,
    should_stop: Callable[[], bool] = _never,
    after: tuple[datetime, str] | None = None,
) -> DispatchReport:
    """Send the events due now, oldest first (at most `limit`, only those past `after`)."""
    with svc.uow(readonly=True) as uow:
        due = uow.outbox.due(now=svc.clock(), limit=limit, after=after)
    delivered = failed = 0
    for event_id, _created_at in due:
        if should_stop():
            break
        # The lease runs from the claim, not from the start of the batch, so a slow batch
        # never hands out leases that have already ended.
        claimed_at = svc.clock()
        lease = claimed_at + CLAIM_LEASE
        with svc.uow() as uow:
            event = uow.outbox.claim(event_id, now=claimed_at, until=lease)
            uow.commit()
        if event is None:
            continue  # another dispatcher has it
        try:
            if event.body is None:
                raise DeliveryFailed("the payload cannot be decrypted (is its key in the ring?)")
            sink.deliver(event_id=event.id, event_type=event.type, body=event.body)
        except DeliveryFailed as failure:
            _retry_later(svc, event.id, event.type, event.attempts + 1, lease, str(failure))
            failed += 1
            continue
        with svc.uow() as uow:
            uow.outbox.mark_delivered(event.id, now=svc.clock())
            uow.commit()
        delivered += 1
    last = (due[-1][1], due[-1][0]) if due else None
    return DispatchReport(delivered=delivered, failed=failed, seen=len(due), last=last)


def _retry_later(
    svc: Services, event_id: str, event_type: str, attempts: int, lease: datetime, why: str
) -> None:
    # ±20 % jitter keeps a webhook that comes back from being hit by every retry at once.
    delay = retry_delay(attempts, jitter=random.uniform(0.8, 1.2))  # noqa: S311
    with svc.uow() as uow:
        # Only while this dispatcher's lease holds: past it, another one may be sending.
        kept = uow.outbox.reschedule(
            event_id, lease=lease, attempts=attempts, next_attempt_at=svc.clock() + delay
        )
        uow.commit()
    log.warning(
        "outbox event %s %s not delivered (attempt %d): %s; next try in %d s",
        event_type,
        event_id,
        attempts,
        why,
        delay.total_seconds() if kept else CLAIM_LEASE.total_seconds(),
    )


def dispatch_all_due(svc: Services, sink: EventSink) -> DispatchReport:
    """Try every event due now exactly once, page by page (`idservice dispatch --once`).

    Pages follow (created_at, id), so an event that fails and falls due again while later pages
    are sent is not tried a second time, and none is skipped.
    """
    delivered = failed = seen = 0
    after = None
    while True:
        report = dispatch_due(svc, sink, after=after)
        delivered, failed, seen = (
            delivered + report.delivered,
            failed + report.failed,
            seen + report.seen,
        )
        if report.seen < BATCH or report.last is None:
            return DispatchReport(delivered=delivered, failed=failed, seen=seen)
        after = report.last


def run_until(svc: Services, sink: EventSink, stop: threading.Event) -> None:
    """Deliver events as they fall due until `stop` is set (serve's thread, `dispatch`).

    A failure of the round itself (the database is down) is logged by type and retried on the
    next poll.
    """
    while not stop.is_set():
        sent = 0
        try:
            report = dispatch_due(svc, sink, should_stop=stop.is_set)
            sent = report.delivered + report.failed
        except Exception as exc:
            log.warning("outbox dispatch failed: %s", type(exc).__name__)
        if sent < BATCH:
            stop.wait(POLL_SECONDS)
