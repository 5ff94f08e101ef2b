"""Guardian consent against fakes: GetConsentRequest, Approve (and each refusal), Reject, Resend,
and the approved guardian's rights over the ward (ListWards, GetWard, UpdateWard,
ExportWardData, WithdrawWard). The consent code is read from the outbox event, as the sender
reads it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from idservice.domain.accounts import AccountStatus
from idservice.domain.errors import Reason
from idservice.domain.guardian_consent import (
    MAX_NOTIFICATIONS,
    RESEND_INTERVAL,
    ConsentRequestStatus,
)
from idservice.domain.identity import VerifiedPerson
from idservice.domain.instants import utc_text
from idservice.service_layer.guardian_consent import (
    CODE_PAUSE,
    MAX_CODE_ATTEMPTS,
    METHOD_MOBILE_VERIFICATION,
    ApproveConsentRequest,
    ConsentRequestView,
    GetConsentRequest,
    RejectConsentRequest,
    ResendConsentNotification,
    code_hash,
)
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import TokenPurpose
from idservice.service_layer.privacy import UpdateConsents
from idservice.service_layer.profile import UpdateProfile
from idservice.service_layer.rate_limits import RateLimits
from idservice.service_layer.retention import CONSENT_OUTCOME_RETENTION, Purge
from idservice.service_layer.sessions import RefreshSession
from idservice.service_layer.use_cases import Command
from idservice.service_layer.wards import (
    ExportWardData,
    GetWard,
    ListWards,
    UpdateWard,
    WithdrawWard,
)
from tests.fakes.providers import new_phone_number, verified_person
from tests.service_layer.harness import PASSWORD, Guardian, Harness, new_email

CHILD_BIRTH = date(2015, 4, 1)  # 10 on the fake clock's day (2025-06-02)
GUARDIAN_BIRTH = date(1985, 3, 3)
# The child's 14th birthday, at midnight in Seoul.
CHILD_TURNS_14 = datetime(2029, 3, 31, 15, 0, tzinfo=UTC)

# The default limit of consent codes per end-user address; blocked until its window ends.
CLIENT_CODE_LIMIT = RateLimits().consent_codes.limit
CLIENT_CODE_BLOCK = RateLimits().consent_codes.window


@dataclass(frozen=True)
class Child:
    """A child's pending signup and the guardian who must consent."""

    account_id: str
    email: str
    person: VerifiedPerson
    request_id: str
    expires_at: datetime
    guardian: Guardian
    # The guardian as the identity provider verifies them: an adult at the contact given.
    guardian_person: VerifiedPerson


def guardian_person_of(guardian: Guardian, *, seed: str | None = None) -> VerifiedPerson:
    return verified_person(
        name=guardian.name, birth_date=GUARDIAN_BIRTH, phone_number=guardian.phone_number, seed=seed
    )


def child_signs_up(
    svc: Harness,
    *,
    name: str = "홍아기",
    guardian: Guardian | None = None,
    guardian_person: VerifiedPerson | None = None,
) -> Child:
    guardian = guardian or Guardian(name="홍부모")
    person = verified_person(name=name, birth_date=CHILD_BIRTH)
    email = new_email()
    result = svc.sign_up_person(person, guardian=guardian, email=email)
    assert result.consent_request is not None
    return Child(
        account_id=result.account.id,
        email=email,
        person=person,
        request_id=result.consent_request.id,
        expires_at=result.consent_request.expires_at,
        guardian=guardian,
        guardian_person=guardian_person or guardian_person_of(guardian),
    )


def code_of(svc: Harness, child: Child) -> str:
    """The code of the request's latest committed message."""
    codes = [
        event["data"]["consent_code"]
        for event in svc.uow.events("guardian_consent.requested")
        if event["data"]["consent_request_id"] == child.request_id
    ]
    assert codes, "no consent message is queued for the request"
    code: str = codes[-1]
    return code


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 100_000_000:08d}"


def approval(
    svc: Harness,
    child: Child,
    *,
    code: str | None = None,
    token: str = "",
    client_address: str = "",
) -> ApproveConsentRequest:
    """ApproveConsentRequest with the right code and a fresh verification of the guardian
    unless given."""
    return ApproveConsentRequest(
        id=child.request_id,
        consent_code=code_of(svc, child) if code is None else code,
        guardian_verification_token=token or svc.verify(child.guardian_person).token,
        client_address=client_address,
    )


def approve(svc: Harness, child: Child) -> None:
    assert svc.handle(approval(svc, child)) == child.account_id


def view(svc: Harness, request_id: str) -> ConsentRequestView:
    return svc.handle(GetConsentRequest(id=request_id))


def status_of(svc: Harness, child: Child) -> AccountStatus | None:
    row = svc.uow.committed().accounts.get(child.account_id)
    return None if row is None else row.account.status


