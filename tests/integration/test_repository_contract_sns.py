"""The repository contract (see test_repository_contract.py): SNS identities linked to accounts,
the `sns_providers` accounts read from them, and signup tickets."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from idservice.domain.accounts import Account, AccountStatus
from idservice.domain.sns import SnsProfile, SnsProvider
from idservice.service_layer.ports import SnsLink, UniqueViolation, UnitOfWorkFactory
from tests.support.postgres import PostgresCluster
from tests.support.records import NOW, make_account, new_id
from tests.support.repository_backends import BACKENDS, Backend, open_backend

GOOGLE, KAKAO = SnsProvider.GOOGLE, SnsProvider.KAKAO
TTL = timedelta(minutes=15)


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> Iterator[Backend]:
    with open_backend(request.param, tmp_path, postgres_cluster) as opened:
        yield opened


def add_account(uow: UnitOfWorkFactory, account: Account | None = None) -> Account:
    account = account or make_account()
    with uow() as tx:
        tx.accounts.add(account, email_key=f"{account.id}@example.com")
        tx.commit()
    return account


def make_link(
    account_id: str, provider: SnsProvider = KAKAO, subject: str = "", **changes: object
) -> SnsLink:
    link = SnsLink(
        id=new_id(),
        account_id=account_id,
        provider=provider,
        subject=subject or new_id(),
        nickname="길동이",
        picture_url="https://k.kakaocdn.net/dn/p/img_640x640.jpg",
        created_at=NOW,
        last_login_at=NOW,
    )
    return dataclasses.replace(link, **changes)  # type: ignore[arg-type]


def add_links(uow: UnitOfWorkFactory, *links: SnsLink) -> None:
    with uow() as tx:
        for link in links:
            tx.sns_identities.add(link)
        tx.commit()


def find(uow: UnitOfWorkFactory, provider: SnsProvider, subject: str) -> SnsLink | None:
    with uow(readonly=True) as tx:
        return tx.sns_identities.find(provider, subject)


def links_of(uow: UnitOfWorkFactory, account_id: str) -> list[SnsLink]:
    with uow(readonly=True) as tx:
        return tx.sns_identities.of_account(account_id)


def get_account(uow: UnitOfWorkFactory, account_id: str) -> Account | None:
    with uow(readonly=True) as tx:
        return tx.accounts.get(account_id)


# -- the unit of work ------------------------------------------------------------------------
def test_links_and_tickets_are_not_stored_without_commit(backend: Backend) -> None:
    account = add_account(backend.uow)
    link = make_link(account.id)
    with backend.uow() as tx:
        tx.sns_identities.add(link)
        tx.signup_tickets.add("t-1", SnsProfile(KAKAO, "s-1"), now=NOW, expires_at=NOW + TTL)
        assert tx.sns_identities.find(KAKAO, link.subject) == link
        assert tx.signup_tickets.get("t-1", now=NOW) is not None
    assert find(backend.uow, KAKAO, link.subject) is None
    with backend.uow(readonly=True) as tx:
        assert tx.signup_tickets.get("t-1", now=NOW) is None


def test_an_exception_rolls_link_changes_back(backend: Backend) -> None:
    account = add_account(backend.uow)
    link = make_link(account.id)
    add_links(backend.uow, link)
    with pytest.raises(LookupError), backend.uow() as tx:
        tx.sns_identities.touch(link.id, nickname="새별명", picture_url="", now=NOW + TTL)
        assert tx.sns_identities.remove(account.id, KAKAO)
        raise LookupError
    assert find(backend.uow, KAKAO, link.subject) == link


# -- SNS identities --------------------------------------------------------------------------
def test_a_link_reads_back_by_identity_and_by_account(backend: Backend) -> None:
    account, other = add_account(backend.uow), add_account(backend.uow)
    kakao = make_link(account.id, KAKAO, "4152637485")
    google = make_link(account.id, GOOGLE, "4152637485", nickname="", picture_url="")
    add_links(backend.uow, kakao, google)  # added kakao first: read back by provider
    assert find(backend.uow, KAKAO, "4152637485") == kakao
    assert find(backend.uow, GOOGLE, "4152637485") == google
    assert find(backend.uow, KAKAO, "unknown") is None
    assert links_of(backend.uow, account.id) == [google, kakao]
    assert links_of(backend.uow, other.id) == []
    assert links_of(backend.uow, "no-such-id") == []


def test_an_identity_is_linked_to_one_account_only(backend: Backend) -> None:
    first, second = add_account(backend.uow), add_account(backend.uow)
    add_links(backend.uow, make_link(first.id, KAKAO, "s-1"))
    google = make_link(second.id, GOOGLE, "s-1")  # the same subject at another provider
    with backend.uow() as tx:
        with pytest.raises(UniqueViolation) as violation:
            tx.sns_identities.add(make_link(second.id, KAKAO, "s-1"))
        assert violation.value.column == "subject_index"
        tx.sns_identities.add(google)  # the transaction is still usable
        tx.commit()
    assert find(backend.uow, GOOGLE, "s-1") == google
    found = find(backend.uow, KAKAO, "s-1")
    assert found is not None and found.account_id == first.id


def test_an_account_has_one_link_per_provider(backend: Backend) -> None:
    account = add_account(backend.uow)
    add_links(backend.uow, make_link(account.id, KAKAO, "s-1"))
    with backend.uow() as tx:
        with pytest.raises(UniqueViolation) as violation:
            tx.sns_identities.add(make_link(account.id, KAKAO, "s-2"))
        assert violation.value.column == "account_provider"
        tx.sns_identities.add(make_link(account.id, GOOGLE, "s-2"))
        tx.commit()
    assert find(backend.uow, KAKAO, "s-2") is None
    assert [link.provider for link in links_of(backend.uow, account.id)] == [GOOGLE, KAKAO]


def test_relinking_the_same_identity_names_the_subject_index(backend: Backend) -> None:
    account = add_account(backend.uow)
    add_links(backend.uow, make_link(account.id, KAKAO, "s-1"))
    with backend.uow() as tx, pytest.raises(UniqueViolation) as violation:
        tx.sns_identities.add(make_link(account.id, KAKAO, "s-1"))
    assert violation.value.column == "subject_index"


def test_a_duplicate_link_id_is_an_integrity_error(backend: Backend) -> None:
    account = add_account(backend.uow)
    link = make_link(account.id, KAKAO)
    add_links(backend.uow, link)
    twin = dataclasses.replace(link, provider=GOOGLE, subject=new_id())
    with backend.uow() as tx, pytest.raises(backend.integrity_error):
        tx.sns_identities.add(twin)


def test_a_link_to_a_missing_account_is_an_integrity_error(backend: Backend) -> None:
    with backend.uow() as tx, pytest.raises(backend.integrity_error):
        tx.sns_identities.add(make_link("no-such-account"))


def test_touch_refreshes_the_nickname_picture_and_last_login(backend: Backend) -> None:
    account = add_account(backend.uow)
    link, other = make_link(account.id, KAKAO), make_link(account.id, GOOGLE)
    add_links(backend.uow, link, other)
    later = NOW + timedelta(days=3)
    with backend.uow() as tx:
        tx.sns_identities.touch(link.id, nickname="새별명", picture_url="", now=later)
        tx.sns_identities.touch("no-such-id", nickname="x", picture_url="y", now=later)
        tx.commit()
    touched = dataclasses.replace(link, nickname="새별명", picture_url="", last_login_at=later)
    assert find(backend.uow, KAKAO, link.subject) == touched
    assert find(backend.uow, GOOGLE, other.subject) == other


def test_remove_unlinks_one_provider_once(backend: Backend) -> None:
    account, other = add_account(backend.uow), add_account(backend.uow)
    kakao, google = make_link(account.id, KAKAO, "s-1"), make_link(account.id, GOOGLE, "s-2")
    add_links(backend.uow, kakao, google)
    with backend.uow() as tx:
        assert not tx.sns_identities.remove(other.id, KAKAO)
        assert not tx.sns_identities.remove("no-such-id", KAKAO)
        assert tx.sns_identities.remove(account.id, KAKAO)
        assert not tx.sns_identities.remove(account.id, KAKAO)
        tx.commit()
    assert find(backend.uow, KAKAO, "s-1") is None
    assert links_of(backend.uow, account.id) == [google]
    relinked = make_link(other.id, KAKAO, "s-1")  # the identity is free again
    add_links(backend.uow, relinked)
    assert find(backend.uow, KAKAO, "s-1") == relinked


# -- accounts' sign-in methods ---------------------------------------------------------------
def test_an_account_lists_its_linked_providers(backend: Backend) -> None:
    account = add_account(backend.uow, make_account(email="kim@example.com"))
    sns_only = add_account(backend.uow, make_account(email=None, password_hash=None))
    with backend.uow() as tx:
        tx.sns_identities.add(make_link(account.id, KAKAO))
        tx.sns_identities.add(make_link(account.id, GOOGLE))
        tx.sns_identities.add(make_link(sns_only.id, KAKAO))
        loaded = tx.accounts.get(account.id)  # its own writes are visible to it
        assert loaded is not None and loaded.sns_providers == ("google", "kakao")
        tx.commit()
    with backend.uow(readonly=True) as tx:
        by_id = tx.accounts.get(account.id)
        by_email = tx.accounts.get_by_email(f"{account.id}@example.com")
        by_identity = tx.accounts.find_by_identity(ci=account.ci, di=None)
        sns_account = tx.accounts.get(sns_only.id)
    expected = dataclasses.replace(account, sns_providers=("google", "kakao"))
    assert by_id == by_email == by_identity == expected
    assert expected.sign_in_methods == ["password", "google", "kakao"]
    assert sns_account is not None and sns_account.sign_in_methods == ["kakao"]
    with backend.uow() as tx:
        assert tx.sns_identities.remove(account.id, GOOGLE)
        tx.commit()
    unlinked = get_account(backend.uow, account.id)
    assert unlinked is not None and unlinked.sign_in_methods == ["password", "kakao"]


def test_an_account_without_links_lists_none(backend: Backend) -> None:
    account = add_account(backend.uow)
    loaded = get_account(backend.uow, account.id)
    assert loaded is not None
    assert (loaded.sns_providers, loaded.sign_in_methods) == ((), ["password"])


def test_read_accounts_are_copies_of_their_providers(backend: Backend) -> None:
    account = add_account(backend.uow)
    add_links(backend.uow, make_link(account.id, KAKAO))
    with backend.uow(readonly=True) as tx:
        loaded = tx.accounts.get(account.id)
        assert loaded is not None
        loaded.sns_providers = ()
        again = tx.accounts.get(account.id)
    assert again is not None and again.sns_providers == ("kakao",)


def test_deleting_a_pending_account_deletes_its_links(backend: Backend) -> None:
    pending = add_account(backend.uow, make_account(status=AccountStatus.PENDING_GUARDIAN_CONSENT))
    active = add_account(backend.uow)
    add_links(backend.uow, make_link(pending.id, KAKAO, "s-1"), make_link(active.id, KAKAO, "s-2"))
    with backend.uow() as tx:
        assert not tx.accounts.delete_pending(active.id)
        assert tx.accounts.delete_pending(pending.id)
        tx.commit()
    assert find(backend.uow, KAKAO, "s-1") is None
    assert links_of(backend.uow, pending.id) == []
    assert [link.subject for link in links_of(backend.uow, active.id)] == ["s-2"]
    newcomer = add_account(backend.uow)
    add_links(backend.uow, make_link(newcomer.id, KAKAO, "s-1"))  # the identity is free again
    loaded = get_account(backend.uow, newcomer.id)
    assert loaded is not None and loaded.sns_providers == ("kakao",)


# -- signup tickets --------------------------------------------------------------------------
FULL_PROFILE = SnsProfile(
    provider=KAKAO,
    subject="4152637485",
    email="hong@example.com",
    name="홍길동",
    phone_number="+821023456789",
    birth_date=date(1990, 1, 15),
    ci="ci-값==",
    nickname="길동이",
    picture_url="https://k.kakaocdn.net/dn/p/img_640x640.jpg",
)


@pytest.mark.parametrize(
    "profile",
    [FULL_PROFILE, SnsProfile(GOOGLE, "1077"), SnsProfile(GOOGLE, "1078", ci="")],
    ids=["full", "minimal", "empty-ci"],
)
def test_a_ticket_reads_back_its_profile(backend: Backend, profile: SnsProfile) -> None:
    with backend.uow() as tx:
        tx.signup_tickets.add("t-1", profile, now=NOW, expires_at=NOW + TTL)
        tx.commit()
    with backend.uow(readonly=True) as tx:
        stored = tx.signup_tickets.get("t-1", now=NOW)
        assert tx.signup_tickets.get("t-unknown", now=NOW) is None
    assert stored is not None
    assert (stored.profile, stored.expires_at) == (profile, NOW + TTL)
    assert stored.profile.provider is profile.provider


def test_a_ticket_is_valid_until_it_expires(backend: Backend) -> None:
    with backend.uow() as tx:
        tx.signup_tickets.add("t-1", FULL_PROFILE, now=NOW, expires_at=NOW + TTL)
        tx.commit()
    with backend.uow() as tx:
        assert tx.signup_tickets.get("t-1", now=NOW + TTL - timedelta(microseconds=1)) is not None
        assert tx.signup_tickets.get("t-1", now=NOW + TTL) is None
        assert not tx.signup_tickets.consume("t-1", now=NOW + TTL)
        assert tx.signup_tickets.get("t-1", now=NOW) is not None  # not used by the refusal


def test_a_ticket_is_used_once_and_keeps_no_profile(backend: Backend) -> None:
    with backend.uow() as tx:
        tx.signup_tickets.add("t-1", FULL_PROFILE, now=NOW, expires_at=NOW + TTL)
        tx.commit()
    with backend.uow() as tx:
        assert tx.signup_tickets.consume("t-1", now=NOW)
        assert not tx.signup_tickets.consume("t-1", now=NOW)
        assert not tx.signup_tickets.consume("t-unknown", now=NOW)
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.signup_tickets.get("t-1", now=NOW) is None


def test_a_duplicate_ticket_hash_is_an_integrity_error(backend: Backend) -> None:
    with backend.uow() as tx:
        tx.signup_tickets.add("t-1", FULL_PROFILE, now=NOW, expires_at=NOW + TTL)
        tx.commit()
    someone_else = dataclasses.replace(FULL_PROFILE, subject="someone-else")
    with backend.uow() as tx, pytest.raises(backend.integrity_error):
        tx.signup_tickets.add("t-1", someone_else, now=NOW, expires_at=NOW + TTL)


def test_expired_tickets_are_purged_used_or_not(backend: Backend) -> None:
    with backend.uow() as tx:
        for name, minutes in (("t-1", 1), ("t-2", 2), ("t-used", 1), ("t-5", 5), ("u-5", 5)):
            profile = dataclasses.replace(FULL_PROFILE, subject=name)  # one person each
            tx.signup_tickets.add(
                name, profile, now=NOW, expires_at=NOW + timedelta(minutes=minutes)
            )
        assert tx.signup_tickets.consume("t-used", now=NOW)
        assert tx.signup_tickets.consume("u-5", now=NOW)
        tx.commit()
    with backend.uow() as tx:
        assert tx.signup_tickets.purge_expired(now=NOW + timedelta(minutes=2)) == 3
        assert tx.signup_tickets.purge_expired(now=NOW + timedelta(minutes=2)) == 0
        tx.commit()
    later = NOW + timedelta(minutes=3)
    with backend.uow() as tx:
        assert tx.signup_tickets.get("t-5", now=later) is not None
        assert not tx.signup_tickets.consume("u-5", now=later)  # used, kept until it expires
        # The purged hashes are gone: they can be stored again.
        for name in ("t-1", "t-2", "t-used"):
            profile = dataclasses.replace(FULL_PROFILE, subject=f"new-{name}")
            tx.signup_tickets.add(name, profile, now=later, expires_at=later + TTL)
        tx.commit()


def test_a_person_keeps_one_unused_ticket(backend: Backend) -> None:
    """A new ticket of the same (provider, subject) replaces the unused one, expired or not;
    used tickets, and other people's, stay."""
    same_subject_elsewhere = SnsProfile(GOOGLE, FULL_PROFILE.subject)
    other_person = SnsProfile(KAKAO, "someone-else")
    with backend.uow() as tx:
        tx.signup_tickets.add("t-1", FULL_PROFILE, now=NOW, expires_at=NOW + TTL)
        tx.signup_tickets.add("t-google", same_subject_elsewhere, now=NOW, expires_at=NOW + TTL)
        tx.signup_tickets.add("t-other", other_person, now=NOW, expires_at=NOW + TTL)
        tx.commit()
    later = NOW + timedelta(minutes=1)
    with backend.uow() as tx:
        tx.signup_tickets.add("t-2", FULL_PROFILE, now=later, expires_at=later + TTL)
        tx.commit()
    with backend.uow() as tx:
        assert tx.signup_tickets.get("t-1", now=later) is None
        assert not tx.signup_tickets.consume("t-1", now=later)
        stored = tx.signup_tickets.get("t-2", now=later)
        assert stored is not None and stored.profile == FULL_PROFILE
        assert tx.signup_tickets.get("t-google", now=later) is not None
        assert tx.signup_tickets.get("t-other", now=later) is not None
        # Storing the same hash again for the same person replaces it: no clash.
        tx.signup_tickets.add("t-2", FULL_PROFILE, now=later, expires_at=later + TTL)
        assert tx.signup_tickets.consume("t-2", now=later)
        tx.commit()
    # A used ticket is not replaced: it stays (without its profile) until it expires.
    with backend.uow() as tx:
        tx.signup_tickets.add("t-3", FULL_PROFILE, now=later, expires_at=later + TTL)
        tx.commit()
    with backend.uow() as tx, pytest.raises(backend.integrity_error):
        tx.signup_tickets.add("t-2", FULL_PROFILE, now=later, expires_at=later + TTL)
    # An expired unused ticket is replaced too (nothing is left for the purge).
    with backend.uow() as tx:
        tx.signup_tickets.add("t-old", other_person, now=NOW, expires_at=NOW + timedelta(seconds=1))
        tx.commit()
    with backend.uow() as tx:
        tx.signup_tickets.add("t-new", other_person, now=later, expires_at=later + TTL)
        assert tx.signup_tickets.consume("t-3", now=later)
        # Left: t-google and t-new (unused), t-2 and t-3 (used); t-other and t-old were replaced.
        assert tx.signup_tickets.purge_expired(now=later + TTL) == 4
        assert tx.signup_tickets.purge_expired(now=later + TTL) == 0
