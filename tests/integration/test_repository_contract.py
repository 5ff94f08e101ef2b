"""The repository contract: one set of tests run on the fakes, SQLite and PostgreSQL.

This is what keeps `tests/fakes/storage*.py` honest: whatever the service-layer tests learn from
the fakes holds for the SQL adapters too. This module covers the unit of work, accounts (their
activation, deletion and row lock) and re-join holds; `test_repository_contract_sessions.py` the
login gate and sessions; `test_repository_contract_records.py` verifications, idempotency and
consent requests' expiry; `test_repository_contract_consents.py` the rest of guardian consent
(codes, decisions, wards, outcomes) and attempt counters;
`test_repository_contract_outbox.py` the outbox (order, leases, dead letters, destruction);
`test_repository_contract_sns.py` SNS links, accounts' `sns_providers` and signup tickets.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from idservice.adapters.db import tables as t
from idservice.adapters.db.unit_of_work import SqlUnitOfWorkFactory
from idservice.domain.accounts import Account, AccountStatus
from idservice.domain.guardian_consent import ConsentRequestStatus
from idservice.domain.sessions import Session
from idservice.domain.sns import SnsProvider
from idservice.service_layer.ports import (
    AccountStanding,
    PasswordCredentials,
    SnsLink,
    UniqueViolation,
    UnitOfWorkFactory,
)
from tests.support.postgres import PostgresCluster
from tests.support.records import (
    NOW,
    make_account,
    make_consent_request,
    make_session,
    make_sns_link,
    new_id,
)
from tests.support.repository_backends import BACKENDS, Backend, open_backend

WAIT_SECONDS = 30.0


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> Iterator[Backend]:
    with open_backend(request.param, tmp_path, postgres_cluster) as opened:
        yield opened


def add_account(
    uow: UnitOfWorkFactory, account: Account | None = None, *, key: str = ""
) -> Account:
    """Insert and commit `account` (a fresh one by default) under email key `key` or its own."""
    account = account or make_account()
    with uow() as tx:
        tx.accounts.add(account, email_key=key or f"{account.id}@example.com")
        tx.commit()
    return account


def get_account(uow: UnitOfWorkFactory, account_id: str) -> Account | None:
    with uow(readonly=True) as tx:
        return tx.accounts.get(account_id)


# -- the unit of work ------------------------------------------------------------------------
def test_nothing_is_stored_without_commit(backend: Backend) -> None:
    account = make_account()
    with backend.uow() as tx:
        tx.accounts.add(account, email_key="a@example.com")
        tx.sessions.add(make_session(account.id))
        assert tx.accounts.get(account.id) == account  # its own writes are visible to it
    assert get_account(backend.uow, account.id) is None
    with backend.uow(readonly=True) as tx:
        assert tx.accounts.get_by_email("a@example.com") is None


def test_an_exception_rolls_the_unit_of_work_back(backend: Backend) -> None:
    account = add_account(backend.uow)
    with pytest.raises(LookupError), backend.uow() as tx:
        tx.accounts.save_profile(account.id, name="바뀐이름", now=NOW)
        raise LookupError
    assert get_account(backend.uow, account.id) == account


def test_committed_changes_are_seen_by_later_units_of_work(backend: Backend) -> None:
    account = make_account()
    with backend.uow() as tx:
        tx.accounts.add(account, email_key="a@example.com")
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.accounts.get(account.id) == account
        assert tx.accounts.get_by_email("a@example.com") == account


def test_a_unit_of_work_is_used_inside_its_with_block_only(backend: Backend) -> None:
    account = add_account(backend.uow)
    tx = backend.uow(readonly=True)
    with pytest.raises(RuntimeError):
        tx.accounts.get(account.id)
    with tx:
        assert tx.accounts.get(account.id) == account
    with pytest.raises(RuntimeError):
        tx.sessions.of_account(account.id)
    with tx:  # entered again, it reads again (nothing of the last transaction is kept)
        assert tx.accounts.get(account.id) == account
        assert tx.sessions.of_account(account.id) == []


def test_returned_records_are_copies(backend: Backend) -> None:
    account = add_account(backend.uow)
    with backend.uow() as tx:
        loaded = tx.accounts.get(account.id)
        assert loaded is not None
        loaded.name = "딴사람"
        loaded.consents.marketing_opt_in = True
        assert tx.accounts.get(account.id) == account
    account.name = "또딴사람"
    assert get_account(backend.uow, account.id) == dataclasses.replace(account, name="홍길동")


# -- accounts --------------------------------------------------------------------------------
def test_an_account_reads_back_as_it_was_added(backend: Backend) -> None:
    account = make_account(status=AccountStatus.PENDING_GUARDIAN_CONSENT)
    account.failed_logins, account.locked_until = 2, NOW + timedelta(minutes=3)
    add_account(backend.uow, account)
    assert get_account(backend.uow, account.id) == account


def test_empty_optional_values_are_stored_as_absent(backend: Backend) -> None:
    account = make_account(email="", ci="", di="d1", password_hash=None)
    account.sns_providers = ("kakao",)  # SNS links are not stored with the account
    add_account(backend.uow, account, key="")
    loaded = get_account(backend.uow, account.id)
    assert loaded is not None
    assert (loaded.email, loaded.ci, loaded.di, loaded.password_hash) == (None, None, "d1", None)
    assert loaded.sns_providers == ()


def test_the_email_key_is_unique_and_a_violation_leaves_the_transaction_usable(
    backend: Backend,
) -> None:
    add_account(backend.uow, key="same@example.com")
    other = make_account()
    with backend.uow() as tx:
        with pytest.raises(UniqueViolation) as violation:
            tx.accounts.add(make_account(), email_key="same@example.com")
        assert violation.value.column == "email_index"
        tx.accounts.add(other, email_key="other@example.com")
        tx.commit()
    assert get_account(backend.uow, other.id) == other


def test_accounts_without_an_email_key_never_conflict(backend: Backend) -> None:
    with backend.uow() as tx:
        tx.accounts.add(make_account(), email_key=None)
        tx.accounts.add(make_account(), email_key=None)
        tx.accounts.add(make_account(), email_key="")
        tx.commit()


def test_a_password_login_reads_the_standing_and_the_hash(backend: Backend) -> None:
    account = add_account(backend.uow, key="hong@example.com")
    pending = add_account(
        backend.uow,
        make_account(status=AccountStatus.PENDING_GUARDIAN_CONSENT, password_hash="hash-2"),
        key="child@example.com",
    )
    sns_only = add_account(backend.uow, make_account(password_hash=None), key="sns@example.com")
    gone = add_account(backend.uow, key="gone@example.com")
    with backend.uow() as tx:
        tx.sns_identities.add(make_sns_link(account.id, SnsProvider.KAKAO))
        assert tx.accounts.withdraw(gone.id, now=NOW, hold_until=NOW + timedelta(days=30))
        tx.commit()
    with backend.uow(readonly=True) as tx:
        found = tx.accounts.credentials_by_email("hong@example.com")
        assert found == PasswordCredentials(
            AccountStanding(account.id, AccountStatus.ACTIVE, account.birth_date, True),
            "hash-1",
        )
        child = tx.accounts.credentials_by_email("child@example.com")
        assert child is not None and child.password_hash == "hash-2"
        assert child.standing.status is AccountStatus.PENDING_GUARDIAN_CONSENT
        sns = tx.accounts.credentials_by_email("sns@example.com")
        assert sns is not None and sns.standing.id == sns_only.id and sns.password_hash is None
        assert pending.id == child.standing.id
        assert tx.accounts.credentials_by_email("gone@example.com") is None
        assert tx.accounts.credentials_by_email("nobody@example.com") is None
        assert tx.accounts.credentials_by_email("") is None


@pytest.mark.parametrize("column", ["ci_index", "di_index"])
def test_ci_and_di_are_unique(backend: Backend, column: str) -> None:
    first = add_account(backend.uow)
    clash = make_account(ci=first.ci) if column == "ci_index" else make_account(di=first.di)
    with backend.uow() as tx, pytest.raises(UniqueViolation) as violation:
        tx.accounts.add(clash, email_key="clash@example.com")
    assert violation.value.column == column


def test_a_duplicate_id_is_an_integrity_error(backend: Backend) -> None:
    first = add_account(backend.uow)
    twin = dataclasses.replace(first, ci=new_id(), di=new_id())
    with backend.uow() as tx, pytest.raises(backend.integrity_error):
        tx.accounts.add(twin, email_key="twin@example.com")


def test_lookups_by_email_key_and_identity(backend: Backend) -> None:
    account = add_account(backend.uow, key="hong@example.com")
    other = add_account(backend.uow)
    with backend.uow(readonly=True) as tx:
        assert tx.accounts.get_by_email("hong@example.com") == account
        assert tx.accounts.get_by_email("nobody@example.com") is None
        assert tx.accounts.get_by_email("") is None
        assert tx.accounts.get("no-such-id") is None
        assert tx.accounts.find_by_identity(ci=account.ci, di=None) == account
        assert tx.accounts.find_by_identity(ci=None, di=other.di) == other
        assert tx.accounts.find_by_identity(ci="unknown", di=account.di) == account
        assert tx.accounts.find_by_identity(ci=None, di=None) is None
        assert tx.accounts.find_by_identity(ci="", di="") is None
        assert tx.accounts.find_by_identity(ci="unknown", di="unknown") is None


def test_a_ci_is_adopted_only_by_an_account_without_one(backend: Backend) -> None:
    without = add_account(backend.uow, make_account(ci=""))
    holder = add_account(backend.uow)
    with backend.uow() as tx:
        # Another account's CI: refused, and the transaction goes on.
        with pytest.raises(UniqueViolation) as refused:
            tx.accounts.adopt_ci(without.id, holder.ci or "", now=NOW)
        assert refused.value.column == "ci_index"
        assert not tx.accounts.adopt_ci(holder.id, "ci-of-someone", now=NOW)  # holds one
        assert not tx.accounts.adopt_ci("no-such-id", "ci-of-someone", now=NOW)
        assert tx.accounts.adopt_ci(without.id, "ci-of-kakao", now=NOW)
        tx.commit()
    adopted = dataclasses.replace(without, ci="ci-of-kakao")
    assert get_account(backend.uow, without.id) == adopted
    assert get_account(backend.uow, holder.id) == holder
    with backend.uow(readonly=True) as tx:
        assert tx.accounts.find_by_identity(ci="ci-of-kakao", di=None) == adopted


def test_save_profile_writes_only_the_given_fields(backend: Backend) -> None:
    account = add_account(backend.uow)
    with backend.uow() as tx:
        assert tx.accounts.save_profile(account.id, name="홍길순", now=NOW)
        assert tx.accounts.save_profile(account.id, birth_date=date(1991, 2, 3), now=NOW)
        assert not tx.accounts.save_profile("no-such-id", name="아무개", now=NOW)
        tx.commit()
    expected = dataclasses.replace(account, name="홍길순", birth_date=date(1991, 2, 3))
    assert get_account(backend.uow, account.id) == expected


def test_save_profile_writes_nothing_into_a_withdrawn_account(backend: Backend) -> None:
    """A correction read before a withdrawal committed must not put the name and phone back
    into the remains the withdrawal left (they are kept for the re-join cooldown)."""
    account = add_account(backend.uow, make_account(ci="ci-of-leaver", di="di-of-leaver"))
    with backend.uow() as tx:
        assert tx.accounts.withdraw(account.id, now=NOW, hold_until=NOW + timedelta(days=30))
        assert not tx.accounts.save_profile(
            account.id, name="되살린이름", phone_number="+821055556666", now=NOW
        )
        tx.commit()
    assert get_account(backend.uow, account.id) is None
    with backend.uow(readonly=True) as tx:
        assert tx.accounts.find_by_identity(ci="ci-of-leaver", di=None) is None
        assert tx.accounts.rejoin_hold_until(ci="ci-of-leaver", di=None, now=NOW) is not None
    if isinstance(backend.uow, SqlUnitOfWorkFactory):
        with backend.uow.engine.connect() as connection:
            stored = connection.execute(
                select(t.accounts.c.name_ct, t.accounts.c.phone_ct).where(
                    t.accounts.c.id == account.id
                )
            ).one()
        assert tuple(stored) == (None, None)
    else:
        remains = backend.uow.committed().accounts[account.id].account  # type: ignore[attr-defined]
        assert (remains.name, remains.phone_number) == ("", "")


def test_the_password_hash_is_swapped_only_from_the_expected_one(backend: Backend) -> None:
    account = add_account(backend.uow)
    no_password = add_account(backend.uow, make_account(password_hash=None))
    with backend.uow() as tx:
        assert not tx.accounts.replace_password_hash(account.id, expected="old", new="x", now=NOW)
        assert tx.accounts.replace_password_hash(account.id, expected="hash-1", new=None, now=NOW)
        assert tx.accounts.replace_password_hash(
            account.id, expected="hash-1", new="hash-2", now=NOW
        )
        assert not tx.accounts.replace_password_hash(
            no_password.id, expected="hash-1", new="x", now=NOW
        )
        assert not tx.accounts.replace_password_hash("nobody", expected="hash-1", new="x", now=NOW)
        tx.commit()
    loaded = get_account(backend.uow, account.id)
    assert loaded is not None and loaded.password_hash == "hash-2"


def test_only_a_pending_account_is_deleted_with_its_consent_requests(backend: Backend) -> None:
    pending = add_account(backend.uow, make_account(status=AccountStatus.PENDING_GUARDIAN_CONSENT))
    active = add_account(backend.uow)
    request = make_consent_request(pending.id, window=timedelta(0))
    with backend.uow() as tx:
        tx.guardian_consents.add(request)
        tx.commit()
    with backend.uow() as tx:
        assert not tx.accounts.delete_pending(active.id)
        assert not tx.accounts.delete_pending("no-such-id")
        assert tx.accounts.delete_pending(pending.id)
        assert not tx.accounts.delete_pending(pending.id)
        tx.commit()
    assert get_account(backend.uow, pending.id) is None
    assert get_account(backend.uow, active.id) == active
    with backend.uow(readonly=True) as tx:
        assert tx.guardian_consents.expired_pending(now=NOW, limit=10) == []
        assert tx.accounts.find_by_identity(ci=pending.ci, di=pending.di) is None


# -- re-join holds ---------------------------------------------------------------------------
def test_a_rejoin_hold_runs_until_its_end_by_ci_or_di(backend: Backend) -> None:
    with backend.uow() as tx:
        tx.accounts.add_rejoin_hold(new_id(), ci="ci-1", di="di-1", until=NOW + timedelta(days=3))
        tx.accounts.add_rejoin_hold(new_id(), ci=None, di="di-1", until=NOW + timedelta(days=9))
        tx.accounts.add_rejoin_hold(new_id(), ci="ci-2", di="", until=NOW + timedelta(days=1))
        tx.commit()
    with backend.uow(readonly=True) as tx:
        hold = tx.accounts.rejoin_hold_until
        assert hold(ci="ci-1", di=None, now=NOW) == NOW + timedelta(days=3)
        assert hold(ci="ci-1", di="di-1", now=NOW) == NOW + timedelta(days=9)  # the latest end
        assert hold(ci="ci-2", di=None, now=NOW) == NOW + timedelta(days=1)
        assert hold(ci="ci-2", di=None, now=NOW + timedelta(days=1)) is None
        assert hold(ci="unknown", di="unknown", now=NOW) is None
        assert hold(ci=None, di=None, now=NOW) is None
        assert hold(ci="", di="", now=NOW) is None


def test_ended_rejoin_holds_are_purged(backend: Backend) -> None:
    with backend.uow() as tx:
        for days in (1, 2, 5):
            tx.accounts.add_rejoin_hold(
                new_id(), ci=f"ci-{days}", di=None, until=NOW + timedelta(days=days)
            )
        tx.commit()
    with backend.uow() as tx:
        assert tx.accounts.purge_rejoin_holds(now=NOW + timedelta(days=2)) == 2
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.accounts.rejoin_hold_until(ci="ci-5", di=None, now=NOW) is not None
        assert tx.accounts.rejoin_hold_until(ci="ci-1", di=None, now=NOW) is None


def test_activate_moves_only_a_pending_account_to_active(backend: Backend) -> None:
    pending = add_account(backend.uow, make_account(status=AccountStatus.PENDING_GUARDIAN_CONSENT))
    active = add_account(backend.uow)
    with backend.uow() as tx:
        assert tx.accounts.activate(pending.id, now=NOW)  # not committed
    with backend.uow() as tx:
        assert not tx.accounts.activate(active.id, now=NOW)
        assert not tx.accounts.activate("no-such-id", now=NOW)
        assert tx.accounts.activate(pending.id, now=NOW)
        assert not tx.accounts.activate(pending.id, now=NOW)  # no longer pending
        tx.commit()
    assert get_account(backend.uow, pending.id) == dataclasses.replace(
        pending, status=AccountStatus.ACTIVE
    )
    assert get_account(backend.uow, active.id) == active
    with backend.uow() as tx:
        assert not tx.accounts.delete_pending(pending.id)  # an activated child stays


def test_delete_destroys_the_account_with_its_sessions_links_and_consent_requests(
    backend: Backend,
) -> None:
    doomed, other = add_account(backend.uow, key="doomed@example.com"), add_account(backend.uow)
    made: dict[str, tuple[Session, SnsLink, str]] = {}
    with backend.uow() as tx:
        for account in (doomed, other):
            session = make_session(account.id)
            tx.sessions.add(session)
            tx.sessions.add_refresh_token(
                f"rt-{session.id}", session_id=session.id, now=NOW, expires_at=session.expires_at
            )
            link = SnsLink(
                id=new_id(),
                account_id=account.id,
                provider=SnsProvider.KAKAO,
                subject=f"s-{account.id}",
                nickname="길동이",
                picture_url="",
                created_at=NOW,
                last_login_at=NOW,
            )
            tx.sns_identities.add(link)
            request = make_consent_request(account.id)
            tx.guardian_consents.add(request)
            made[account.id] = (session, link, request.id)
        tx.accounts.add_rejoin_hold(new_id(), ci=doomed.ci, di=None, until=NOW + timedelta(days=1))
        tx.guardian_consents.add_outcome(
            "outcome-1", status=ConsentRequestStatus.REJECTED, expires_at=NOW, now=NOW
        )
        tx.commit()
    with backend.uow() as tx:
        assert tx.accounts.delete(doomed.id)
        assert not tx.accounts.delete(doomed.id)
        assert not tx.accounts.delete("no-such-id")
        tx.commit()
    session, link, request_id = made[doomed.id]
    with backend.uow(readonly=True) as tx:
        assert tx.accounts.get(doomed.id) is None
        assert tx.accounts.get_by_email("doomed@example.com") is None
        assert tx.sessions.get(session.id) is None
        assert tx.sessions.find_refresh(f"rt-{session.id}") is None
        assert tx.sessions.of_account(doomed.id) == []
        assert tx.sns_identities.find(SnsProvider.KAKAO, link.subject) is None
        assert tx.guardian_consents.get(request_id) is None
        assert tx.guardian_consents.of_account(doomed.id) is None
        # What has no foreign key to the account stays: re-join holds, outcomes.
        assert tx.accounts.rejoin_hold_until(ci=doomed.ci, di=None, now=NOW) is not None
        assert tx.guardian_consents.outcome("outcome-1") is not None
        # The other account keeps everything.
        kept_session, kept_link, kept_request = made[other.id]
        assert tx.accounts.get(other.id) == dataclasses.replace(other, sns_providers=("kakao",))
        assert tx.sessions.get(kept_session.id) == kept_session
        assert tx.sessions.find_refresh(f"rt-{kept_session.id}") is not None
        assert tx.sns_identities.find(SnsProvider.KAKAO, kept_link.subject) == kept_link
        assert tx.guardian_consents.get(kept_request) is not None
    # The unique email, CI and DI indexes and the SNS identity are free again.
    again = make_account(ci=doomed.ci, di=doomed.di)
    add_account(backend.uow, again, key="doomed@example.com")
    with backend.uow() as tx:
        tx.sns_identities.add(dataclasses.replace(link, id=new_id(), account_id=again.id))
        tx.commit()


def test_delete_without_commit_keeps_everything(backend: Backend) -> None:
    account = add_account(backend.uow)
    session = make_session(account.id)
    with backend.uow() as tx:
        tx.sessions.add(session)
        tx.commit()
    with backend.uow() as tx:
        assert tx.accounts.delete(account.id)
        assert tx.accounts.get(account.id) is None  # its own delete is visible to it
        assert tx.sessions.get(session.id) is None
    assert get_account(backend.uow, account.id) == account
    with backend.uow(readonly=True) as tx:
        assert tx.sessions.get(session.id) == session


def test_get_for_update_reads_the_account(backend: Backend) -> None:
    account = add_account(backend.uow)
    with backend.uow() as tx:
        assert tx.accounts.get(account.id, for_update=True) == account
        assert tx.accounts.get("no-such-id", for_update=True) is None
        tx.accounts.save_profile(account.id, name="홍길순", now=NOW)
        loaded = tx.accounts.get(account.id, for_update=True)  # its own writes are visible
        assert loaded is not None and loaded.name == "홍길순"


def test_get_for_update_holds_back_another_writer_until_commit(backend: Backend) -> None:
    """Two read-then-write transactions on one account: with `for_update`, the second reads
    what the first committed (no lost update), on every backend."""
    account = add_account(backend.uow)
    locked, second_read = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def append(suffix: str, *, hold: bool) -> None:
        try:
            with backend.uow() as tx:
                loaded = tx.accounts.get(account.id, for_update=True)
                assert loaded is not None
                if hold:
                    locked.set()
                    # The other writer must not get its row while this transaction is open.
                    assert not second_read.wait(0.5)
                else:
                    second_read.set()
                tx.accounts.save_profile(account.id, name=loaded.name + suffix, now=NOW)
                tx.commit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    first = threading.Thread(target=append, args=("1",), kwargs={"hold": True})
    first.start()
    assert locked.wait(WAIT_SECONDS)
    second = threading.Thread(target=append, args=("2",), kwargs={"hold": False})
    second.start()
    first.join(WAIT_SECONDS)
    second.join(WAIT_SECONDS)
    assert not first.is_alive() and not second.is_alive()
    assert errors == []
    loaded = get_account(backend.uow, account.id)
    assert loaded is not None and loaded.name == "홍길동12"
