"""SignUp against fakes: adults, children under 14, conflicts, terms, idempotent replays."""

from __future__ import annotations

import re
import threading
from datetime import date, timedelta

import pytest

from idservice.domain.accounts import AccountStatus
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.guardian_consent import code_hash
from idservice.service_layer.sessions import RefreshSession
from idservice.service_layer.signup import SignUp
from idservice.service_layer.signup_replay import SignUpResult
from tests.fakes.providers import verified_person
from tests.fakes.security import FakePasswordHasher
from tests.service_layer.harness import PASSWORD, Guardian, Harness, new_email

CHILD_BIRTH = date(2015, 4, 1)  # 10 on the fake clock's day (2025-06-02)


def test_adult_signup_with_a_verification_token_opens_a_session(svc: Harness) -> None:
    person = verified_person()
    token = svc.verify(person).token
    result = svc.sign_up(token, email="hong@example.com")

    account = result.account
    assert account.status is AccountStatus.ACTIVE
    assert account.identity_verified and account.ci == person.ci and account.di == person.di
    assert (account.name, account.birth_date) == (person.name, person.birth_date)
    assert account.phone_number == "+82" + person.phone_number[1:]
    assert result.consent_request is None
    assert result.session is not None
    claims = svc.tokens.verify(result.session.access_token, now=svc.clock())
    assert (claims.account_id, claims.session_id) == (account.id, result.session.session_id)
    assert claims.age_band == "adult"

    [created] = svc.uow.events("account.created")
    assert created["data"] == {
        "account_id": account.id,
        "status": "active",
        "identity_verified": True,
    }
    stored = svc.uow.committed()
    [verification] = stored.verifications.values()
    assert verification.consumed_at == svc.clock() and verification.person is None
    assert svc.hasher.verify(stored.accounts[account.id].account.password_hash or "", PASSWORD).ok
    # The token was single use.
    svc.fails(svc.signup(token), Reason.VERIFICATION_TOKEN_INVALID)


def test_child_under_14_waits_for_the_guardian(svc: Harness) -> None:
    person = verified_person(name="홍아기", birth_date=CHILD_BIRTH)
    guardian = Guardian(name="홍부모")
    result = svc.sign_up_person(person, guardian=guardian, marketing_opt_in=True)

    account = result.account
    assert account.status is AccountStatus.PENDING_GUARDIAN_CONSENT
    assert not account.consents.marketing_opt_in  # a pending child receives no marketing
    assert result.session is None
    assert result.consent_request is not None
    assert result.consent_request.expires_at == svc.clock() + svc.policy.guardian_consent_window
    state = svc.uow.committed()
    assert not state.sessions and not state.refresh_tokens

    [created] = svc.uow.events("account.created")
    assert created["data"]["status"] == "pending_guardian_consent"
    [requested] = svc.uow.events("guardian_consent.requested")
    data = requested["data"]
    assert data["consent_request_id"] == result.consent_request.id
    assert data["account_id"] == account.id
    assert data["guardian_name"] == "홍부모"
    assert data["guardian_phone_number"] == "+82" + guardian.phone_number[1:]
    assert re.fullmatch(r"[0-9]{8}", data["consent_code"])
    [request] = state.consent_requests.values()
    assert request.status == "pending"
    assert request.request.code_hash == code_hash(
        result.consent_request.id, data["consent_code"], cipher=svc.cipher
    )


def test_child_without_guardian_is_refused_and_nothing_is_stored(svc: Harness) -> None:
    token = svc.verify(verified_person(birth_date=CHILD_BIRTH)).token
    svc.fails(svc.signup(token), Reason.GUARDIAN_INFO_REQUIRED)
    state = svc.uow.committed()
    assert not state.accounts and not state.outbox
    [verification] = state.verifications.values()
    assert verification.consumed_at is None


@pytest.mark.parametrize(
    ("name", "phone"), [("홍부모", ""), ("", "010-9876-5432"), ("  ", "010-9876-5432"), ("", " ")]
)
def test_a_guardian_without_a_name_or_a_phone_is_guardian_info_required(
    svc: Harness, name: str, phone: str
) -> None:
    """Contract §3: a child needs the guardian's name and phone number; a missing one is not
    a malformed one."""
    token = svc.verify(verified_person(birth_date=CHILD_BIRTH)).token
    svc.fails(svc.signup(token, guardian=Guardian(name, phone)), Reason.GUARDIAN_INFO_REQUIRED)
    assert not svc.uow.committed().accounts


