"""The repository contract for the marketing reconfirmation reminder (fakes, SQLite, PostgreSQL).

Every server process purges (IDSERVICE_PROCESSES, several instances): of two purges that both
found an opt-in's anniversary due, only the one that records the reminder queues the event. The
next anniversary, two years on, is due again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from idservice.service_layer.ports import UnitOfWorkFactory
from tests.support.postgres import PostgresCluster
from tests.support.records import NOW, make_account
from tests.support.repository_backends import BACKENDS, Backend, open_backend

TWO_YEARS_AGO = NOW - timedelta(days=800)
ANNIVERSARY = TWO_YEARS_AGO + timedelta(days=731)


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> Iterator[Backend]:
    with open_backend(request.param, tmp_path, postgres_cluster) as opened:
        yield opened


def _opted_in_account(uow: UnitOfWorkFactory, opted_in_at: datetime = TWO_YEARS_AGO) -> str:
    account = make_account()
    consents = dataclasses.replace(
        account.consents, marketing_opt_in=True, marketing_updated_at=opted_in_at
    )
    with uow() as tx:
        tx.accounts.add(dataclasses.replace(account, consents=consents), email_key=account.id)
        tx.commit()
    return account.id


def _due(uow: UnitOfWorkFactory, now: datetime = NOW) -> list[tuple[str, datetime | None]]:
    with uow() as tx:
        return [
            (account_id, reminded)
            for account_id, opted_in_at, reminded in tx.accounts.marketing_reconfirmation_due(
                now=now, opted_in_before=now - timedelta(days=729), limit=10
            )
            if opted_in_at == TWO_YEARS_AGO
        ]


def _mark(
    uow: UnitOfWorkFactory,
    account_id: str,
    due: datetime = ANNIVERSARY,
    opted_in_at: datetime = TWO_YEARS_AGO,
) -> bool:
    with uow() as tx:
        marked = tx.accounts.mark_reminded(account_id, opted_in_at=opted_in_at, due=due)
        tx.commit()
    return marked


def test_a_reminder_is_recorded_once_per_anniversary(backend: Backend) -> None:
    account_id = _opted_in_account(backend.uow)
    assert _due(backend.uow) == [(account_id, None)]
    # Two purges both found it due; the first records the reminder, the second learns so.
    assert _mark(backend.uow, account_id)
    assert not _mark(backend.uow, account_id)
    assert not _mark(backend.uow, account_id, ANNIVERSARY - timedelta(days=1))
    assert _due(backend.uow) == []
    # Two years on, the next anniversary is due, and it is recorded once too.
    later = NOW + timedelta(days=731)
    assert _due(backend.uow, later) == [(account_id, ANNIVERSARY)]
    next_anniversary = ANNIVERSARY + timedelta(days=731)
    assert _mark(backend.uow, account_id, next_anniversary)
    assert not _mark(backend.uow, account_id, next_anniversary)
    assert _due(backend.uow, later) == []


def test_a_withdrawn_opt_in_is_not_reminded(backend: Backend) -> None:
    account_id = _opted_in_account(backend.uow)
    with backend.uow() as tx:
        account = tx.accounts.get(account_id)
        assert account is not None
        withdrawn = dataclasses.replace(
            account.consents, marketing_opt_in=False, marketing_updated_at=NOW
        )
        tx.accounts.save_consents(account_id, withdrawn, now=NOW)
        tx.commit()
    assert not _mark(backend.uow, account_id)


def test_a_reminder_is_for_the_opt_in_that_was_read(backend: Backend) -> None:
    """A re-confirmation between a purge's read and its write starts a new two years: the
    reminder of the opt-in it replaced is not recorded (and no event goes out)."""
    account_id = _opted_in_account(backend.uow)
    with backend.uow() as tx:
        account = tx.accounts.get(account_id)
        assert account is not None
        reconfirmed = dataclasses.replace(account.consents, marketing_updated_at=NOW)
        tx.accounts.save_consents(account_id, reconfirmed, now=NOW)
        tx.commit()
    assert not _mark(backend.uow, account_id)


def test_opt_ins_whose_next_anniversary_is_near_come_after_those_due(backend: Backend) -> None:
    """The bound is coarse: an opt-in reminded 730 days ago may be a day short of its next
    anniversary. Such rows sort by that reminder, after every older opt-in that is due, so a
    full page of them cannot hold the due ones back."""
    oldest = NOW - timedelta(days=1500)
    reminded_long_ago = _opted_in_account(backend.uow, opted_in_at=oldest)
    assert _mark(backend.uow, reminded_long_ago, due=NOW - timedelta(days=730), opted_in_at=oldest)
    due_now = _opted_in_account(backend.uow)  # opted in 800 days ago, never reminded
    with backend.uow() as tx:
        found = tx.accounts.marketing_reconfirmation_due(
            now=NOW, opted_in_before=NOW - timedelta(days=730), limit=1
        )
    assert [account_id for account_id, _, _ in found] == [due_now]


def test_a_withdrawn_account_is_not_reminded(backend: Backend) -> None:
    account_id = _opted_in_account(backend.uow)
    with backend.uow() as tx:
        assert tx.accounts.withdraw(account_id, now=NOW, hold_until=NOW + timedelta(days=30))
        tx.commit()
    assert _due(backend.uow) == []
    assert not _mark(backend.uow, account_id)
