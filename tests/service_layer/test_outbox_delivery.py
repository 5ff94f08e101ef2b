"""Outbox delivery on fakes: per-account order, leases, dead letters and replay, and the SMS
trigger destroyed once delivered and its request closed."""

from __future__ import annotations

from datetime import date, timedelta

from idservice.domain.events import CARRIES_PERSONAL_DATA
from idservice.service_layer import dispatch
from idservice.service_layer.dispatch import (
    CLAIM_LEASE,
    DEAD_AFTER_AGE,
    DEAD_AFTER_ATTEMPTS,
    DispatchDue,
    ListOutbox,
    ReplayDeadEvents,
    retry_delay,
)
from idservice.service_layer.ports import DeliveryFailed, EventSink, UnitOfWorkFactory
from tests.fakes.providers import verified_person
from tests.fakes.security import FakeClock
from tests.service_layer.harness import Guardian, Harness

CHILD_BIRTH = date(2016, 5, 5)


def sign_up_child(svc: Harness) -> str:
    result = svc.sign_up_person(verified_person(birth_date=CHILD_BIRTH), guardian=Guardian())
    return result.account.id


def test_every_event_carrying_personal_data_names_the_request_it_serves() -> None:
    assert set(dispatch.CLOSED_WITH_REQUEST) == set(CARRIES_PERSONAL_DATA)


def test_an_accounts_events_go_out_in_the_order_written_across_a_failure(svc: Harness) -> None:
    # A child's signup writes the SMS trigger, then account.created, in one transaction.
    child_id = sign_up_child(svc)
    svc.clock.advance(seconds=1)
    adult_id = svc.sign_up_person(verified_person()).account.id
    svc.sink.fail_next(1)

    first = svc.handle(DispatchDue())
    assert (first.delivered, first.failed, first.seen) == (1, 1, 2)  # the adult's went out
    assert svc.handle(DispatchDue()).seen == 0  # account.created waits behind the trigger
    svc.clock.advance(retry_delay(1, jitter=1.2))
    assert svc.handle(DispatchDue()).delivered == 1
    assert svc.handle(DispatchDue()).delivered == 1

    sent = [(d.document()["data"]["account_id"], d.event_type) for d in svc.sink.delivered]
    assert sent == [
        (adult_id, "account.created"),
        (child_id, "guardian_consent.requested"),
        (child_id, "account.created"),
    ]


def test_an_event_is_a_dead_letter_after_both_bounds_and_can_be_replayed(svc: Harness) -> None:
    svc.sign_up_person(verified_person())
    svc.sink.failing = True
    for attempt in range(1, DEAD_AFTER_ATTEMPTS + 5):
        assert svc.handle(DispatchDue()).failed == 1
        svc.clock.advance(retry_delay(attempt, jitter=1.2))
    # Well past 20 attempts, but younger than 72 hours: still queued.
    listing = svc.handle(ListOutbox())
    assert (listing.pending, listing.dead) == (1, 0)
    [entry] = listing.events
    assert entry.attempts == DEAD_AFTER_ATTEMPTS + 4
    assert entry.last_error == "the recording sink was told to refuse this delivery"

    svc.clock.advance(DEAD_AFTER_AGE)
    assert svc.handle(DispatchDue()).failed == 1
    listing = svc.handle(ListOutbox())
    assert (listing.pending, listing.dead) == (0, 1)
    [dead] = listing.events
    assert dead.dead_at == svc.clock() and dead.attempts == DEAD_AFTER_ATTEMPTS + 5
    svc.clock.advance(days=10)
    assert svc.handle(DispatchDue()).seen == 0  # no longer dispatched

    svc.sink.failing = False
    assert svc.handle(ReplayDeadEvents()) == 0  # neither ids nor --all
    assert svc.handle(ReplayDeadEvents(event_ids=("unknown",))) == 0
    assert svc.handle(ReplayDeadEvents(event_ids=(dead.id,))) == 1
    [queued] = svc.handle(ListOutbox()).events
    assert (queued.attempts, queued.dead_at, queued.next_attempt_at) == (0, None, svc.clock())
    assert svc.handle(DispatchDue()).delivered == 1
    assert svc.handle(ListOutbox()).events == ()


def test_an_event_is_not_dead_before_its_twentieth_attempt(svc: Harness) -> None:
    svc.sign_up_person(verified_person())
    svc.sink.failing = True
    svc.clock.advance(DEAD_AFTER_AGE * 2)  # e.g. every dispatcher was down for days
    for attempt in range(1, DEAD_AFTER_ATTEMPTS):
        svc.handle(DispatchDue())
        svc.clock.advance(retry_delay(attempt, jitter=1.2))
    assert svc.handle(ListOutbox()).dead == 0
    svc.handle(DispatchDue())
    assert svc.handle(ListOutbox()).dead == 1
    assert svc.handle(ReplayDeadEvents(every=True)) == 1


def test_the_sms_trigger_stays_only_while_its_request_is_pending(svc: Harness) -> None:
    sign_up_child(svc)
    svc.handle(DispatchDue())
    svc.handle(DispatchDue())
    assert len(svc.sink.delivered) == 2
    outbox = svc.uow.committed().outbox
    # Delivered, its request still pending: kept (the request's close deletes it).
    assert {row.type for row in outbox.values()} == {
        "guardian_consent.requested",
        "account.created",
    }
    assert all(row.delivered_at is not None for row in outbox.values())


def test_the_sms_trigger_of_a_closed_request_is_deleted_once_delivered(svc: Harness) -> None:
    child_id = sign_up_child(svc)
    with svc.uow() as tx:  # the request closes before its trigger went out
        assert tx.accounts.delete_pending(child_id)
        tx.commit()
    svc.handle(DispatchDue())
    assert [d.event_type for d in svc.sink.delivered] == ["guardian_consent.requested"]
    outbox = svc.uow.committed().outbox
    assert [row.type for row in outbox.values()] == ["account.created"]


class LeaseOutlivingSink(EventSink):
    """Each delivery takes longer than the lease, and another dispatcher claims the event
    meanwhile; it then succeeds, or fails when `failing`."""

    def __init__(self, uow: UnitOfWorkFactory, clock: FakeClock) -> None:
        self.uow, self.clock = uow, clock
        self.failing = False

    def deliver(self, *, event_id: str, event_type: str, body: bytes) -> None:
        now = self.clock.advance(CLAIM_LEASE + timedelta(seconds=1))
        with self.uow() as tx:
            assert tx.outbox.claim(event_id, now=now, until=now + CLAIM_LEASE) is not None
            tx.commit()
        if self.failing:
            raise DeliveryFailed("webhook answered HTTP 503")

    def close(self) -> None:
        """Nothing to release."""


def test_a_delivery_that_outlives_its_lease_records_nothing(svc: Harness) -> None:
    sink = LeaseOutlivingSink(svc.uow, svc.clock)
    for failing in (True, False):
        svc.sign_up_person(verified_person())
        sink.failing = failing
        report = dispatch.dispatch_due(DispatchDue(), uow=svc.uow, sink=sink, clock=svc.clock)
        assert report.seen == 1
        [entry] = svc.handle(ListOutbox()).events
        # The new holder's lease stands, with no attempt counted and no error recorded.
        assert entry.next_attempt_at == svc.clock() + CLAIM_LEASE
        assert (entry.attempts, entry.last_error) == (0, None)
        svc.clock.advance(CLAIM_LEASE)
        assert svc.handle(DispatchDue()).delivered == 1