def assert_unused(svc: Harness, token: str) -> None:
    """The verification behind `token` is stored and not used up."""
    token_hash = svc.cipher.token_hash(token, purpose=TokenPurpose.VERIFICATION_TOKEN)
    [row] = [v for v in svc.uow.committed().verifications.values() if v.token_hash == token_hash]
    assert row.consumed_at is None and row.person is not None


def assert_still_pending(svc: Harness, child: Child) -> None:
    state = svc.uow.committed()
    assert state.accounts[child.account_id].account.status is AccountStatus.PENDING_GUARDIAN_CONSENT
    assert state.consent_requests[child.request_id].status == "pending"
    assert not svc.uow.events("guardian_consent.approved")
    assert not svc.uow.events("account.activated")


# -- GetConsentRequest -----------------------------------------------------------------------
def test_a_pending_request_shows_its_status_window_and_the_masked_child(svc: Harness) -> None:
    child = child_signs_up(svc, name="홍아기")
    assert view(svc, child.request_id) == ConsentRequestView(
        child.request_id, ConsentRequestStatus.PENDING, child.expires_at, "홍*기"
    )


def test_a_request_past_its_window_shows_expired_before_and_after_the_purge(
    svc: Harness,
) -> None:
    child = child_signs_up(svc)
    svc.clock.set(child.expires_at)
    assert view(svc, child.request_id).status is ConsentRequestStatus.EXPIRED
    assert view(svc, child.request_id).masked_child_name == "홍*기"
    counts = svc.handle(Purge())
    assert counts["unconfirmed child accounts destroyed"] == 1
    assert svc.uow.deletions_made_final == 1
    # Destroyed: only the outcome answers, with nothing about the child.
    assert view(svc, child.request_id) == ConsentRequestView(
        child.request_id, ConsentRequestStatus.EXPIRED, child.expires_at, ""
    )
    assert status_of(svc, child) is None
    # Acting on it answers what GetConsentRequest reports.
    for act in acts_on(child.request_id):
        svc.fails(act, Reason.CONSENT_REQUEST_EXPIRED)
    svc.clock.advance(CONSENT_OUTCOME_RETENTION + timedelta(seconds=1))
    assert svc.handle(Purge())["consent outcomes deleted"] == 1
    svc.fails(GetConsentRequest(id=child.request_id), Reason.CONSENT_REQUEST_NOT_FOUND)
    for act in acts_on(child.request_id):
        svc.fails(act, Reason.CONSENT_REQUEST_NOT_FOUND)


def test_a_child_whose_window_ended_may_sign_up_again_before_the_purge(svc: Harness) -> None:
    """korea-rules Guardian 4 destroys the unconfirmed account; until the purge runs, a new
    sign-up of the same child or with the same email destroys it first, as the purge would."""
    child = child_signs_up(svc)
    # Within the window the child's pending account stands.
    assert svc.verify(child.person).duplicate.exists
    svc.fails(
        svc.signup(svc.verify(child.person).token, guardian=child.guardian),
        Reason.IDENTITY_ALREADY_REGISTERED,
    )
    svc.fails(
        svc.signup(svc.verify(verified_person()).token, email=child.email), Reason.EMAIL_TAKEN
    )

    svc.clock.set(child.expires_at)
    assert not svc.verify(child.person).duplicate.exists
    again = svc.sign_up_person(child.person, guardian=child.guardian, email=child.email)
    assert again.account.status is AccountStatus.PENDING_GUARDIAN_CONSENT
    assert again.account.id != child.account_id
    assert status_of(svc, child) is None
    # The old request answers EXPIRED, its message (the guardian's phone and code) is gone, and
    # its end is recorded as the purge records it.
    assert view(svc, child.request_id) == ConsentRequestView(
        child.request_id, ConsentRequestStatus.EXPIRED, child.expires_at, ""
    )
    requested = svc.uow.events("guardian_consent.requested")
    assert child.request_id not in {e["data"]["consent_request_id"] for e in requested}
    [expired] = svc.uow.events("guardian_consent.expired")
    assert expired["data"]["consent_request_id"] == child.request_id
    assert expired["data"]["account_id"] == child.account_id
    # Nothing is left for the purge to do.
    assert svc.handle(Purge())["unconfirmed child accounts destroyed"] == 0


def test_an_adult_email_is_free_once_the_child_holding_it_expired(svc: Harness) -> None:
    child = child_signs_up(svc)
    svc.clock.set(child.expires_at)
    adult = svc.sign_up_person(verified_person(), email=child.email)
    assert adult.account.status is AccountStatus.ACTIVE
    assert status_of(svc, child) is None
    assert view(svc, child.request_id).status is ConsentRequestStatus.EXPIRED


def acts_on(request_id: str) -> list[Command[Any]]:
    """Each call that acts on a consent request (with a well-formed code and token)."""
    return [
        ApproveConsentRequest(
            id=request_id, consent_code="12345678", guardian_verification_token="t"
        ),
        RejectConsentRequest(id=request_id, consent_code="12345678"),
        ResendConsentNotification(id=request_id),
    ]