def test_a_malformed_guardian_contact_is_a_validation_failure(svc: Harness) -> None:
    token = svc.verify(verified_person(birth_date=CHILD_BIRTH)).token
    svc.fails(
        svc.signup(token, guardian=Guardian("홍부모", "02-123-4567")), Reason.VALIDATION_FAILED
    )


def test_an_adult_may_leave_a_guardian_contact_half_empty(svc: Harness) -> None:
    token = svc.verify(verified_person()).token
    signed = svc.sign_up(token, guardian=Guardian("홍부모", ""))
    assert signed.account.status is AccountStatus.ACTIVE


def test_email_taken_ignores_case_and_leaves_the_token_usable(svc: Harness) -> None:
    svc.sign_up_person(verified_person(), email="kim@example.com")
    token = svc.verify(verified_person()).token
    svc.fails(svc.signup(token, email="KIM@example.com"), Reason.EMAIL_TAKEN)
    assert svc.sign_up(token).account.status is AccountStatus.ACTIVE


def test_identity_already_registered_tells_how_the_account_signs_in(svc: Harness) -> None:
    person = verified_person()
    svc.sign_up_person(person, email="hong@example.com")
    again = svc.verify(person)
    assert again.duplicate.exists
    error = svc.fails(svc.signup(again.token), Reason.IDENTITY_ALREADY_REGISTERED)
    assert error.metadata["sign_in_methods"] == "password"
    assert error.metadata["masked_email"] == "ho***@example.com"
    assert len(svc.uow.committed().accounts) == 1


def test_old_terms_are_refused_with_the_current_versions(svc: Harness) -> None:
    token = svc.verify(verified_person()).token
    error = svc.fails(svc.signup(token, terms_version="2000-01-01"), Reason.TERMS_VERSION_MISMATCH)
    assert error.metadata == {
        "terms_version": svc.policy.terms_version,
        "privacy_policy_version": svc.policy.privacy_policy_version,
    }


def test_given_values_must_match_the_verification(svc: Harness) -> None:
    person = verified_person(name="홍길동", birth_date=date(1990, 1, 15))
    token = svc.verify(person).token
    error = svc.fails(
        svc.signup(token, name="김철수", birth_date="1991-01-15"), Reason.VERIFICATION_MISMATCH
    )
    assert error.metadata == {"fields": "name,birth_date"}
    # Matching values are fine.
    result = svc.sign_up(token, name="홍길동", birth_date="1990-01-15")
    assert result.account.name == "홍길동"


def test_a_password_made_of_the_verified_name_is_refused(svc: Harness) -> None:
    # Without a name in the request, the verification's name is the person's own word.
    token = svc.verify(verified_person(name="Kim Minsu")).token
    error = svc.fails(svc.signup(token, password="minsukim1990"), Reason.VALIDATION_FAILED)
    assert [v.field for v in error.violations] == ["password"]
    error = svc.fails(
        svc.signup(token, password="minsukim1990", name="Kim Minsu"), Reason.VALIDATION_FAILED
    )
    assert [v.field for v in error.violations] == ["password"]
    assert svc.sign_up(token, password="quiet-harbor-lantern-47").account.name == "Kim Minsu"


def test_a_guessable_password_is_reported_with_the_other_wrong_fields(svc: Harness) -> None:
    token = svc.verify(verified_person()).token
    error = svc.fails(
        svc.signup(token, password="password1234", email="not-an-address"),
        Reason.VALIDATION_FAILED,
    )
    assert {v.field for v in error.violations} == {"email", "password"}
    # A short password is reported with the rest, and before the token is looked at.
    error = svc.fails(
        svc.signup("no-such-token", password="short", email="not-an-address"),
        Reason.VALIDATION_FAILED,
    )
    assert {v.field for v in error.violations} == {"email", "password"}
    assert [v.description for v in error.violations if v.field == "password"] == [
        "must be at least 8 characters"
    ]


