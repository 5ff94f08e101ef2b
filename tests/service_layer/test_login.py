"""PasswordLogin against fakes: sessions, uniform failures, the lock, pending children."""

from __future__ import annotations

from datetime import date, timedelta

from idservice.domain.errors import Reason
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.ports import VerifyOutcome
from tests.fakes.providers import verified_person
from tests.service_layer.harness import PASSWORD, Guardian, Harness


def signed_up(svc: Harness, email: str = "login@example.com") -> str:
    """An active account's id, signed up with `email` and PASSWORD."""
    return svc.sign_up_person(verified_person(), email=email).account.id


def test_login_opens_a_new_session(svc: Harness) -> None:
    account_id = signed_up(svc)
    issued = svc.login("Login@Example.com")
    assert issued.account_id == account_id
    claims = svc.tokens.verify(issued.access_token, now=svc.clock())
    assert claims.amr == ("password",) and claims.account_id == account_id
    assert len(svc.uow.committed().sessions) == 2  # the signup's and this one


def test_wrong_password_and_unknown_email_fail_the_same_way(svc: Harness) -> None:
    signed_up(svc)
    wrong = svc.fails(PasswordLogin(email="login@example.com", password="x" + PASSWORD))
    unknown = svc.fails(PasswordLogin(email="nobody@example.com", password=PASSWORD))
    assert wrong.reason is unknown.reason is Reason.INVALID_CREDENTIALS
    assert wrong.message == unknown.message
    # The unknown email still cost a password check (timing parity).
    assert svc.hasher.calls["burn_later"] == 1
    assert svc.uow.committed().accounts.popitem()[1].account.failed_logins == 1


def test_the_failure_reaching_the_threshold_locks_the_account(svc: Harness) -> None:
    account_id = signed_up(svc)
    threshold = svc.policy.lockout.threshold
    for _ in range(threshold):
        svc.fails(
            PasswordLogin(email="login@example.com", password="wrong"), Reason.INVALID_CREDENTIALS
        )
    locked_until = svc.clock() + svc.policy.lockout.duration
    assert svc.uow.committed().accounts[account_id].account.locked_until == locked_until

    # Even the right password is refused while the lock runs, with its end in UTC.
    error = svc.fails(
        PasswordLogin(email="login@example.com", password=PASSWORD), Reason.ACCOUNT_LOCKED
    )
    assert error.metadata["locked_until"].endswith("Z")
    assert error.metadata["locked_until"].startswith(locked_until.strftime("%Y-%m-%dT%H:%M:%S"))

    svc.clock.advance(svc.policy.lockout.duration)
    assert svc.login("login@example.com").account_id == account_id


def test_a_success_resets_the_failure_count(svc: Harness) -> None:
    account_id = signed_up(svc)
    for _ in range(svc.policy.lockout.threshold - 1):
        svc.fails(PasswordLogin(email="login@example.com", password="wrong"))
    svc.login("login@example.com")
    assert svc.uow.committed().accounts[account_id].account.failed_logins == 0
    svc.fails(
        PasswordLogin(email="login@example.com", password="wrong"), Reason.INVALID_CREDENTIALS
    )


def test_a_pending_child_cannot_log_in(svc: Harness) -> None:
    child = verified_person(birth_date=date(2016, 2, 29))
    svc.sign_up_person(child, email="child@example.com", guardian=Guardian())
    svc.fails(
        PasswordLogin(email="child@example.com", password=PASSWORD),
        Reason.ACCOUNT_PENDING_GUARDIAN_CONSENT,
    )
    # The wrong password says nothing about the account's state.
    svc.fails(
        PasswordLogin(email="child@example.com", password="wrong"), Reason.INVALID_CREDENTIALS
    )


def test_an_outdated_hash_is_replaced_at_login(svc: Harness) -> None:
    account_id = signed_up(svc)
    old = svc.uow.committed().accounts[account_id].account.password_hash
    svc.hasher.version = 2
    svc.login("login@example.com")
    new = svc.uow.committed().accounts[account_id].account.password_hash
    assert new != old and new is not None and new.startswith("fake-argon2$v2$")
    assert svc.hasher.verify(new, PASSWORD) == VerifyOutcome(ok=True, needs_rehash=False)
    assert svc.login("login@example.com").account_id == account_id


def test_malformed_input_is_invalid_credentials_without_storage_work(svc: Harness) -> None:
    before = svc.uow.commits
    svc.fails(PasswordLogin(email="", password=PASSWORD), Reason.INVALID_CREDENTIALS)
    svc.fails(PasswordLogin(email="not an email", password=PASSWORD), Reason.INVALID_CREDENTIALS)
    svc.fails(PasswordLogin(email="a@example.com", password="p" * 2000), Reason.INVALID_CREDENTIALS)
    assert svc.uow.commits == before
    assert svc.hasher.calls["burn"] == 1  # the unparsable email


def test_lock_expiry_is_measured_on_the_clock(svc: Harness) -> None:
    signed_up(svc)
    for _ in range(svc.policy.lockout.threshold):
        svc.fails(PasswordLogin(email="login@example.com", password="wrong"))
    svc.clock.advance(svc.policy.lockout.duration - timedelta(seconds=1))
    svc.fails(PasswordLogin(email="login@example.com", password=PASSWORD), Reason.ACCOUNT_LOCKED)