@pytest.mark.parametrize("request_id", ["no-such-request", "", "x" * 65])
def test_an_unknown_request_is_not_found(svc: Harness, request_id: str) -> None:
    child_signs_up(svc)
    svc.fails(GetConsentRequest(id=request_id), Reason.CONSENT_REQUEST_NOT_FOUND)
    svc.fails(ResendConsentNotification(id=request_id), Reason.CONSENT_REQUEST_NOT_FOUND)
    svc.fails(
        RejectConsentRequest(id=request_id, consent_code="12345678"),
        Reason.CONSENT_REQUEST_NOT_FOUND,
    )
    svc.fails(
        ApproveConsentRequest(
            id=request_id, consent_code="12345678", guardian_verification_token="t"
        ),
        Reason.CONSENT_REQUEST_NOT_FOUND,
    )


# -- ApproveConsentRequest -------------------------------------------------------------------
def test_the_guardian_approves_and_the_child_may_sign_in(svc: Harness) -> None:
    child = child_signs_up(svc)
    svc.fails(
        PasswordLogin(email=child.email, password=PASSWORD),
        Reason.ACCOUNT_PENDING_GUARDIAN_CONSENT,
    )
    guardian_token = svc.verify(child.guardian_person).token
    assert svc.handle(approval(svc, child, token=guardian_token)) == child.account_id

    state = svc.uow.committed()
    assert state.accounts[child.account_id].account.status is AccountStatus.ACTIVE
    row = state.consent_requests[child.request_id]
    assert (row.status, row.decided_at, row.method) == (
        "approved",
        svc.clock(),
        METHOD_MOBILE_VERIFICATION,
    )
    # The verified guardian is kept (their CI is the authority over the ward).
    assert row.request.guardian_name == child.guardian_person.name
    assert row.request.guardian_phone == "+82" + child.guardian.phone_number[1:]
    assert row.guardian_ci == child.guardian_person.ci
    # The guardian's verification is used up.
    svc.fails(
        ListWards(guardian_verification_token=guardian_token), Reason.VERIFICATION_TOKEN_INVALID
    )
    [approved] = svc.uow.events("guardian_consent.approved")
    assert approved["data"] == {
        "consent_request_id": child.request_id,
        "account_id": child.account_id,
    }
    [activated] = svc.uow.events("account.activated")
    assert activated["data"]["account_id"] == child.account_id
    # The message with the guardian's name, phone and code is not kept once decided.
    assert svc.uow.events("guardian_consent.requested") == []
    assert view(svc, child.request_id).status is ConsentRequestStatus.APPROVED
    assert svc.login(child.email).account_id == child.account_id


def test_a_child_under_14_may_opt_out_but_not_in_until_14(svc: Harness) -> None:
    """korea-rules Age 6: the guardian's consent comes before any consent-based processing, so
    the child alone cannot opt into marketing or third-party provision (SignUp sets both off)."""
    child = child_signs_up(svc)
    approve(svc, child)
    token = svc.login(child.email).access_token
    error = svc.fails(
        UpdateConsents(access_token=token, marketing_opt_in=True, third_party_opt_in=True),
        Reason.VALIDATION_FAILED,
    )
    assert [v.field for v in error.violations] == [
        "marketing_opt_in",
        "third_party_provision_opt_in",
    ]
    svc.fails(UpdateConsents(access_token=token, marketing_opt_in=True), Reason.VALIDATION_FAILED)
    assert svc.uow.events("consents.updated") == []
    # Opting out and suspending processing are the child's own rights (korea-rules Rights 1).
    consents = svc.handle(
        UpdateConsents(
            access_token=token,
            marketing_opt_in=False,
            third_party_opt_in=False,
            processing_suspended=True,
        )
    )
    assert (consents.marketing_opt_in, consents.third_party_opt_in) == (False, False)
    assert consents.processing_suspended
    # From 14 the person decides alone.
    svc.clock.set(CHILD_TURNS_14 - timedelta(seconds=1))
    svc.fails(
        UpdateConsents(access_token=svc.login(child.email).access_token, marketing_opt_in=True),
        Reason.VALIDATION_FAILED,
    )
    svc.clock.set(CHILD_TURNS_14)
    token = svc.login(child.email).access_token
    assert svc.handle(UpdateConsents(access_token=token, marketing_opt_in=True)).marketing_opt_in


