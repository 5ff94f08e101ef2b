"""The repository contract of the connection log, on the fakes, SQLite and PostgreSQL (see
`test_repository_contract.py`): batches in, an account's entries out oldest first, retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from idservice.adapters.db import tables as t
from idservice.adapters.db.unit_of_work import SqlUnitOfWorkFactory
from idservice.service_layer.ports import ConnectionEntry, UnitOfWorkFactory
from tests.support.postgres import PostgresCluster
from tests.support.records import NOW, new_id
from tests.support.repository_backends import BACKENDS, Backend, open_backend

METHOD = "/idservice.v1.AccountService/GetAccount"


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> Iterator[Backend]:
    with open_backend(request.param, tmp_path, postgres_cluster) as opened:
        yield opened


def entry(account_id: str | None, *, minutes: float = 0, **fields: object) -> ConnectionEntry:
    values: dict[str, object] = {
        "occurred_at": NOW + timedelta(minutes=minutes),
        "method": METHOD,
        "code": "OK",
        "account_id": account_id,
        "client_ip": "203.0.113.7",
        **fields,
    }
    return ConnectionEntry(**values)  # type: ignore[arg-type]


def record(uow: UnitOfWorkFactory, *entries: ConnectionEntry) -> int:
    with uow() as tx:
        count = tx.connection_log.record(entries)
        tx.commit()
    return count


def of_account(uow: UnitOfWorkFactory, account_id: str, since_minutes: float = -60) -> list[str]:
    """The account's entries as `method code reason ip` lines."""
    with uow(readonly=True) as tx:
        entries = tx.connection_log.of_account(
            account_id, since=NOW + timedelta(minutes=since_minutes)
        )
    return [f"{e.method} {e.code} {e.reason} {e.client_ip}" for e in entries]


def test_a_batch_is_stored_and_read_back_per_account_oldest_first(backend: Backend) -> None:
    alice, bob = new_id(), new_id()
    assert (
        record(
            backend.uow,
            entry(alice, minutes=2, method="/s/Second", client_ip="2001:db8::1"),
            entry(bob, minutes=1),
            entry(
                alice, minutes=1, method="/s/First", code="UNAUTHENTICATED", reason="TOKEN_INVALID"
            ),
            entry(None, minutes=1, code="INVALID_ARGUMENT", reason="VALIDATION_FAILED"),
        )
        == 4
    )
    assert of_account(backend.uow, alice) == [
        "/s/First UNAUTHENTICATED TOKEN_INVALID 203.0.113.7",
        "/s/Second OK None 2001:db8::1",
    ]
    assert of_account(backend.uow, bob) == [f"{METHOD} OK None 203.0.113.7"]
    assert of_account(backend.uow, new_id()) == []


def test_entries_round_trip_with_their_time_in_utc(backend: Backend) -> None:
    account = new_id()
    seoul = timezone(timedelta(hours=9))
    record(backend.uow, entry(account, occurred_at=NOW.astimezone(seoul), reason="", client_ip=""))
    with backend.uow(readonly=True) as tx:
        (stored,) = tx.connection_log.of_account(account, since=NOW)
    # Empty values are stored as none at all.
    assert stored == ConnectionEntry(
        occurred_at=NOW, method=METHOD, code="OK", reason=None, account_id=account, client_ip=None
    )
    assert stored.occurred_at.tzinfo is not None
    assert stored.occurred_at.utcoffset() == timedelta(0)


def test_of_account_starts_at_since_inclusive(backend: Backend) -> None:
    account = new_id()
    record(backend.uow, *(entry(account, minutes=m, method=f"/s/M{m}") for m in (-2, 0, 3)))
    assert [line.split()[0] for line in of_account(backend.uow, account, since_minutes=0)] == [
        "/s/M0",
        "/s/M3",
    ]


def test_nothing_is_stored_without_commit(backend: Backend) -> None:
    account = new_id()
    with backend.uow() as tx:
        tx.connection_log.record([entry(account)])
    assert of_account(backend.uow, account) == []


def test_an_empty_batch_is_nothing(backend: Backend) -> None:
    assert record(backend.uow) == 0


def test_purge_deletes_the_entries_before_the_cut_only(backend: Backend) -> None:
    account = new_id()
    record(backend.uow, *(entry(account, minutes=m, method=f"/s/M{m}") for m in (-10, -1, 0, 5)))
    with backend.uow() as tx:
        assert tx.connection_log.purge(before=NOW) == 2
        tx.commit()
    assert [line.split()[0] for line in of_account(backend.uow, account)] == ["/s/M0", "/s/M5"]
    with backend.uow() as tx:
        assert tx.connection_log.purge(before=NOW) == 0
        tx.commit()


def test_the_client_address_is_stored_encrypted(backend: Backend) -> None:
    if not isinstance(backend.uow, SqlUnitOfWorkFactory):
        pytest.skip("the fakes keep plaintext")
    record(backend.uow, entry(new_id(), client_ip="198.51.100.23"))
    with backend.uow.engine.connect() as connection:
        (stored,) = connection.execute(select(t.connection_log.c.client_ip_ct)).scalars()
    assert stored and "198.51.100.23" not in stored


def test_values_with_tabs_newlines_backslashes_and_hangul_round_trip(backend: Backend) -> None:
    """What COPY's text format must escape (PostgreSQL writes a batch with COPY) reads back as
    it was written."""
    account = new_id()
    awkward = "/s/a\tb\nc\\d\\N\r'\"한글,;"
    record(
        backend.uow,
        entry(account, minutes=1, method=awkward, code="INVALID_ARGUMENT", reason="R\\N\t"),
        entry(account, minutes=2, method="\\N", reason="\\", client_ip="::1"),
    )
    with backend.uow(readonly=True) as tx:
        stored = tx.connection_log.of_account(account, since=NOW)
    assert [(e.method, e.reason, e.client_ip) for e in stored] == [
        (awkward, "R\\N\t", "203.0.113.7"),
        ("\\N", "\\", "::1"),
    ]


def test_a_large_batch_is_stored_whole(backend: Backend) -> None:
    account = new_id()
    count = 1200
    assert record(backend.uow, *(entry(account, minutes=i / 100) for i in range(count))) == count
    assert len(of_account(backend.uow, account, since_minutes=0)) == count
