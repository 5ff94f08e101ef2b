"""Purge (retention) and outbox dispatch against fakes."""

from __future__ import annotations

from datetime import date, timedelta

from idservice.service_layer.dispatch import DispatchAllDue, DispatchDue, retry_delay
from idservice.service_layer.retention import Purge
from tests.fakes.providers import verified_person
from tests.service_layer.harness import Guardian, Harness

CHILD_BIRTH = date(2016, 5, 5)


def test_purge_destroys_a_child_whose_consent_window_closed(svc: Harness) -> None:
    child = verified_person(birth_date=CHILD_BIRTH)
    result = svc.sign_up_person(child, guardian=Guardian())
    assert result.consent_request is not None
    svc.sign_up_person(verified_person())  # an adult, untouched by the purge

    svc.clock.advance(svc.policy.guardian_consent_window - timedelta(seconds=1))
    assert svc.handle(Purge())["unconfirmed child accounts destroyed"] == 0
    svc.clock.advance(seconds=1)
    counts = svc.handle(Purge())

    assert counts["unconfirmed child accounts destroyed"] == 1
    state = svc.uow.committed()
    assert result.account.id not in state.accounts and len(state.accounts) == 1
    assert not state.consent_requests
    # The event holding the guardian's name, phone and code is destroyed with them.
    assert svc.uow.events("guardian_consent.requested") == []
    [expired] = svc.uow.events("guardian_consent.expired")
    assert expired["data"]["consent_request_id"] == result.consent_request.id
    assert expired["data"]["account_id"] == result.account.id
    assert expired["data"]["expired_at"].endswith("Z")
    # The person may sign up again.
    again = svc.verify(child)
    assert not again.duplicate.exists
    assert svc.sign_up(again.token, guardian=Guardian()).account.id != result.account.id


def test_purge_destroys_what_has_outlived_its_use(svc: Harness) -> None:
    unused = svc.verify(verified_person())
    svc.sign_up_person(verified_person())
    svc.handle(DispatchDue())
    svc.clock.advance(svc.policy.refresh_token_ttl)

    counts = svc.handle(Purge())

    assert counts["expired verifications destroyed"] == 1  # the unused one's person
    assert counts["ended sessions deleted"] == 1
    assert counts["delivered events deleted"] == 1
    state = svc.uow.committed()
    assert not state.sessions and not state.refresh_tokens and not state.outbox
    assert all(row.person is None for row in state.verifications.values())
    assert unused.token  # its row stays as the replay guard
    assert len(state.verifications) == 2
    assert svc.handle(Purge()) == dict.fromkeys(counts, 0)


def test_dispatch_delivers_each_due_event_once(svc: Harness) -> None:
    account_id = svc.sign_up_person(verified_person()).account.id
    report = svc.handle(DispatchDue())
    assert (report.delivered, report.failed, report.seen) == (1, 0, 1)
    [delivered] = svc.sink.delivered
    assert delivered.event_type == "account.created"
    document = delivered.document()
    assert document["event_id"] == delivered.event_id
    assert document["data"]["account_id"] == account_id
    row = svc.uow.committed().outbox[delivered.event_id]
    assert row.delivered_at == svc.clock() and row.attempts == 1
    assert svc.handle(DispatchDue()).seen == 0


def test_a_failed_delivery_is_rescheduled_with_backoff(svc: Harness) -> None:
    svc.sign_up_person(verified_person())
    svc.sink.fail_next(1)
    report = svc.handle(DispatchDue())
    assert (report.delivered, report.failed) == (0, 1)
    [(event_id, row)] = svc.uow.committed().outbox.items()
    assert row.attempts == 1 and row.delivered_at is None
    delay = row.next_attempt_at - svc.clock()
    assert retry_delay(1, jitter=0.8) <= delay <= retry_delay(1, jitter=1.2)

    assert svc.handle(DispatchDue()).seen == 0  # not due yet
    svc.clock.advance(delay)
    assert svc.handle(DispatchDue()).delivered == 1
    assert [d.event_id for d in svc.sink.delivered] == [event_id]
    assert svc.uow.committed().outbox[event_id].attempts == 2
    assert svc.sink.attempts == 2


def test_dispatch_all_due_tries_every_event_once(svc: Harness) -> None:
    for _ in range(3):
        svc.sign_up_person(verified_person())
    svc.sink.failing = True
    report = svc.handle(DispatchAllDue())
    assert (report.delivered, report.failed, report.seen) == (0, 3, 3)
    svc.sink.failing = False
    svc.clock.advance(minutes=1)
    assert svc.handle(DispatchAllDue()).delivered == 3
    assert len({d.event_id for d in svc.sink.delivered}) == 3
