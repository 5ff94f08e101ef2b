"""The repository contract (see test_repository_contract.py): verifications, idempotent
results and guardian consent requests (the outbox: test_repository_contract_outbox.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from idservice.domain.accounts import AccountStatus
from idservice.service_layer.ports import UniqueViolation, UnitOfWork, UnitOfWorkFactory
from tests.fakes.providers import verified_person
from tests.support.postgres import PostgresCluster
from tests.support.records import (
    NOW,
    make_account,
    make_consent_request,
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
def put_verification(
    tx: UnitOfWork, verification_id: str, *, source_hash: str, token_hash: str
) -> None:
    """Insert a sandbox verification of a new person in `tx` (expiring after TTL)."""
    tx.verifications.add(
        verification_id,
        provider="sandbox",
        source_hash=source_hash,
        token_hash=token_hash,
        person=verified_person(),
        now=NOW,
        expires_at=NOW + TTL,
    )


def add_verification(uow: UnitOfWorkFactory, name: str, *, source: str = "") -> None:
    with uow() as tx:
        source_hash = source or f"src-{name}"
        put_verification(tx, f"v-{name}", source_hash=source_hash, token_hash=f"tok-{name}")
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
        put_verification(tx, "v-b", source_hash="same-source", token_hash="tok-b")
    assert violation.value.column == "source_hash"


def test_a_refused_verification_leaves_the_transaction_usable(backend: Backend) -> None:
    # A used source is refused without failing the transaction (nothing is rolled back), and
    # the first verification stays as it was.
    add_verification(backend.uow, "a", source="same-source")
    with backend.uow() as tx:
        with pytest.raises(UniqueViolation):
            put_verification(tx, "v-b", source_hash="same-source", token_hash="tok-b")
        put_verification(tx, "v-c", source_hash="src-c", token_hash="tok-c")
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.verifications.get_by_token("tok-b") is None
        assert tx.verifications.get_by_token("tok-c") is not None
        first = tx.verifications.get_by_token("tok-a")
        assert first is not None and first.id == "v-a"


def test_a_verification_id_or_token_taken_is_an_error_not_a_skip(backend: Backend) -> None:
    add_verification(backend.uow, "a")
    for verification_id, token_hash in (("v-a", "tok-new"), ("v-new", "tok-a")):
        with backend.uow() as tx, pytest.raises(backend.integrity_error):
            source = f"src-{verification_id}-{token_hash}"
            put_verification(tx, verification_id, source_hash=source, token_hash=token_hash)


def test_consume_uses_a_verification_once_and_drops_the_person(backend: Backend) -> None:
    add_verification(backend.uow, "a")
    add_verification(backend.uow, "late")
    with backend.uow() as tx:
        assert tx.verifications.consume("tok-a", now=NOW)
        assert not tx.verifications.consume("tok-a", now=NOW)
        assert not tx.verifications.consume("tok-late", now=NOW + TTL)  # expired
        assert not tx.verifications.consume("tok-unknown", now=NOW)
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.verifications.get_by_token("tok-a") is None
        assert tx.verifications.get_by_token("tok-late") is not None


def test_purge_destroys_expired_people_but_keeps_the_replay_guard(backend: Backend) -> None:
    for name in ("a", "b", "used"):
        add_verification(backend.uow, name)
    with backend.uow() as tx:
        tx.verifications.consume("tok-used", now=NOW)
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
