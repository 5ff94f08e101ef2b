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
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from idservice.service_layer.ports import DeliveryFailed, EventSink
from idservice.service_layer.services import Services

log = logging.getLogger(__name__)

# How long a claimed event is left to its dispatcher before another may send it again; well
# beyond a webhook call's worst case (10 s for each of connect, write, read and pool).
CLAIM_LEASE = timedelta(minutes=5)
# Retry delays double from the first to the cap: 5 s, 10 s, 20 s, ... 1 h, then hourly.
FIRST_RETRY = timedelta(seconds=5)
MAX_RETRY = timedelta(hours=1)
BATCH = 100


@dataclass(frozen=True, slots=True)
class DispatchReport:
    delivered: int = 0
    failed: int = 0
    # The events this call tried, delivered or not.
    tried: frozenset[str] = field(default=frozenset(), compare=False)


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
    skip: Container[str] = (),
) -> DispatchReport:
    """Send the events due now (at most `limit`, none in `skip`); returns what went out."""
    with svc.uow(readonly=True) as uow:
        due = uow.outbox.due(now=svc.clock(), limit=limit)
    delivered = failed = 0
    tried: set[str] = set()
    for event_id, _type, _attempts in due:
        if should_stop():
            break
        if event_id in skip:
            continue
        # The lease runs from the claim, not from the start of the batch, so a slow batch
        # never hands out leases that have already ended.
        claimed_at = svc.clock()
        lease = claimed_at + CLAIM_LEASE
        with svc.uow() as uow:
            event = uow.outbox.claim(event_id, now=claimed_at, until=lease)
            uow.commit()
        if event is None:
            continue  # another dispatcher has it
        tried.add(event.id)
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
    return DispatchReport(delivered=delivered, failed=failed, tried=frozenset(tried))


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
