"""The repository contract (see test_repository_contract.py): the login gate and sessions."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from idservice.domain.accounts import Account, AccountProfile, AccountStatus
from idservice.domain.lockout import ATTEMPT_IN_FLIGHT_TTL, LockoutPolicy, LoginGate
from idservice.domain.sessions import RevokeReason, Session
from idservice.domain.sns import SnsProvider
from idservice.service_layer.ports import AccountStanding, UnitOfWorkFactory
from tests.support.postgres import PostgresCluster
from tests.support.records import NOW, make_account, make_session, make_sns_link
from tests.support.repository_backends import BACKENDS, Backend, open_backend

POLICY = LockoutPolicy(threshold=3, duration=timedelta(minutes=15))


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


def begin(uow: UnitOfWorkFactory, account_id: str, *, after: timedelta = timedelta(0)) -> LoginGate:
    with uow() as tx:
        gate = tx.accounts.begin_login_attempt(account_id, now=NOW + after, policy=POLICY)
        tx.commit()
    return gate


def end(
    uow: UnitOfWorkFactory, account_id: str, *, ok: bool, after: timedelta = timedelta(0)
) -> None:
    with uow() as tx:
        tx.accounts.end_login_attempt(account_id, succeeded=ok, now=NOW + after, policy=POLICY)
        tx.commit()


def failed_logins(uow: UnitOfWorkFactory, account_id: str) -> tuple[int, object]:
    with uow(readonly=True) as tx:
        account = tx.accounts.get(account_id)
    assert account is not None
    return account.failed_logins, account.locked_until


# -- the login-attempt gate ------------------------------------------------------------------
def test_attempts_in_flight_count_toward_the_threshold(backend: Backend) -> None:
    account = add_account(backend.uow)
    assert [begin(backend.uow, account.id).admitted for _ in range(3)] == [True] * 3
    assert begin(backend.uow, account.id) == LoginGate(admitted=False)
    end(backend.uow, account.id, ok=True)
    assert begin(backend.uow, account.id).admitted


def test_in_flight_marks_expire(backend: Backend) -> None:
    account = add_account(backend.uow)
    for _ in range(3):
        begin(backend.uow, account.id)
    assert not begin(
        backend.uow, account.id, after=ATTEMPT_IN_FLIGHT_TTL - timedelta(seconds=1)
    ).admitted
    assert begin(backend.uow, account.id, after=ATTEMPT_IN_FLIGHT_TTL).admitted


def test_the_failure_reaching_the_threshold_places_the_lock(backend: Backend) -> None:
    account = add_account(backend.uow)
    for expected in (1, 2):
        assert begin(backend.uow, account.id).admitted
        end(backend.uow, account.id, ok=False)
        assert failed_logins(backend.uow, account.id) == (expected, None)
    assert begin(backend.uow, account.id).admitted
    end(backend.uow, account.id, ok=False)
    locked_until = NOW + POLICY.duration
    # The lock replaces the count.
    assert failed_logins(backend.uow, account.id) == (0, locked_until)
    assert begin(backend.uow, account.id) == LoginGate(admitted=False, locked_until=locked_until)
    before_end = POLICY.duration - timedelta(seconds=1)
    assert not begin(backend.uow, account.id, after=before_end).admitted
    assert begin(backend.uow, account.id, after=POLICY.duration).admitted


def test_a_success_clears_failures_and_lock(backend: Backend) -> None:
    account = add_account(backend.uow)
    for _ in range(2):
        begin(backend.uow, account.id)
        end(backend.uow, account.id, ok=False)
    begin(backend.uow, account.id)
    end(backend.uow, account.id, ok=True)
    assert failed_logins(backend.uow, account.id) == (0, None)


def test_unknown_accounts_are_not_admitted_and_ends_never_go_negative(backend: Backend) -> None:
    assert begin(backend.uow, "-") == LoginGate(admitted=False)
    end(backend.uow, "-", ok=False)  # no error, nothing to record
    account = add_account(backend.uow)
    end(backend.uow, account.id, ok=True)  # an end without a begin
    assert [begin(backend.uow, account.id).admitted for _ in range(4)] == [True] * 3 + [False]


# -- sessions and refresh tokens -------------------------------------------------------------
def add_session(uow: UnitOfWorkFactory, account_id: str, **kwargs: object) -> Session:
    session = make_session(account_id, **kwargs)  # type: ignore[arg-type]
    with uow() as tx:
        tx.sessions.add(session)
        tx.sessions.add_refresh_token(
            f"rt-{session.id}", session_id=session.id, now=NOW, expires_at=session.expires_at
        )
        tx.commit()
    return session


def get_session(uow: UnitOfWorkFactory, session_id: str) -> Session | None:
    with uow(readonly=True) as tx:
        return tx.sessions.get(session_id)


def test_a_session_reads_back_live_with_its_refresh_token(backend: Backend) -> None:
    account = add_account(backend.uow)
    session = dataclasses.replace(make_session(account.id), amr=("password", "otp"))
    with backend.uow() as tx:
        tx.sessions.add(dataclasses.replace(session, revoked_at=NOW))  # set by revoke() only
        tx.sessions.add_refresh_token(
            "rt-1", session_id=session.id, now=NOW, expires_at=NOW + timedelta(days=1)
        )
        tx.commit()
    assert get_session(backend.uow, session.id) == session
    with backend.uow(readonly=True) as tx:
        record = tx.sessions.find_refresh("rt-1")
        assert record is not None
        assert (record.session, record.expires_at, record.used_at) == (
            session,
            NOW + timedelta(days=1),
            None,
        )
        assert tx.sessions.find_refresh("rt-unknown") is None
        assert tx.sessions.get("no-such-session") is None


def test_a_session_reads_with_its_account_and_sns_providers(backend: Backend) -> None:
    account = add_account(backend.uow)
    bare = add_account(backend.uow)
    session, bare_session = add_session(backend.uow, account.id), add_session(backend.uow, bare.id)
    with backend.uow() as tx:
        for provider in (SnsProvider.KAKAO, SnsProvider.GOOGLE):
            tx.sns_identities.add(make_sns_link(account.id, provider))
        tx.commit()
    with backend.uow(readonly=True) as tx:
        expected = tx.accounts.get(account.id)
        assert expected is not None and expected.sns_providers == ("google", "kakao")
        profile = tx.sessions.get_with_profile(session.id)
        assert profile == (session, AccountProfile.of(expected))
        assert profile[1] is not None
        assert profile[1].sign_in_methods == ("password", "google", "kakao")
        bare_account = tx.accounts.get(bare.id)
        assert bare_account is not None
        assert tx.sessions.get_with_profile(bare_session.id) == (
            bare_session,
            AccountProfile.of(bare_account),
        )
        standing = AccountStanding(
            expected.id, expected.status, expected.birth_date, expected.identity_verified
        )
        found = tx.sessions.find_refresh_with_standing(f"rt-{session.id}")
        assert found == (tx.sessions.find_refresh(f"rt-{session.id}"), standing)
        assert tx.sessions.get_with_standing(session.id) == (session, standing)
        assert tx.sessions.get_with_standing("no-such-session") is None
        assert tx.sessions.get_with_profile("no-such-session") is None
        assert tx.sessions.find_refresh_with_standing("rt-unknown") is None
        assert tx.sessions.get_with_consents(session.id) == (session, expected.consents)
        assert tx.sessions.get_with_consents("no-such-session") is None


def test_a_profile_shows_how_an_account_without_a_password_signs_in(backend: Backend) -> None:
    account = add_account(backend.uow, make_account(password_hash=None))
    session = add_session(backend.uow, account.id)
    with backend.uow() as tx:
        tx.sns_identities.add(make_sns_link(account.id, SnsProvider.KAKAO))
        tx.commit()
    with backend.uow(readonly=True) as tx:
        found = tx.sessions.get_with_profile(session.id)
        stored = tx.accounts.get(account.id)
    assert stored is not None and found == (session, AccountProfile.of(stored))
    assert found[1] is not None and found[1].sign_in_methods == ("kakao",)


def test_sessions_and_tokens_need_their_parent_row(backend: Backend) -> None:
    with backend.uow() as tx, pytest.raises(backend.integrity_error):
        tx.sessions.add(make_session("no-such-account"))
    with backend.uow() as tx, pytest.raises(backend.integrity_error):
        tx.sessions.add_refresh_token("rt", session_id="no-such-session", now=NOW, expires_at=NOW)


def test_a_refresh_token_is_used_once(backend: Backend) -> None:
    session = add_session(backend.uow, add_account(backend.uow).id)
    with backend.uow() as tx:
        assert tx.sessions.mark_refresh_used(f"rt-{session.id}", now=NOW)
        assert not tx.sessions.mark_refresh_used(f"rt-{session.id}", now=NOW + timedelta(seconds=1))
        assert not tx.sessions.mark_refresh_used("rt-unknown", now=NOW)
        tx.commit()
    with backend.uow(readonly=True) as tx:
        record = tx.sessions.find_refresh(f"rt-{session.id}")
    assert record is not None and record.used_at == NOW


def ended_sessions(uow: UnitOfWorkFactory) -> tuple[Session, Session]:
    """A session logged out, and one whose end (`expires_at`) a test may reach."""
    revoked = add_session(uow, add_account(uow).id)
    with uow() as tx:
        assert tx.sessions.revoke(revoked.id, now=NOW, reason=RevokeReason.LOGOUT)
        tx.commit()
    ending = add_session(uow, add_account(uow).id)
    assert ending.expires_at is not None
    return revoked, ending


def test_a_refresh_token_of_an_ended_session_is_not_used(backend: Backend) -> None:
    """A refresh reads its token before it writes: a logout (or the session's end) that comes
    in between still wins, because the use itself requires a live session."""
    revoked, ending = ended_sessions(backend.uow)
    with backend.uow() as tx:
        assert not tx.sessions.mark_refresh_used(f"rt-{revoked.id}", now=NOW)
        assert not tx.sessions.mark_refresh_used(f"rt-{ending.id}", now=ending.expires_at)
        assert tx.sessions.mark_refresh_used(
            f"rt-{ending.id}", now=ending.expires_at - timedelta(seconds=1)
        )
        tx.commit()
    with backend.uow(readonly=True) as tx:
        record = tx.sessions.find_refresh(f"rt-{revoked.id}")
    assert record is not None and record.used_at is None


def _rotate(
    uow: UnitOfWorkFactory, token: str, successor: str, *, now: datetime
) -> tuple[Session, AccountStanding] | None:
    with uow(single_write=True) as tx:
        rotated = tx.sessions.rotate_refresh(token, successor=successor, now=now)
        tx.commit()
    return rotated


def test_a_rotation_uses_the_token_and_adds_its_successor_once(backend: Backend) -> None:
    account = add_account(backend.uow)
    session = add_session(backend.uow, account.id)
    rotated = _rotate(backend.uow, f"rt-{session.id}", "rt-next", now=NOW)
    # What the next access token is made of: the session, and its account's standing.
    assert rotated == (
        session,
        AccountStanding(account.id, account.status, account.birth_date, account.identity_verified),
    )
    # The token is used: a second rotation writes nothing, not even a second successor.
    again = NOW + timedelta(seconds=1)
    assert _rotate(backend.uow, f"rt-{session.id}", "rt-other", now=again) is None
    with backend.uow(readonly=True) as tx:
        used = tx.sessions.find_refresh(f"rt-{session.id}")
        successor = tx.sessions.find_refresh("rt-next")
        other = tx.sessions.find_refresh("rt-other")
    assert used is not None and used.used_at == NOW
    assert successor is not None and successor.used_at is None
    assert successor.session.id == session.id and successor.expires_at == session.expires_at
    assert other is None


def test_a_rotation_of_an_ended_session_writes_nothing(backend: Backend) -> None:
    revoked, ending = ended_sessions(backend.uow)
    assert _rotate(backend.uow, f"rt-{revoked.id}", "rt-after-logout", now=NOW) is None
    assert _rotate(backend.uow, f"rt-{ending.id}", "rt-after-end", now=ending.expires_at) is None
    assert _rotate(backend.uow, "rt-unknown", "rt-after-nothing", now=NOW) is None
    with backend.uow(readonly=True) as tx:
        assert tx.sessions.find_refresh("rt-after-logout") is None
        assert tx.sessions.find_refresh("rt-after-end") is None
        assert tx.sessions.find_refresh("rt-after-nothing") is None
        record = tx.sessions.find_refresh(f"rt-{ending.id}")
    assert record is not None and record.used_at is None


def test_a_rotation_needs_an_unexpired_token_and_an_account_that_may_get_tokens(
    backend: Backend,
) -> None:
    """A token that expired before its session, a pending child's session and a withdrawn
    account's session rotate nothing (the refresh's second path says why)."""
    live = add_account(backend.uow)
    session = add_session(backend.uow, live.id)
    with backend.uow() as tx:
        tx.sessions.add_refresh_token(
            "rt-short", session_id=session.id, now=NOW, expires_at=NOW + timedelta(minutes=1)
        )
        tx.commit()
    pending = add_account(backend.uow, make_account(status=AccountStatus.PENDING_GUARDIAN_CONSENT))
    of_pending = add_session(backend.uow, pending.id)
    withdrawn = add_account(backend.uow)
    of_withdrawn = add_session(backend.uow, withdrawn.id)
    with backend.uow() as tx:
        assert tx.accounts.withdraw(withdrawn.id, now=NOW, hold_until=NOW + timedelta(days=30))
        tx.commit()
    later = NOW + timedelta(minutes=1)
    assert _rotate(backend.uow, "rt-short", "rt-a", now=later) is None
    assert _rotate(backend.uow, f"rt-{of_pending.id}", "rt-b", now=later) is None
    assert _rotate(backend.uow, f"rt-{of_withdrawn.id}", "rt-c", now=later) is None
    with backend.uow(readonly=True) as tx:
        assert all(tx.sessions.find_refresh(t) is None for t in ("rt-a", "rt-b", "rt-c"))
        short = tx.sessions.find_refresh("rt-short")
        of_child = tx.sessions.find_refresh(f"rt-{of_pending.id}")
    assert short is not None and short.used_at is None
    assert of_child is not None and of_child.used_at is None
    # The session's own token, unexpired, still rotates.
    assert _rotate(backend.uow, f"rt-{session.id}", "rt-d", now=later) is not None


def test_revoke_ends_a_session_once(backend: Backend) -> None:
    session = add_session(backend.uow, add_account(backend.uow).id)
    with backend.uow() as tx:
        assert tx.sessions.revoke(session.id, now=NOW, reason=RevokeReason.LOGOUT)
        assert not tx.sessions.revoke(
            session.id, now=NOW + timedelta(hours=1), reason=RevokeReason.LOGOUT
        )
        assert not tx.sessions.revoke("no-such-session", now=NOW, reason=RevokeReason.LOGOUT)
        tx.commit()
    revoked = get_session(backend.uow, session.id)
    assert revoked is not None and revoked.revoked_at == NOW and not revoked.is_active(NOW)
    with backend.uow(readonly=True) as tx:
        record = tx.sessions.find_refresh(f"rt-{session.id}")
    assert record is not None and record.session.revoked_at == NOW


def test_revoke_others_keeps_one_and_skips_ended_and_foreign_sessions(backend: Backend) -> None:
    account, stranger = add_account(backend.uow), add_account(backend.uow)
    keep, other, revoked = (add_session(backend.uow, account.id) for _ in range(3))
    expired = add_session(backend.uow, account.id, ttl=timedelta(seconds=-1))
    foreign = add_session(backend.uow, stranger.id)
    reason = RevokeReason.PASSWORD_CHANGED
    with backend.uow() as tx:
        tx.sessions.revoke(revoked.id, now=NOW, reason=RevokeReason.LOGOUT)
        # Expired but never revoked sessions are revoked too.
        assert tx.sessions.revoke_others(account.id, keep=keep.id, now=NOW, reason=reason) == 2
        assert tx.sessions.revoke_others(account.id, keep=keep.id, now=NOW, reason=reason) == 0
        tx.commit()
    assert get_session(backend.uow, keep.id) == keep
    assert get_session(backend.uow, foreign.id) == foreign
    for ended in (other, expired):
        loaded = get_session(backend.uow, ended.id)
        assert loaded is not None and loaded.revoked_at == NOW
    with backend.uow() as tx:
        assert tx.sessions.revoke_others(account.id, keep=None, now=NOW, reason=reason) == 1
        tx.commit()


def test_purge_deletes_expired_and_long_revoked_sessions_with_their_tokens(
    backend: Backend,
) -> None:
    account = add_account(backend.uow)
    live = add_session(backend.uow, account.id)
    expired = add_session(backend.uow, account.id, ttl=timedelta(hours=1))
    old_revoked, new_revoked = (
        add_session(backend.uow, account.id),
        add_session(backend.uow, account.id),
    )
    with backend.uow() as tx:
        tx.sessions.revoke(old_revoked.id, now=NOW, reason=RevokeReason.LOGOUT)
        tx.sessions.revoke(new_revoked.id, now=NOW + timedelta(hours=2), reason=RevokeReason.LOGOUT)
        tx.commit()
    with backend.uow() as tx:
        now = NOW + timedelta(hours=3)
        assert tx.sessions.purge_ended(now=now, revoked_before=NOW + timedelta(hours=1)) == 2
        tx.commit()
    assert get_session(backend.uow, live.id) == live
    assert get_session(backend.uow, new_revoked.id) is not None
    with backend.uow(readonly=True) as tx:
        for gone in (expired, old_revoked):
            assert tx.sessions.get(gone.id) is None
            assert tx.sessions.find_refresh(f"rt-{gone.id}") is None


def test_an_accounts_sessions_come_newest_first_ended_ones_included(backend: Backend) -> None:
    account, stranger = add_account(backend.uow), add_account(backend.uow)
    middle = add_session(backend.uow, account.id, now=NOW + timedelta(hours=1))
    oldest = add_session(backend.uow, account.id, ttl=timedelta(seconds=1))  # expired
    newest = add_session(backend.uow, account.id, now=NOW + timedelta(hours=2))
    add_session(backend.uow, stranger.id, now=NOW + timedelta(hours=3))
    with backend.uow() as tx:
        tx.sessions.revoke(middle.id, now=NOW + timedelta(hours=4), reason=RevokeReason.LOGOUT)
        tx.commit()
    revoked = dataclasses.replace(middle, revoked_at=NOW + timedelta(hours=4))
    with backend.uow(readonly=True) as tx:
        listed = tx.sessions.of_account(account.id)
        assert listed == [newest, revoked, oldest]
        assert tx.sessions.of_account("no-such-id") == []
        listed[0].revoked_at = NOW  # a copy
        assert tx.sessions.of_account(account.id)[0] == newest


def test_an_accounts_sessions_include_its_own_uncommitted_ones(backend: Backend) -> None:
    account = add_account(backend.uow)
    session = make_session(account.id)
    with backend.uow() as tx:
        tx.sessions.add(session)
        assert tx.sessions.of_account(account.id) == [session]
    with backend.uow(readonly=True) as tx:
        assert tx.sessions.of_account(account.id) == []


def test_a_withdrawn_account_leaves_no_session_to_read(backend: Backend) -> None:
    account = add_account(backend.uow)
    session = add_session(backend.uow, account.id)
    with backend.uow() as tx:
        assert tx.accounts.withdraw(account.id, now=NOW, hold_until=NOW + timedelta(days=30))
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.sessions.get_with_profile(session.id) is None
        assert tx.sessions.get_with_consents(session.id) is None
        assert tx.sessions.get_with_standing(session.id) is None
        assert tx.sessions.find_refresh_with_standing(f"rt-{session.id}") is None
    # A session that outlives its account's withdrawal (one written in the same instant) reads
    # without the account: the reads take live accounts only.
    late = add_session(backend.uow, account.id)
    with backend.uow(readonly=True) as tx:
        assert tx.sessions.get_with_profile(late.id) == (late, None)
        assert tx.sessions.get_with_consents(late.id) == (late, None)
        assert tx.sessions.get_with_standing(late.id) == (late, None)
        found = tx.sessions.find_refresh_with_standing(f"rt-{late.id}")
        assert found == (tx.sessions.find_refresh(f"rt-{late.id}"), None)


def test_an_accounts_sessions_are_newest_first_and_ties_by_id(backend: Backend) -> None:
    account = add_account(backend.uow)
    later = NOW + timedelta(minutes=1)
    ids = ["zzz-" + account.id[:8], "aaa-" + account.id[:8], "mmm-" + account.id[:8]]
    with backend.uow() as tx:
        for session_id, created in zip(ids, (NOW, NOW, later), strict=True):
            tx.sessions.add(
                dataclasses.replace(make_session(account.id, now=created), id=session_id)
            )
        tx.commit()
    with backend.uow(readonly=True) as tx:
        found = [s.id for s in tx.sessions.of_account(account.id)]
    assert found == [ids[2], ids[1], ids[0]]