def test_without_a_verification_token_identity_verification_is_required(svc: Harness) -> None:
    cmd = svc.signup(name="홍길동", phone_number="010-2345-6789", birth_date="1990-01-15")
    svc.fails(cmd, Reason.IDENTITY_VERIFICATION_REQUIRED)


def test_replay_with_the_same_key_and_body_returns_the_first_result(svc: Harness) -> None:
    token = svc.verify(verified_person()).token
    cmd = svc.signup(token, email=new_email(), idempotency_key="signup-1")
    first = svc.handle(cmd)
    svc.clock.advance(seconds=5)
    second = svc.handle(cmd)

    assert second.account.id == first.account.id
    assert second.session == first.session
    assert len(svc.uow.committed().accounts) == 1
    assert len(svc.uow.events("account.created")) == 1


def test_replay_after_the_session_moved_on_returns_no_tokens(svc: Harness) -> None:
    cmd = svc.signup(svc.verify(verified_person()).token, idempotency_key="signup-2")
    first = svc.handle(cmd)
    assert first.session is not None
    svc.handle(RefreshSession(refresh_token=first.session.refresh_token))
    replay = svc.handle(cmd)
    assert replay.account.id == first.account.id
    assert replay.session is None


def test_the_same_key_with_another_body_or_password_is_refused(svc: Harness) -> None:
    cmd = svc.signup(svc.verify(verified_person()).token, idempotency_key="signup-3")
    svc.handle(cmd)
    other_email = svc.signup(cmd.verification_token, idempotency_key="signup-3")
    svc.fails(other_email, Reason.IDEMPOTENCY_KEY_REUSED)
    wrong_password = svc.signup(
        cmd.verification_token, email=cmd.email, password="x" + PASSWORD, idempotency_key="signup-3"
    )
    svc.fails(wrong_password, Reason.IDEMPOTENCY_KEY_REUSED)


def test_a_key_expires_with_its_record(svc: Harness) -> None:
    cmd = svc.signup(svc.verify(verified_person()).token, idempotency_key="signup-4")
    svc.handle(cmd)
    svc.clock.advance(timedelta(hours=25))
    # The stored result is gone; the request runs again and meets its own account.
    svc.fails(cmd, Reason.VERIFICATION_TOKEN_INVALID)


class MeetingHasher(FakePasswordHasher):
    """Holds each `hash` until `parties` callers are hashing: their SignUps then write in turn,
    each having checked for conflicts before any of them committed."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.meeting = threading.Barrier(parties, timeout=10)

    def hash(self, password: str) -> str:
        self.meeting.wait()
        return super().hash(password)


def run_together(svc: Harness, *commands: SignUp) -> list[SignUpResult | DomainError]:
    results: list[SignUpResult | DomainError | None] = [None] * len(commands)

    def run(index: int) -> None:
        try:
            results[index] = svc.handle(commands[index])
        except DomainError as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(commands))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def test_concurrent_replays_of_one_key_both_get_the_winner_result() -> None:
    svc = Harness.build(hasher=MeetingHasher(2))
    cmd = svc.signup(svc.verify(verified_person()).token, idempotency_key="race-1")
    first, second = run_together(svc, cmd, cmd)
    assert isinstance(first, SignUpResult) and isinstance(second, SignUpResult)
    assert first.account.id == second.account.id
    assert first.session == second.session
    assert len(svc.uow.committed().accounts) == 1


def test_concurrent_signups_with_one_email_leave_the_loser_untouched() -> None:
    svc = Harness.build(hasher=MeetingHasher(2))
    tokens = [svc.verify(verified_person()).token for _ in range(2)]
    outcomes = run_together(svc, *(svc.signup(t, email="same@example.com") for t in tokens))
    [winner] = [o for o in outcomes if isinstance(o, SignUpResult)]
    [loser] = [o for o in outcomes if isinstance(o, DomainError)]
    assert loser.reason is Reason.EMAIL_TAKEN
    state = svc.uow.committed()
    assert list(state.accounts) == [winner.account.id]
    # The loser's transaction rolled back: its verification token is still unused.
    assert sorted(row.consumed_at is None for row in state.verifications.values()) == [False, True]
