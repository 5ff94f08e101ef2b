"""The repository contract (see test_repository_contract.py): the outbox — its order and the
holding back of one account's later events, leases, dead letters and replay, destruction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from idservice.domain import events
from idservice.domain.accounts import AccountStatus
from idservice.domain.events import Event, EventType
from idservice.service_layer.ports import PendingEvent, UnitOfWorkFactory
from tests.support.postgres import PostgresCluster
from tests.support.records import (
    NOW,
    consent_requested_event,
    make_account,
    make_consent_request,
    make_event,
)
from tests.support.repository_backends import BACKENDS, Backend, open_backend

LEASE = timedelta(seconds=30)
REQUESTED = EventType.GUARDIAN_CONSENT_REQUESTED.value


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> Iterator[Backend]:
    with open_backend(request.param, tmp_path, postgres_cluster) as opened:
        yield opened


def add(uow: UnitOfWorkFactory, *written: Event) -> None:
    """Write `written` in one transaction, in this order."""
    with uow() as tx:
        for event in written:
            tx.outbox.add(event)
        tx.commit()


def due_ids(uow: UnitOfWorkFactory, now: datetime = NOW) -> list[str]:
    with uow(readonly=True) as tx:
        return [entry.id for entry in tx.outbox.due(now=now, limit=100)]


def claim(uow: UnitOfWorkFactory, event_id: str, now: datetime = NOW) -> datetime | None:
    """Claim and commit; the lease, or None when the claim was refused."""
    with uow() as tx:
        claimed = tx.outbox.claim(event_id, now=now, until=now + LEASE)
        tx.commit()
    return None if claimed is None else now + LEASE


def deliver(uow: UnitOfWorkFactory, event_id: str, now: datetime = NOW) -> None:
    lease = claim(uow, event_id, now)
    assert lease is not None
    with uow() as tx:
        assert tx.outbox.mark_delivered(event_id, lease=lease, now=now)
        tx.commit()


def fail(uow: UnitOfWorkFactory, event_id: str, *, dead: bool = False, now: datetime = NOW) -> None:
    lease = claim(uow, event_id, now)
    assert lease is not None
    with uow() as tx:
        if dead:
            assert tx.outbox.mark_dead(event_id, lease=lease, attempts=20, now=now, error="503")
        else:
            assert tx.outbox.reschedule(
                event_id, lease=lease, attempts=1, next_attempt_at=now + LEASE, error="HTTP 503"
            )
        tx.commit()


# -- order ------------------------------------------------------------------------------------
def test_due_events_come_oldest_first_in_pages(backend: Backend) -> None:
    queued = [make_event(at=NOW + timedelta(seconds=s)) for s in (2, 0, 1, 60)]
    add(backend.uow, *queued)
    with backend.uow(readonly=True) as tx:
        due = tx.outbox.due(now=NOW + timedelta(seconds=2), limit=10)
        assert [entry.id for entry in due] == [queued[i].id for i in (1, 2, 0)]
        assert [entry.created_at for entry in due] == [queued[i].occurred_at for i in (1, 2, 0)]
        assert tx.outbox.due(now=NOW + timedelta(seconds=2), limit=2) == due[:2]
        page = tx.outbox.due(now=NOW + timedelta(minutes=5), limit=10, after=due[1])
        assert [entry.id for entry in page] == [queued[0].id, queued[3].id]


def test_events_of_one_transaction_keep_the_order_they_were_written_in(backend: Backend) -> None:
    # One instant, and ids that sort the other way round: the position decides.
    written = [
        Event(EventType.ACCOUNT_CREATED, {"account_id": f"acc-{n}"}, NOW, id=f"{9 - n}-event")
        for n in range(4)
    ]
    add(backend.uow, *written)
    with backend.uow(readonly=True) as tx:
        due = tx.outbox.due(now=NOW, limit=10)
        assert [entry.id for entry in due] == [event.id for event in written]
        assert [entry.position for entry in due] == [0, 1, 2, 3]
        # Pages resume behind the last one's (created_at, position, id).
        assert tx.outbox.due(now=NOW, limit=10, after=due[1]) == due[2:]


def test_an_accounts_later_events_wait_until_its_earlier_one_is_delivered(
    backend: Backend,
) -> None:
    first = events.account_created(
        account_id="a1", status="ACTIVE", identity_verified=True, now=NOW
    )
    second = events.account_activated(account_id="a1", now=NOW)
    one_second, soon = NOW + timedelta(seconds=1), NOW + timedelta(seconds=2)
    later = events.account_withdrawn(account_id="a1", now=soon)
    other_account = make_event(at=one_second, account_id="a2")
    no_account = Event(EventType.ACCOUNT_ACTIVATED, {"note": "no account"}, one_second)
    add(backend.uow, first, second)
    add(backend.uow, later, other_account, no_account)
    others = [other_account.id, no_account.id]
    assert due_ids(backend.uow, soon) == [first.id, *others]
    # A held-back event cannot be claimed either (a dispatcher's list may be stale).
    assert claim(backend.uow, second.id, soon) is None
    # Failing, leased or waiting for its retry, the first still holds the others back.
    fail(backend.uow, first.id, now=soon)
    assert due_ids(backend.uow, soon) == others
    assert due_ids(backend.uow, soon + LEASE) == [first.id, *others]
    deliver(backend.uow, first.id, soon + LEASE)
    assert due_ids(backend.uow, soon + LEASE) == [second.id, *others]
    deliver(backend.uow, second.id, soon + LEASE)
    assert due_ids(backend.uow, soon + LEASE) == [*others, later.id]


def test_a_dead_letter_holds_back_nothing(backend: Backend) -> None:
    first, second = make_event(account_id="a1"), make_event(account_id="a1")
    add(backend.uow, first, second)
    fail(backend.uow, first.id, dead=True)
    assert due_ids(backend.uow) == [second.id]
    # Replayed, it is undelivered again and comes before the account's later events.
    third = make_event(at=NOW + timedelta(seconds=1), account_id="a1")
    add(backend.uow, third)
    with backend.uow() as tx:
        assert tx.outbox.replay_dead([first.id], now=NOW) == 1
        tx.commit()
    assert due_ids(backend.uow, NOW + timedelta(seconds=1)) == [first.id]


# -- leases -----------------------------------------------------------------------------------
def test_a_claim_leases_the_event_and_hands_out_its_document(backend: Backend) -> None:
    event = make_event()
    add(backend.uow, event)
    lease = NOW + LEASE
    with backend.uow() as tx:
        claimed = tx.outbox.claim(event.id, now=NOW, until=lease)
        assert claimed == PendingEvent(
            id=event.id,
            type="account.activated",
            attempts=0,
            body=event.document().encode(),
            created_at=NOW,
        )
        assert tx.outbox.claim(event.id, now=NOW, until=lease) is None  # leased
        assert tx.outbox.claim("no-such-event", now=NOW, until=lease) is None
        assert tx.outbox.due(now=NOW, limit=10) == []
        tx.commit()
    with backend.uow() as tx:
        assert tx.outbox.claim(event.id, now=lease, until=lease + LEASE) is not None


def test_only_the_lease_holder_records_the_outcome(backend: Backend) -> None:
    event = make_event()
    add(backend.uow, event)
    first = claim(backend.uow, event.id)
    assert first is not None
    with backend.uow() as tx:
        assert tx.outbox.reschedule(
            event.id, lease=first, attempts=1, next_attempt_at=NOW + LEASE, error="HTTP 503"
        )
        tx.commit()
    second = claim(backend.uow, event.id, NOW + LEASE)
    assert second is not None and second != first
    # The first dispatcher's lease is over: its late reports change nothing.
    with backend.uow() as tx:
        assert not tx.outbox.reschedule(
            event.id, lease=first, attempts=9, next_attempt_at=NOW, error="late"
        )
        assert not tx.outbox.mark_dead(event.id, lease=first, attempts=9, now=NOW, error="late")
        assert not tx.outbox.mark_delivered(event.id, lease=first, now=NOW)
        assert not tx.outbox.reschedule(
            "no-such-event", lease=first, attempts=1, next_attempt_at=NOW, error="x"
        )
        tx.commit()
    with backend.uow(readonly=True) as tx:
        [entry] = tx.outbox.undelivered(limit=10)
    assert (entry.attempts, entry.next_attempt_at, entry.last_error) == (1, second, "HTTP 503")
    assert entry.dead_at is None


def test_a_delivered_event_is_done_and_purged_later(backend: Backend) -> None:
    delivered, pending = make_event(), make_event()
    add(backend.uow, delivered, pending)
    lease = claim(backend.uow, delivered.id)
    assert lease is not None
    with backend.uow() as tx:
        assert tx.outbox.mark_delivered(delivered.id, lease=lease, now=NOW + timedelta(seconds=1))
        assert not tx.outbox.mark_delivered(delivered.id, lease=lease, now=NOW)  # no effect
        assert not tx.outbox.reschedule(
            delivered.id, lease=lease, attempts=5, next_attempt_at=NOW, error="x"
        )
        tx.commit()
    later = NOW + timedelta(hours=1)
    with backend.uow() as tx:
        assert [entry.id for entry in tx.outbox.due(now=later, limit=10)] == [pending.id]
        assert tx.outbox.claim(delivered.id, now=later, until=later) is None
        assert tx.outbox.purge_delivered(before=NOW + timedelta(seconds=1)) == 0
        assert tx.outbox.purge_delivered(before=later) == 1
        tx.commit()
    assert due_ids(backend.uow, later) == [pending.id]


# -- dead letters -----------------------------------------------------------------------------
def test_dead_letters_are_listed_first_and_replayed_on_demand(backend: Backend) -> None:
    waiting, dead, also_dead = make_event(), make_event(), make_event()
    add(backend.uow, waiting, dead, also_dead)
    fail(backend.uow, waiting.id)
    fail(backend.uow, dead.id, dead=True)
    fail(backend.uow, also_dead.id, dead=True)
    with backend.uow(readonly=True) as tx:
        listed = tx.outbox.undelivered(limit=10)
        assert tx.outbox.count_undelivered() == (1, 2)
        assert tx.outbox.undelivered(limit=1) == listed[:1]
    assert [entry.id for entry in listed] == [dead.id, also_dead.id, waiting.id]
    assert [(e.dead_at, e.attempts, e.last_error) for e in listed] == [
        (NOW, 20, "503"),
        (NOW, 20, "503"),
        (None, 1, "HTTP 503"),
    ]
    assert listed[0].type == "account.activated" and listed[0].created_at == NOW
    assert due_ids(backend.uow, NOW + timedelta(hours=1)) == [waiting.id]
    assert claim(backend.uow, dead.id, NOW + timedelta(hours=1)) is None

    later = NOW + timedelta(hours=2)
    with backend.uow() as tx:
        assert tx.outbox.replay_dead([waiting.id, "no-such-event"], now=later) == 0  # not dead
        assert tx.outbox.replay_dead([], now=later) == 0
        assert tx.outbox.replay_dead([dead.id], now=later) == 1
        assert tx.outbox.replay_dead([dead.id], now=later) == 0
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.outbox.count_undelivered() == (2, 1)
        replayed = next(e for e in tx.outbox.undelivered(limit=10) if e.id == dead.id)
    assert (replayed.dead_at, replayed.attempts, replayed.last_error) == (None, 0, None)
    assert replayed.next_attempt_at == later
    assert due_ids(backend.uow, later) == [waiting.id, dead.id]
    with backend.uow() as tx:
        assert tx.outbox.replay_dead(None, now=later) == 1
        tx.commit()
    assert due_ids(backend.uow, later) == [waiting.id, dead.id, also_dead.id]


# -- destruction ------------------------------------------------------------------------------
def test_events_are_destroyed_by_a_value_in_their_data(backend: Backend) -> None:
    doomed = consent_requested_event("r1", "a1")
    kept = consent_requested_event("r2", "a2")
    # Same request id, another type: the purge writes this one for the request it destroys.
    other_type = events.guardian_consent_expired(consent_request_id="r1", account_id="a1", now=NOW)
    add(backend.uow, doomed, kept, other_type)
    with backend.uow() as tx:
        assert tx.outbox.delete_matching(REQUESTED, key="consent_request_id", values=set()) == 0
        assert (
            tx.outbox.delete_matching(REQUESTED, key="consent_request_id", values={"r1", "r9"}) == 1
        )
        assert tx.outbox.delete_matching(REQUESTED, key="no_such_key", values={"r2"}) == 0
        tx.commit()
    assert set(due_ids(backend.uow)) == {kept.id, other_type.id}
    with backend.uow() as tx:
        claimed = tx.outbox.claim(kept.id, now=NOW, until=NOW + LEASE)
    assert claimed is not None and claimed.body is not None
    assert json.loads(claimed.body)["data"]["guardian_name"] == "홍부모"


def test_only_delivered_events_are_destroyed_by_delete_delivered_matching(
    backend: Backend,
) -> None:
    sent, waiting = consent_requested_event("r1", "a1"), consent_requested_event("r1", "a2")
    add(backend.uow, sent, waiting)
    deliver(backend.uow, sent.id)
    with backend.uow() as tx:
        delete = tx.outbox.delete_delivered_matching
        assert delete(REQUESTED, key="consent_request_id", values={"r1"}) == 1
        assert delete(REQUESTED, key="consent_request_id", values={"r1"}) == 0
        assert [entry.id for entry in tx.outbox.undelivered(limit=10)] == [waiting.id]
        assert tx.outbox.purge_delivered(before=NOW + timedelta(days=2)) == 0
        tx.commit()


def test_a_delivered_personal_event_is_kept_only_while_its_request_is_pending(
    backend: Backend,
) -> None:
    child = make_account(status=AccountStatus.PENDING_GUARDIAN_CONSENT)
    request = make_consent_request(child.id)
    with backend.uow() as tx:
        tx.accounts.add(child, email_key=None)
        tx.guardian_consents.add(request)
        tx.commit()
    pending = consent_requested_event(request.id, child.id)
    closed = consent_requested_event("no-longer-pending", "another-child")
    add(backend.uow, pending, closed)
    for event, request_id in ((pending, request.id), (closed, "no-longer-pending")):
        lease = claim(backend.uow, event.id)
        assert lease is not None
        with backend.uow() as tx:
            assert tx.outbox.mark_delivered(
                event.id, lease=lease, now=NOW, keep_while_pending=request_id
            )
            tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.outbox.count_undelivered() == (0, 0)
    with backend.uow() as tx:
        # Only the event of the pending request is left, delivered: its close deletes it.
        assert tx.outbox.purge_delivered(before=NOW + timedelta(days=2)) == 1
        tx.commit()
    # The request closes (here: the child's pending account is destroyed, request and all).
    add(backend.uow, second := consent_requested_event(request.id, child.id))
    with backend.uow() as tx:
        assert tx.accounts.delete_pending(child.id)
        tx.commit()
    lease = claim(backend.uow, second.id)
    assert lease is not None
    with backend.uow() as tx:
        assert tx.outbox.mark_delivered(
            second.id, lease=lease, now=NOW, keep_while_pending=request.id
        )
        assert tx.outbox.purge_delivered(before=NOW + timedelta(days=2)) == 0  # gone at once
        tx.commit()
