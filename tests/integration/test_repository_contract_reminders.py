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


def _opted_in_account(uow: UnitOfWorkFactory) -> str:
    account = make_account()
    consents = dataclasses.replace(
        account.consents, marketing_opt_in=True, marketing_updated_at=TWO_YEARS_AGO
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


def _mark(uow: UnitOfWorkFactory, account_id: str, due: datetime = ANNIVERSARY) -> bool:
    with uow() as tx:
        marked = tx.accounts.mark_reminded(account_id, due=due)
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
