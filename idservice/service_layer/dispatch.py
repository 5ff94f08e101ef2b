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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from idservice.service_layer.ports import DeliveryFailed, EventSink
from idservice.service_layer.services import Services

log = logging.getLogger(__name__)

# How long a claimed event is left to its dispatcher before another may send it again; well
# beyond the webhook timeout.
CLAIM_LEASE = timedelta(seconds=60)
# Retry delays double from the first to the cap: 5 s, 10 s, 20 s, ... 1 h, then hourly.
FIRST_RETRY = timedelta(seconds=5)
MAX_RETRY = timedelta(hours=1)
BATCH = 100


@dataclass(frozen=True, slots=True)
class DispatchReport:
    delivered: int = 0
    failed: int = 0


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
) -> DispatchReport:
    """Send the events due now (at most `limit`); returns how many went out and how many failed."""
    now = svc.clock()
    with svc.uow(readonly=True) as uow:
        due = uow.outbox.due(now=now, limit=limit)
    delivered = failed = 0
    for event_id, _type, _attempts in due:
        if should_stop():
            break
        with svc.uow() as uow:
            event = uow.outbox.claim(event_id, now=now, until=now + CLAIM_LEASE)
            uow.commit()
        if event is None:
            continue  # another dispatcher has it
        try:
            sink.deliver(event_id=event.id, event_type=event.type, body=event.body)
        except DeliveryFailed as failure:
            attempts = event.attempts + 1
            # ±20 % jitter keeps a webhook that comes back from being hit by every retry at once.
            delay = retry_delay(attempts, jitter=random.uniform(0.8, 1.2))  # noqa: S311
            with svc.uow() as uow:
                uow.outbox.reschedule(
                    event.id, attempts=attempts, next_attempt_at=svc.clock() + delay
                )
                uow.commit()
            log.warning(
                "outbox event %s %s not delivered (attempt %d): %s; next try in %d s",
                event.type,
                event.id,
                attempts,
                failure,
                delay.total_seconds(),
            )
            failed += 1
            continue
        with svc.uow() as uow:
            uow.outbox.mark_delivered(event.id, now=svc.clock())
            uow.commit()
        delivered += 1
    return DispatchReport(delivered=delivered, failed=failed)
