"""The repository contract (see test_repository_contract.py): verifications, idempotent
results, guardian consent requests and the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from idservice.domain import events
from idservice.domain.accounts import AccountStatus
from idservice.domain.events import EventType
from idservice.service_layer.ports import PendingEvent, UniqueViolation, UnitOfWorkFactory
from tests.fakes.providers import verified_person
from tests.support.postgres import PostgresCluster
from tests.support.records import (
    NOW,
    consent_requested_event,
    make_account,
    make_consent_request,
    make_event,
)
from tests.support.repository_backends import BACKENDS, Backend, open_backend

TTL = timedelta(minutes=30)


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> Iterator[Backend]:
    with open_backend(request.param, tmp_path, postgres_cluster) as opened:
        yield opened


# -- verifications ---------------------------------------------------------------------------
def add_verification(uow: UnitOfWorkFactory, name: str, *, source: str = "") -> None:
    with uow() as tx:
        tx.verifications.add(
            f"v-{name}",
            provider="sandbox",
            source_hash=source or f"src-{name}",
            token_hash=f"tok-{name}",
            person=verified_person(),
            now=NOW,
            expires_at=NOW + TTL,
        )
        tx.commit()


def test_a_verification_reads_back_by_its_token(backend: Backend) -> None:
    person = verified_person(ci=False)
    with backend.uow() as tx:
        tx.verifications.add(
            "v-1",
            provider="portone",
            source_hash="src-1",
            token_hash="tok-1",
            person=person,
            now=NOW,
            expires_at=NOW + TTL,
        )
        tx.commit()
    with backend.uow(readonly=True) as tx:
        stored = tx.verifications.get_by_token("tok-1")
        assert tx.verifications.get_by_token("tok-unknown") is None
    assert stored is not None
    assert (stored.id, stored.provider, stored.expires_at, stored.consumed_at) == (
        "v-1",
        "portone",
        NOW + TTL,
        None,
    )
    assert stored.person == person


def test_a_verification_source_is_accepted_once(backend: Backend) -> None:
    add_verification(backend.uow, "a", source="same-source")
    with backend.uow() as tx, pytest.raises(UniqueViolation) as violation:
        tx.verifications.add(
            "v-b",
            provider="sandbox",
            source_hash="same-source",
            token_hash="tok-b",
            person=verified_person(),
            now=NOW,
            expires_at=NOW + TTL,
        )
    assert violation.value.column == "source_hash"


def test_consume_uses_a_verification_once_and_drops_the_person(backend: Backend) -> None:
    add_verification(backend.uow, "a")
    add_verification(backend.uow, "late")
    with backend.uow() as tx:
        assert tx.verifications.consume("v-a", now=NOW)
        assert not tx.verifications.consume("v-a", now=NOW)
        assert not tx.verifications.consume("v-late", now=NOW + TTL)  # expired
        assert not tx.verifications.consume("v-unknown", now=NOW)
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.verifications.get_by_token("tok-a") is None
        assert tx.verifications.get_by_token("tok-late") is not None


def test_purge_destroys_expired_people_but_keeps_the_replay_guard(backend: Backend) -> None:
    for name in ("a", "b", "used"):
        add_verification(backend.uow, name)
    with backend.uow() as tx:
        tx.verifications.consume("v-used", now=NOW)
        assert tx.verifications.purge_expired(now=NOW + TTL - timedelta(seconds=1)) == 0
        assert tx.verifications.purge_expired(now=NOW + TTL) == 2
        assert tx.verifications.purge_expired(now=NOW + TTL) == 0
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.verifications.get_by_token("tok-a") is None
    with backend.uow() as tx, pytest.raises(UniqueViolation):
        tx.verifications.add(
            "v-again",
            provider="sandbox",
            source_hash="src-a",
            token_hash="tok-again",
            person=verified_person(),
            now=NOW,
            expires_at=NOW + TTL,
        )


# -- idempotent results ----------------------------------------------------------------------
def put(
    uow: UnitOfWorkFactory, key: str, *, response: bytes = b"{}", at: timedelta = timedelta(0)
) -> None:
    with uow() as tx:
        tx.idempotency.put(
            key,
            operation="signup",
            fingerprint=f"fp-{key}",
            response=response,
            now=NOW + at,
            ttl=timedelta(hours=24),
        )
        tx.commit()


def test_an_idempotent_result_is_kept_for_its_operation_until_it_expires(backend: Backend) -> None:
    put(backend.uow, "k1", response=b'{"account_id": "a1"}')
    with backend.uow(readonly=True) as tx:
        stored = tx.idempotency.get("k1", operation="signup", now=NOW)
        assert stored is not None
        assert (stored.fingerprint, stored.response) == ("fp-k1", b'{"account_id": "a1"}')
        assert tx.idempotency.get("k1", operation="login", now=NOW) is None
        assert tx.idempotency.get("k2", operation="signup", now=NOW) is None
        assert tx.idempotency.get("k1", operation="signup", now=NOW + timedelta(hours=24)) is None


def test_a_key_is_stored_once_until_it_expires(backend: Backend) -> None:
    put(backend.uow, "k1")
    with backend.uow() as tx, pytest.raises(UniqueViolation) as violation:
        tx.idempotency.put(
            "k1",
            operation="other",
            fingerprint="fp",
            response=b"x",
            now=NOW,
            ttl=timedelta(hours=1),
        )
    assert violation.value.column == "key_hash"
    put(backend.uow, "k1", response=b"second", at=timedelta(hours=24))  # replaces the expired one
    with backend.uow(readonly=True) as tx:
        stored = tx.idempotency.get("k1", operation="signup", now=NOW + timedelta(hours=25))
    assert stored is not None and stored.response == b"second"


def test_expired_results_are_purged(backend: Backend) -> None:
    put(backend.uow, "old")
    put(backend.uow, "new", at=timedelta(hours=2))
    with backend.uow() as tx:
        assert tx.idempotency.purge_expired(now=NOW + timedelta(hours=25)) == 1
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.idempotency.get("new", operation="signup", now=NOW + timedelta(hours=25))


# -- guardian consent requests ---------------------------------------------------------------
def test_pending_requests_come_out_when_their_window_ends_oldest_first(backend: Backend) -> None:
    child = make_account(status=AccountStatus.PENDING_GUARDIAN_CONSENT)
    windows = (timedelta(days=3), timedelta(days=1), timedelta(days=2), timedelta(days=9))
    requests = [make_consent_request(child.id, window=w) for w in windows]
    with backend.uow() as tx:
        tx.accounts.add(child, email_key=None)
        for request in requests:
            tx.guardian_consents.add(request)
        tx.commit()
    with backend.uow(readonly=True) as tx:
        expired = tx.guardian_consents.expired_pending(now=NOW + timedelta(days=3), limit=10)
        assert expired == [(requests[i].id, child.id) for i in (1, 2, 0)]
        assert len(tx.guardian_consents.expired_pending(now=NOW + timedelta(days=3), limit=2)) == 2
        assert tx.guardian_consents.expired_pending(now=NOW, limit=10) == []


def test_a_consent_request_needs_its_account(backend: Backend) -> None:
    with backend.uow() as tx, pytest.raises(backend.integrity_error):
        tx.guardian_consents.add(make_consent_request("no-such-account"))


# -- the outbox ------------------------------------------------------------------------------
def test_due_events_come_oldest_first_in_pages(backend: Backend) -> None:
    queued = [make_event(at=NOW + timedelta(seconds=s)) for s in (2, 0, 1, 60)]
    with backend.uow() as tx:
        for event in queued:
            tx.outbox.add(event)
        tx.commit()
    with backend.uow(readonly=True) as tx:
        due = tx.outbox.due(now=NOW + timedelta(seconds=2), limit=10)
        assert due == [(queued[i].id, queued[i].occurred_at) for i in (1, 2, 0)]
        assert tx.outbox.due(now=NOW + timedelta(seconds=2), limit=2) == due[:2]
        page = tx.outbox.due(now=NOW + timedelta(minutes=5), limit=10, after=(due[1][1], due[1][0]))
        assert page == [due[2], (queued[3].id, queued[3].occurred_at)]


def test_a_claim_leases_the_event_and_hands_out_its_document(backend: Backend) -> None:
    event = make_event()
    with backend.uow() as tx:
        tx.outbox.add(event)
        tx.commit()
    lease = NOW + timedelta(minutes=5)
    with backend.uow() as tx:
        claimed = tx.outbox.claim(event.id, now=NOW, until=lease)
        assert claimed == PendingEvent(
            id=event.id, type="account.activated", attempts=0, body=event.document().encode()
        )
        assert tx.outbox.claim(event.id, now=NOW, until=lease) is None  # leased
        assert tx.outbox.claim("no-such-event", now=NOW, until=lease) is None
        assert tx.outbox.due(now=NOW, limit=10) == []
        tx.commit()
    with backend.uow() as tx:
        assert tx.outbox.claim(event.id, now=lease, until=lease + timedelta(minutes=5)) is not None


def test_reschedule_only_under_the_callers_own_lease(backend: Backend) -> None:
    event = make_event()
    first, second = NOW + timedelta(minutes=5), NOW + timedelta(minutes=15)
    with backend.uow() as tx:
        tx.outbox.add(event)
        tx.outbox.claim(event.id, now=NOW, until=first)
        assert tx.outbox.reschedule(
            event.id, lease=first, attempts=1, next_attempt_at=NOW + timedelta(seconds=5)
        )
        assert tx.outbox.claim(event.id, now=NOW + timedelta(seconds=5), until=second) is not None
        # The first dispatcher's lease is over: its late report changes nothing.
        assert not tx.outbox.reschedule(event.id, lease=first, attempts=9, next_attempt_at=NOW)
        assert not tx.outbox.reschedule(
            "no-such-event", lease=first, attempts=1, next_attempt_at=NOW
        )
        tx.commit()
    with backend.uow() as tx:
        claimed = tx.outbox.claim(event.id, now=second, until=second + timedelta(minutes=5))
    assert claimed is not None and claimed.attempts == 1


def test_a_delivered_event_is_done_and_purged_later(backend: Backend) -> None:
    delivered, pending = make_event(), make_event()
    with backend.uow() as tx:
        tx.outbox.add(delivered)
        tx.outbox.add(pending)
        tx.outbox.claim(delivered.id, now=NOW, until=NOW + timedelta(minutes=5))
        tx.outbox.mark_delivered(delivered.id, now=NOW + timedelta(seconds=1))
        tx.outbox.mark_delivered(delivered.id, now=NOW + timedelta(seconds=2))  # no effect
        assert not tx.outbox.reschedule(
            delivered.id, lease=NOW + timedelta(minutes=5), attempts=5, next_attempt_at=NOW
        )
        tx.commit()
    with backend.uow() as tx:
        later = NOW + timedelta(hours=1)
        assert tx.outbox.due(now=later, limit=10) == [(pending.id, pending.occurred_at)]
        assert tx.outbox.claim(delivered.id, now=later, until=later) is None
        assert tx.outbox.purge_delivered(before=NOW + timedelta(seconds=1)) == 0
        assert tx.outbox.purge_delivered(before=later) == 1
        tx.commit()
    with backend.uow() as tx:
        assert tx.outbox.due(now=NOW + timedelta(hours=1), limit=10) == [(pending.id, NOW)]


def test_events_are_destroyed_by_a_value_in_their_data(backend: Backend) -> None:
    doomed = consent_requested_event("r1", "a1")
    kept = consent_requested_event("r2", "a2")
    # Same request id, another type: the purge writes this one for the request it destroys.
    other_type = events.guardian_consent_expired(consent_request_id="r1", account_id="a1", now=NOW)
    with backend.uow() as tx:
        for event in (doomed, kept, other_type):
            tx.outbox.add(event)
        tx.commit()
    requested = EventType.GUARDIAN_CONSENT_REQUESTED.value
    with backend.uow() as tx:
        assert tx.outbox.delete_matching(requested, key="consent_request_id", values=set()) == 0
        assert (
            tx.outbox.delete_matching(requested, key="consent_request_id", values={"r1", "r9"}) == 1
        )
        assert tx.outbox.delete_matching(requested, key="no_such_key", values={"r2"}) == 0
        tx.commit()
    with backend.uow() as tx:
        left = {event_id for event_id, _ in tx.outbox.due(now=NOW, limit=10)}
        claimed = tx.outbox.claim(kept.id, now=NOW, until=NOW + timedelta(minutes=1))
    assert left == {kept.id, other_type.id}
    assert claimed is not None and claimed.body is not None
    assert json.loads(claimed.body)["data"]["guardian_name"] == "홍부모"
