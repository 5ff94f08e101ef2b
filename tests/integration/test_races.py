"""Interleavings that sequential calls never produce, forced with a hasher that pauses once.

The hasher is the real Argon2 one; it only holds back the first verification's result until the
test lets it go, so another use case can commit in between.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from idservice.adapters.hashing import Argon2Parameters
from idservice.bootstrap import App, build_app
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.profile import ChangePassword, GetAccount
from idservice.service_layer.sessions import IssuedSession
from idservice.service_layer.signup import SignUp
from idservice.service_layer.validation import email_lookup_key, normalize_email
from tests.conftest import make_settings
from tests.support.client import STRONG_PASSWORD, new_person
from tests.support.pausing import PausingHasher

NEW_PASSWORD = "a different horse, battery and staple"
WAIT_SECONDS = 30


@pytest.fixture
def hasher() -> PausingHasher:
    return PausingHasher()


@pytest.fixture
def race_app(tmp_path: Path, database_url: str, hasher: PausingHasher) -> Iterator[App]:
    settings = make_settings(tmp_path, database_url, require_identity_verification=False)
    app = build_app(settings, hasher=hasher)
    try:
        yield app
    finally:
        app.close()


def sign_up(app: App, email: str) -> IssuedSession:
    person = new_person()
    result = app.handle(
        SignUp(
            email=email,
            password=STRONG_PASSWORD,
            name=person.name,
            phone_number=person.phone,
            birth_date=person.birth_date,
            consents_given=True,
            terms_version=app.settings.terms_version,
            privacy_policy_version=app.settings.privacy_policy_version,
        ),
    )
    assert result.session is not None
    return result.session


def login_outcome(app: App, email: str) -> IssuedSession | Reason:
    """The session of a password login, or the reason it was refused."""
    try:
        return app.handle(PasswordLogin(email=email, password=STRONG_PASSWORD))
    except DomainError as error:
        return error.reason


def test_login_checked_before_a_password_change_gets_no_session(
    race_app: App, hasher: PausingHasher
) -> None:
    email = "race-change@example.com"
    first = sign_up(race_app, email)
    outcome: list[object] = []

    def log_in() -> None:
        outcome.append(login_outcome(race_app, email))

    hasher.arm()
    login = threading.Thread(target=log_in)
    login.start()
    assert hasher.reached.wait(WAIT_SECONDS)  # the old password has been checked, not yet used
    race_app.handle(
        ChangePassword(
            access_token=first.access_token,
            current_password=STRONG_PASSWORD,
            new_password=NEW_PASSWORD,
        )
    )
    hasher.release()
    login.join(WAIT_SECONDS)
    # The old password no longer opens a session once the change has committed.
    assert outcome == [Reason.INVALID_CREDENTIALS]
    with race_app.deps.uow(readonly=True) as uow:
        account = uow.accounts.get_by_email(email_lookup_key(normalize_email(email)))
    assert account is not None and account.password_hash is not None
    assert race_app.deps.hasher.verify(account.password_hash, NEW_PASSWORD).ok
    # And the new password works.
    assert race_app.handle(PasswordLogin(email=email, password=NEW_PASSWORD))


def test_two_password_changes_with_one_current_password_let_one_win(
    race_app: App, hasher: PausingHasher
) -> None:
    email = "race-twice@example.com"
    issued = sign_up(race_app, email)
    outcome: list[object] = []

    def change(to: str) -> None:
        try:
            race_app.handle(
                ChangePassword(
                    access_token=issued.access_token,
                    current_password=STRONG_PASSWORD,
                    new_password=to,
                )
            )
            outcome.append(to)
        except DomainError as error:
            outcome.append(error.reason)

    hasher.arm()
    slow = threading.Thread(target=change, args=("the slow change, made second",))
    slow.start()
    assert hasher.reached.wait(WAIT_SECONDS)
    change(NEW_PASSWORD)
    hasher.release()
    slow.join(WAIT_SECONDS)
    assert outcome == [NEW_PASSWORD, Reason.INVALID_CREDENTIALS]
    assert race_app.handle(PasswordLogin(email=email, password=NEW_PASSWORD))


def test_a_profile_correction_writes_only_its_own_fields(race_app: App) -> None:
    issued = sign_up(race_app, "race-profile@example.com")
    before = race_app.handle(GetAccount(access_token=issued.access_token))
    with race_app.deps.uow() as uow:  # another correction lands between read and write
        uow.accounts.save_profile(before.id, phone_number="+821055556666", now=before.created_at)
        uow.commit()
    with race_app.deps.uow() as uow:
        uow.accounts.save_profile(before.id, name="김바뀜", now=before.created_at)
        uow.commit()
    after = race_app.handle(GetAccount(access_token=issued.access_token))
    assert (after.name, after.phone_number, after.birth_date) == (
        "김바뀜",
        "+821055556666",
        before.birth_date,
    )
    assert isinstance(after.birth_date, date)


def test_two_logins_that_both_rehash_both_succeed(tmp_path: Path, database_url: str) -> None:
    email = "race-rehash@example.com"
    settings = make_settings(tmp_path, database_url, require_identity_verification=False)
    # The account's hash is made with other parameters than the ones in force at login.
    old = PausingHasher(Argon2Parameters(time_cost=1, memory_cost=2048, parallelism=1))
    first_app = build_app(settings, hasher=old)
    try:
        sign_up(first_app, email)
    finally:
        first_app.close()
    hasher = PausingHasher()
    app = build_app(settings, hasher=hasher)
    try:
        outcome: list[object] = []

        def log_in() -> None:
            outcome.append(login_outcome(app, email))

        hasher.arm()
        held = threading.Thread(target=log_in)
        held.start()
        assert hasher.reached.wait(WAIT_SECONDS)  # checked against the old hash, not yet used
        log_in()  # re-hashes under the new parameters and commits
        hasher.release()
        held.join(WAIT_SECONDS)
        assert len(outcome) == 2
        assert all(isinstance(result, IssuedSession) for result in outcome), outcome
    finally:
        app.close()