def test_an_unverified_child_cannot_type_itself_out_of_the_guardians_care() -> None:
    """Without required verification a child signs up unverified; once its guardian consented,
    moving its birth date past 14 would end the guardian's rights and change its age band."""
    svc = Harness.build(Policy(require_identity_verification=False))
    guardian = Guardian(name="홍부모")
    email = new_email()
    result = svc.handle(
        svc.signup(
            email=email,
            name="홍아기",
            phone_number=new_phone_number(),
            birth_date=CHILD_BIRTH.isoformat(),
            guardian=guardian,
        )
    )
    assert result.consent_request is not None and not result.account.identity_verified
    child = Child(
        account_id=result.account.id,
        email=email,
        person=verified_person(name="홍아기", birth_date=CHILD_BIRTH),
        request_id=result.consent_request.id,
        expires_at=result.consent_request.expires_at,
        guardian=guardian,
        guardian_person=guardian_person_of(guardian),
    )
    approve(svc, child)
    token = svc.login(email).access_token
    svc.fails(
        UpdateProfile(access_token=token, birth_date="1990-01-01"),
        Reason.IDENTITY_VERIFICATION_REQUIRED,
    )
    # The rest of the profile is still the child's to correct.
    assert svc.handle(UpdateProfile(access_token=token, name="홍아름")).birth_date == CHILD_BIRTH
    # From 14 the person corrects an unverified birth date alone, as any unverified account.
    svc.clock.set(CHILD_TURNS_14)
    token = svc.login(email).access_token
    updated = svc.handle(UpdateProfile(access_token=token, birth_date="2015-03-01"))
    assert updated.birth_date == date(2015, 3, 1)


def test_a_decided_request_is_closed(svc: Harness) -> None:
    child = child_signs_up(svc)
    code = code_of(svc, child)
    approve(svc, child)
    svc.fails(approval(svc, child, code=code), Reason.CONSENT_REQUEST_CLOSED)
    svc.fails(
        RejectConsentRequest(id=child.request_id, consent_code=code), Reason.CONSENT_REQUEST_CLOSED
    )
    svc.fails(ResendConsentNotification(id=child.request_id), Reason.CONSENT_REQUEST_CLOSED)
    assert status_of(svc, child) is AccountStatus.ACTIVE


def test_an_expired_request_cannot_be_decided(svc: Harness) -> None:
    child = child_signs_up(svc)
    code = code_of(svc, child)
    token = svc.verify(child.guardian_person).token
    svc.clock.set(child.expires_at)
    svc.fails(approval(svc, child, code=code, token=token), Reason.CONSENT_REQUEST_EXPIRED)
    svc.fails(
        RejectConsentRequest(id=child.request_id, consent_code=code),
        Reason.CONSENT_REQUEST_EXPIRED,
    )
    svc.fails(ResendConsentNotification(id=child.request_id), Reason.CONSENT_REQUEST_EXPIRED)
    assert_still_pending(svc, child)


@pytest.mark.parametrize("given", ["wrong", "", "１２３４５６７８", "12345678901234567890"])
def test_a_wrong_code_is_refused_and_nothing_changes(svc: Harness, given: str) -> None:
    child = child_signs_up(svc)
    code = code_of(svc, child)
    token = svc.verify(child.guardian_person).token
    attempt = wrong_code(code) if given == "wrong" else given
    svc.fails(approval(svc, child, code=attempt, token=token), Reason.CONSENT_CODE_INVALID)
    assert_still_pending(svc, child)
    assert_unused(svc, token)
    # The guardian's verification is still usable, with the right code.
    assert svc.handle(approval(svc, child, code=code, token=token)) == child.account_id


def test_wrong_codes_pause_the_request_then_the_right_code_works(svc: Harness) -> None:
    child = child_signs_up(svc)
    code = code_of(svc, child)
    for _ in range(MAX_CODE_ATTEMPTS):
        svc.fails(approval(svc, child, code=wrong_code(code)), Reason.CONSENT_CODE_INVALID)
    # Even the right code waits for the pause to end (rejecting too).
    error = svc.fails(approval(svc, child, code=code), Reason.RATE_LIMITED)
    assert error.retry_after_seconds == CODE_PAUSE.total_seconds()
    svc.clock.advance(minutes=5)
    error = svc.fails(
        RejectConsentRequest(id=child.request_id, consent_code=code), Reason.RATE_LIMITED
    )
    assert error.retry_after_seconds == (CODE_PAUSE - timedelta(minutes=5)).total_seconds()
    assert_still_pending(svc, child)
    svc.clock.advance(CODE_PAUSE - timedelta(minutes=5))
    approve(svc, child)


def test_a_right_code_refused_later_on_restores_the_full_bound(svc: Harness) -> None:
    child = child_signs_up(svc)
    code = code_of(svc, child)
    for _ in range(MAX_CODE_ATTEMPTS - 1):
        svc.fails(approval(svc, child, code=wrong_code(code)), Reason.CONSENT_CODE_INVALID)
    # The right code with a verification of someone else: refused, but the code count clears.
    impostor = verified_person(birth_date=GUARDIAN_BIRTH)
    svc.fails(
        approval(svc, child, code=code, token=svc.verify(impostor).token),
        Reason.GUARDIAN_MISMATCH,
    )
    for _ in range(MAX_CODE_ATTEMPTS - 1):
        svc.fails(approval(svc, child, code=wrong_code(code)), Reason.CONSENT_CODE_INVALID)
    approve(svc, child)


def test_a_caller_trying_codes_on_many_requests_is_blocked(svc: Harness) -> None:
    children = [child_signs_up(svc) for _ in range(CLIENT_CODE_LIMIT // (MAX_CODE_ATTEMPTS - 1))]
    for child in children:
        for _ in range(MAX_CODE_ATTEMPTS - 1):  # never enough to pause one request
            svc.fails(
                approval(svc, child, code=wrong_code(code_of(svc, child)), client_address="ip-1"),
                Reason.CONSENT_CODE_INVALID,
            )
    fresh = child_signs_up(svc)
    error = svc.fails(approval(svc, fresh, client_address="ip-1"), Reason.RATE_LIMITED)
    assert error.retry_after_seconds == CLIENT_CODE_BLOCK.total_seconds()
    # The counters keep a keyed hash of the address, never the address.
    assert all("ip-1" not in key for _, key in svc.uow.committed().attempt_counters)
    # The block is the caller's: the request counted nothing, another caller goes on.
    assert svc.uow.committed().consent_requests[fresh.request_id].failed_code_attempts == 0
    svc.fails(
        RejectConsentRequest(
            id=fresh.request_id, consent_code=code_of(svc, fresh), client_address="ip-1"
        ),
        Reason.RATE_LIMITED,
    )
    assert svc.handle(approval(svc, fresh, client_address="ip-2")) == fresh.account_id
    svc.clock.advance(CLIENT_CODE_BLOCK)
    assert svc.handle(approval(svc, children[0], client_address="ip-1")) == children[0].account_id


def test_without_a_caller_key_only_the_request_counts(svc: Harness) -> None:
    children = [child_signs_up(svc) for _ in range(CLIENT_CODE_LIMIT // (MAX_CODE_ATTEMPTS - 1))]
    for child in children:
        for _ in range(MAX_CODE_ATTEMPTS - 1):
            svc.fails(
                approval(svc, child, code=wrong_code(code_of(svc, child))),
                Reason.CONSENT_CODE_INVALID,
            )
    assert not svc.uow.committed().attempt_counters
    approve(svc, child_signs_up(svc))


def test_an_unusable_guardian_verification_is_refused(svc: Harness) -> None:
    child = child_signs_up(svc)
    svc.fails(approval(svc, child, token="forged"), Reason.VERIFICATION_TOKEN_INVALID)
    used = svc.verify(child.guardian_person).token
    svc.clock.advance(minutes=30)  # verification tokens live 30 minutes
    svc.fails(approval(svc, child, token=used), Reason.VERIFICATION_TOKEN_INVALID)
    assert_still_pending(svc, child)
    approve(svc, child)


def test_the_guardian_must_be_an_adult(svc: Harness) -> None:
    child = child_signs_up(svc)
    teenager = verified_person(
        name=child.guardian.name,
        birth_date=date(2008, 6, 3),  # 16
        phone_number=child.guardian.phone_number,
    )
    token = svc.verify(teenager).token
    svc.fails(approval(svc, child, token=token), Reason.GUARDIAN_NOT_ADULT)
    assert_still_pending(svc, child)
    assert_unused(svc, token)


@pytest.mark.parametrize("matched_by", ["ci", "di"])
def test_the_guardian_must_be_another_person(svc: Harness, matched_by: str) -> None:
    """The child's own CI (as if the child verified as an adult at the guardian's phone), or
    the child's DI with another CI: one person one account matches a CI or a DI, and so does
    "not the child"."""
    child = child_signs_up(svc)
    himself = dataclasses.replace(
        child.person,
        birth_date=GUARDIAN_BIRTH,
        phone_number=child.guardian.phone_number,
        ci=child.person.ci if matched_by == "ci" else verified_person().ci,
    )
    token = svc.verify(himself).token
    svc.fails(approval(svc, child, token=token), Reason.GUARDIAN_SAME_PERSON)
    assert_still_pending(svc, child)
    assert_unused(svc, token)


def test_the_guardian_must_be_reachable_at_the_contact_given(svc: Harness) -> None:
    child = child_signs_up(svc)
    elsewhere = dataclasses.replace(child.guardian_person, phone_number=new_phone_number())
    token = svc.verify(elsewhere).token
    svc.fails(approval(svc, child, token=token), Reason.GUARDIAN_MISMATCH)
    assert_still_pending(svc, child)
    assert_unused(svc, token)


def test_a_guardian_without_a_ci_cannot_consent(svc: Harness) -> None:
    child = child_signs_up(svc)
    no_ci = verified_person(
        name=child.guardian.name,
        birth_date=GUARDIAN_BIRTH,
        phone_number=child.guardian.phone_number,
        ci=False,
    )
    token = svc.verify(no_ci).token
    svc.fails(approval(svc, child, token=token), Reason.IDENTITY_VERIFICATION_REQUIRED)
    assert_still_pending(svc, child)
    assert_unused(svc, token)


# -- RejectConsentRequest --------------------------------------------------------------------
def test_the_guardian_rejects_and_the_child_is_destroyed(svc: Harness) -> None:
    child = child_signs_up(svc)
    code = code_of(svc, child)
    status = svc.handle(RejectConsentRequest(id=child.request_id, consent_code=code))
    assert status is ConsentRequestStatus.REJECTED

    state = svc.uow.committed()
    assert child.account_id not in state.accounts
    assert child.request_id not in state.consent_requests  # the guardian's contact with it
    assert svc.uow.events("guardian_consent.requested") == []
    [rejected] = svc.uow.events("guardian_consent.rejected")
    assert rejected["data"] == {
        "consent_request_id": child.request_id,
        "account_id": child.account_id,
    }
    assert view(svc, child.request_id) == ConsentRequestView(
        child.request_id, ConsentRequestStatus.REJECTED, child.expires_at, ""
    )
    # Acting on it again answers what GetConsentRequest reports: decided.
    svc.fails(
        RejectConsentRequest(id=child.request_id, consent_code=code),
        Reason.CONSENT_REQUEST_CLOSED,
    )
    for act in acts_on(child.request_id):
        svc.fails(act, Reason.CONSENT_REQUEST_CLOSED)
    # Nothing holds the child back: they may sign up again at once.
    again = svc.sign_up_person(child.person, guardian=child.guardian)
    assert again.account.status is AccountStatus.PENDING_GUARDIAN_CONSENT


def test_a_rejection_needs_the_right_code(svc: Harness) -> None:
    child = child_signs_up(svc)
    svc.fails(
        RejectConsentRequest(id=child.request_id, consent_code=wrong_code(code_of(svc, child))),
        Reason.CONSENT_CODE_INVALID,
    )
    assert_still_pending(svc, child)
    assert not svc.uow.events("guardian_consent.rejected")


# -- ResendConsentNotification ---------------------------------------------------------------
def test_a_resend_sends_a_fresh_code_and_the_old_one_stops_working(svc: Harness) -> None:
    child = child_signs_up(svc)
    old = code_of(svc, child)
    too_soon = svc.fails(ResendConsentNotification(id=child.request_id), Reason.RATE_LIMITED)
    assert "resend" in too_soon.message and "code" not in too_soon.message
    assert too_soon.retry_after_seconds == RESEND_INTERVAL.total_seconds()
    svc.clock.advance(RESEND_INTERVAL)
    expires_at = svc.handle(ResendConsentNotification(id=child.request_id))
    assert expires_at == child.expires_at

    # Only the new message is queued (the old one held the old code).
    [message] = svc.uow.events("guardian_consent.requested")
    new = message["data"]["consent_code"]
    assert message["data"]["guardian_name"] == child.guardian.name
    assert message["data"]["expires_at"] == child.expires_at.isoformat().replace("+00:00", "Z")
    row = svc.uow.committed().consent_requests[child.request_id]
    assert row.request.code_hash == code_hash(child.request_id, new, cipher=svc.cipher)
    assert (row.notifications_sent, row.last_notified_at) == (2, svc.clock())
    if new != old:  # (a fresh draw repeats the old code once in 10^8)
        svc.fails(approval(svc, child, code=old), Reason.CONSENT_CODE_INVALID)
    approve(svc, child)


def test_resends_wait_a_minute_between_them(svc: Harness) -> None:
    child = child_signs_up(svc)
    svc.clock.advance(seconds=20)
    error = svc.fails(ResendConsentNotification(id=child.request_id), Reason.RATE_LIMITED)
    assert error.retry_after_seconds == 40.0
    svc.clock.advance(seconds=40)
    svc.handle(ResendConsentNotification(id=child.request_id))
    error = svc.fails(ResendConsentNotification(id=child.request_id), Reason.RATE_LIMITED)
    assert error.retry_after_seconds == RESEND_INTERVAL.total_seconds()


def test_resends_are_bounded_for_the_life_of_the_request(svc: Harness) -> None:
    child = child_signs_up(svc)
    for _ in range(MAX_NOTIFICATIONS - 1):
        svc.clock.advance(RESEND_INTERVAL)
        svc.handle(ResendConsentNotification(id=child.request_id))
    svc.clock.advance(hours=1)
    error = svc.fails(ResendConsentNotification(id=child.request_id), Reason.RATE_LIMITED)
    assert error.retry_after_seconds == (child.expires_at - svc.clock()).total_seconds()
    assert svc.uow.committed().consent_requests[child.request_id].notifications_sent == (
        MAX_NOTIFICATIONS
    )
    assert len(svc.uow.events("guardian_consent.requested")) == 1
    approve(svc, child)  # the last code still works


# -- the guardian's rights over the ward -----------------------------------------------------
WARD_NAMES = ("김하나", "김두리", "김세찌")


def approved_family(svc: Harness, wards: int = 1) -> tuple[VerifiedPerson, list[Child]]:
    """A guardian and `wards` children they approved (in that order)."""
    guardian = Guardian(name="김보호")
    person = guardian_person_of(guardian)
    children = [
        child_signs_up(svc, name=name, guardian=guardian, guardian_person=person)
        for name in WARD_NAMES[:wards]
    ]
    for child in children:
        svc.clock.advance(seconds=1)
        approve(svc, child)
    return person, children


def test_the_guardian_lists_the_wards_they_approved(svc: Harness) -> None:
    guardian, (first, second) = approved_family(svc, wards=2)
    other_guardian, (others,) = approved_family(svc)
    pending = child_signs_up(svc, guardian_person=guardian)  # not approved
    token = svc.verify(guardian).token
    wards = svc.handle(ListWards(guardian_verification_token=token))
    assert [w.id for w in wards] == [first.account_id, second.account_id]
    assert all(w.status is AccountStatus.ACTIVE for w in wards)
    # The token is looked at, not used: it serves every call for its 30 minutes.
    again = svc.handle(ListWards(guardian_verification_token=token))
    assert [w.id for w in again] == [first.account_id, second.account_id]
    other = svc.handle(ListWards(guardian_verification_token=svc.verify(other_guardian).token))
    assert [w.id for w in other] == [others.account_id]
    stranger = svc.verify(verified_person(birth_date=GUARDIAN_BIRTH)).token
    assert svc.handle(ListWards(guardian_verification_token=stranger)) == []
    assert pending.account_id not in {w.id for w in wards}


def test_a_guardian_call_needs_a_usable_verification_with_a_ci(svc: Harness) -> None:
    guardian, (child,) = approved_family(svc)
    svc.fails(ListWards(guardian_verification_token="forged"), Reason.VERIFICATION_TOKEN_INVALID)
    no_ci = dataclasses.replace(guardian, ci=None)
    token = svc.verify(no_ci).token
    svc.fails(ListWards(guardian_verification_token=token), Reason.NOT_GUARDIAN)
    svc.fails(
        GetWard(guardian_verification_token=token, ward_account_id=child.account_id),
        Reason.NOT_GUARDIAN,
    )


def test_the_guardian_reads_the_ward_and_no_one_else(svc: Harness) -> None:
    guardian, (child,) = approved_family(svc)
    _, (someone_elses,) = approved_family(svc)
    pending = child_signs_up(svc)
    token = svc.verify(guardian).token
    ward = svc.handle(GetWard(guardian_verification_token=token, ward_account_id=child.account_id))
    assert (ward.id, ward.name, ward.status) == (child.account_id, "김하나", AccountStatus.ACTIVE)
    for account_id in (someone_elses.account_id, pending.account_id, "no-such-id", "", "x" * 65):
        svc.fails(
            GetWard(guardian_verification_token=token, ward_account_id=account_id),
            Reason.NOT_GUARDIAN,
        )


def test_the_guardians_rights_end_when_the_ward_turns_14(svc: Harness) -> None:
    guardian, (child,) = approved_family(svc)
    svc.clock.set(CHILD_TURNS_14 - timedelta(seconds=1))
    token = svc.verify(guardian).token
    assert len(svc.handle(ListWards(guardian_verification_token=token))) == 1
    svc.clock.set(CHILD_TURNS_14)
    assert svc.handle(ListWards(guardian_verification_token=token)) == []
    for cmd in (
        GetWard(guardian_verification_token=token, ward_account_id=child.account_id),
        UpdateWard(
            guardian_verification_token=token, ward_account_id=child.account_id, name="김어른"
        ),
        ExportWardData(guardian_verification_token=token, ward_account_id=child.account_id),
        WithdrawWard(guardian_verification_token=token, ward_account_id=child.account_id),
    ):
        svc.fails(cmd, Reason.NOT_GUARDIAN)
    assert status_of(svc, child) is AccountStatus.ACTIVE


def test_the_guardian_corrects_the_wards_name_and_phone(svc: Harness) -> None:
    guardian, (child,) = approved_family(svc)
    token = svc.verify(guardian).token
    phone = new_phone_number()
    updated = svc.handle(
        UpdateWard(
            guardian_verification_token=token,
            ward_account_id=child.account_id,
            name="김바뀜",
            phone_number=phone,
        )
    )
    assert (updated.name, updated.phone_number) == ("김바뀜", "+82" + phone[1:])
    stored = svc.uow.committed().accounts[child.account_id].account
    assert (stored.name, stored.phone_number) == ("김바뀜", "+82" + phone[1:])
    # Only the given fields change.
    svc.handle(
        UpdateWard(guardian_verification_token=token, ward_account_id=child.account_id, name="김셋")
    )
    stored = svc.uow.committed().accounts[child.account_id].account
    assert (stored.name, stored.phone_number) == ("김셋", "+82" + phone[1:])


def test_an_invalid_correction_changes_nothing(svc: Harness) -> None:
    guardian, (child,) = approved_family(svc)
    token = svc.verify(guardian).token
    error = svc.fails(
        UpdateWard(
            guardian_verification_token=token,
            ward_account_id=child.account_id,
            name="",
            phone_number="12",
        ),
        Reason.VALIDATION_FAILED,
    )
    assert {v.field for v in error.violations} == {"name", "phone_number"}
    stored = svc.uow.committed().accounts[child.account_id].account
    assert stored.name == "김하나"
    _, (someone_elses,) = approved_family(svc)
    svc.fails(
        UpdateWard(
            guardian_verification_token=token,
            ward_account_id=someone_elses.account_id,
            name="김남의",
        ),
        Reason.NOT_GUARDIAN,
    )
    assert svc.uow.committed().accounts[someone_elses.account_id].account.name == "김하나"


def test_the_guardian_exports_the_wards_data(svc: Harness) -> None:
    guardian, (child,) = approved_family(svc)
    decided_at = svc.clock()
    svc.clock.advance(minutes=1)
    first = svc.login(child.email)
    svc.clock.advance(minutes=1)
    second = svc.login(child.email)
    token = svc.verify(guardian).token
    document = json.loads(
        svc.handle(
            ExportWardData(guardian_verification_token=token, ward_account_id=child.account_id)
        )
    )
    assert document["format"] == "idservice.export/1"
    assert document["account"]["id"] == child.account_id
    assert document["account"]["status"] == "active"
    assert document["account"]["age_band"] == "under_14"
    assert document["guardian"] == {
        "name": guardian.name,
        "phone_number": "+82" + guardian.phone_number[1:],
        "consent_status": "approved",
        "requested_at": "2025-06-02T03:00:00Z",
        "decided_at": decided_at.isoformat().replace("+00:00", "Z"),
        "method": "mobile_identity_verification",  # korea-rules Guardian 3: method and time
    }
    # Sessions newest first.
    assert [s["id"] for s in document["sessions"]] == [second.session_id, first.session_id]
    assert document["sns_identities"] == []
    text = json.dumps(document)
    assert child.person.ci is not None and child.person.ci not in text
    assert child.person.di is not None and child.person.di not in text
    # Exporting writes nothing but its access-audit record, and the guardian's token stays usable.
    before = svc.uow.committed()
    svc.handle(ExportWardData(guardian_verification_token=token, ward_account_id=child.account_id))
    after = svc.uow.committed()
    assert len(after.access_audit) == len(before.access_audit) + 1
    after.access_audit, after.audit_chain = before.access_audit, before.audit_chain
    assert after == before
    assert_unused(svc, token)


def test_the_guardian_withdraws_the_ward(svc: Harness) -> None:
    guardian, (child, sibling) = approved_family(svc, wards=2)
    issued = svc.login(child.email)
    token = svc.verify(guardian).token
    svc.handle(WithdrawWard(guardian_verification_token=token, ward_account_id=child.account_id))

    state = svc.uow.committed()
    # Only the remains holding the ward's CI/DI indexes are left (no personal field, no session).
    remains = state.accounts[child.account_id]
    assert not remains.live and remains.account.email is None and remains.email_key is None
    assert not [s for s in state.sessions.values() if s.session.account_id == child.account_id]
    assert child.request_id not in state.consent_requests
    # korea-rules Guardian 3: how and when the guardian consented stays, as a consent record.
    [consented] = [
        r
        for r in state.consent_records
        if r.account_id == child.account_id and r.consent_type.value == "legal_guardian"
    ]
    assert consented.granted and consented.channel.value == "mobile_identity_verification"
    [withdrawn] = svc.uow.events("account.withdrawn")
    assert withdrawn["data"]["account_id"] == child.account_id
    svc.fails(RefreshSession(refresh_token=issued.refresh_token), Reason.TOKEN_INVALID)
    wards = svc.handle(ListWards(guardian_verification_token=token))
    assert [w.id for w in wards] == [sibling.account_id]
    svc.fails(
        WithdrawWard(guardian_verification_token=token, ward_account_id=child.account_id),
        Reason.NOT_GUARDIAN,
    )
    # The re-join cooldown holds the child's identity.
    error = svc.fails(
        svc.signup(svc.verify(child.person).token, guardian=child.guardian),
        Reason.IDENTITY_ALREADY_REGISTERED,
    )
    assert error.metadata["rejoin_allowed_after"] == utc_text(
        svc.clock() + svc.policy.rejoin_cooldown
    )
