"""Two callers at once, forced on the fakes: another caller's use case commits just before one
of this call's units of work (`FakeUnitOfWorkFactory.interleaved`), at each point in turn.
Whatever the point, the later caller gets the answer a call made after the first one gets, and
writes nothing of its own."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from functools import partial
from typing import Any

from idservice.domain.accounts import AccountStatus
from idservice.domain.errors import DomainError, Reason
from idservice.domain.guardian_consent import RESEND_INTERVAL, ConsentRequestStatus
from idservice.service_layer.guardian_consent import (
    ApproveConsentRequest,
    RejectConsentRequest,
    ResendConsentNotification,
)
from idservice.service_layer.privacy import ExportPersonalData, UpdateConsents, Withdraw
from idservice.service_layer.profile import ChangePassword, UpdateProfile
from idservice.service_layer.sessions import IssuedSession
from idservice.service_layer.use_cases import Command
from idservice.service_layer.wards import WithdrawWard
from tests.fakes.providers import new_phone_number, verified_person
from tests.service_layer.harness import PASSWORD, Harness, new_email
from tests.service_layer.test_guardian_consent import (
    Child,
    approved_family,
    assert_unused,
    child_signs_up,
    code_of,
    status_of,
)

# More units of work than any of these use cases opens: the last points never fire.
POINTS = range(1, 9)


def outcome(svc: Harness, cmd: Command[Any]) -> object:
    try:
        return svc.handle(cmd)
    except DomainError as error:
        return error.reason


def decisions(
    svc: Harness,
) -> tuple[Child, str, ApproveConsentRequest, RejectConsentRequest]:
    """A child's pending request, a fresh verification of its guardian, and both decisions on
    it with the right code (neither made yet)."""
    child = child_signs_up(svc)
    code = code_of(svc, child)
    token = svc.verify(child.guardian_person).token
    approve = ApproveConsentRequest(
        id=child.request_id, consent_code=code, guardian_verification_token=token
    )
    return child, token, approve, RejectConsentRequest(id=child.request_id, consent_code=code)


def two_sessions(svc: Harness) -> tuple[str, IssuedSession, IssuedSession]:
    """An adult's email and two sessions of the account: its signup's and a login's."""
    email = new_email()
    first = svc.sign_up_person(verified_person(), email=email).session
    assert first is not None
    return email, first, svc.login(email)


def test_an_approval_overtaken_by_the_rejection_is_closed_and_writes_nothing(
    svc: Harness,
) -> None:
    rejected: set[str] = set()
    for point in POINTS:
        child, token, approve, reject = decisions(svc)
        with svc.uow.interleaved(point, partial(svc.handle, reject)) as rejection:
            answer = outcome(svc, approve)
        if not rejection.fired:
            assert answer == child.account_id
            continue
        rejected.add(child.request_id)
        assert answer is Reason.CONSENT_REQUEST_CLOSED, (point, answer)
        assert status_of(svc, child) is None  # the rejection destroyed the pending account
        assert_unused(svc, token)  # the guardian's verification was not used up
    assert len(rejected) >= 3
    approved = {
        e["data"]["consent_request_id"] for e in svc.uow.events("guardian_consent.approved")
    }
    assert not approved & rejected


def test_a_rejection_overtaken_by_the_approval_is_closed_and_writes_nothing(
    svc: Harness,
) -> None:
    approved: set[str] = set()
    for point in POINTS:
        child, _token, approve, reject = decisions(svc)
        with svc.uow.interleaved(point, partial(svc.handle, approve)) as approval:
            answer = outcome(svc, reject)
        if not approval.fired:
            assert answer is ConsentRequestStatus.REJECTED
            continue
        approved.add(child.request_id)
        assert answer is Reason.CONSENT_REQUEST_CLOSED, (point, answer)
        assert status_of(svc, child) is AccountStatus.ACTIVE
    assert len(approved) >= 3
    rejections = svc.uow.events("guardian_consent.rejected")
    assert not {e["data"]["consent_request_id"] for e in rejections} & approved


def test_a_withdrawal_overtaken_by_another_one_answers_as_the_next_call_would(
    svc: Harness,
) -> None:
    fired = 0
    for point in POINTS:
        _email, first, second = two_sessions(svc)
        mine = Withdraw(access_token=first.access_token, password=PASSWORD)
        other = Withdraw(access_token=second.access_token, password=PASSWORD)
        withdrawn_before = len(svc.uow.events("account.withdrawn"))
        with svc.uow.interleaved(point, partial(svc.handle, other)) as withdrawal:
            answer = outcome(svc, mine)
        if withdrawal.fired:
            fired += 1
            assert answer is Reason.TOKEN_INVALID, (point, answer)
        # One withdrawal, one event, whichever call made it.
        assert len(svc.uow.events("account.withdrawn")) == withdrawn_before + 1
    assert fired >= 3


def test_a_guardians_withdrawal_overtaken_by_another_one_answers_as_the_next_call_would(
    svc: Harness,
) -> None:
    fired = 0
    for point in POINTS:
        guardian, (child,) = approved_family(svc)
        mine = WithdrawWard(
            guardian_verification_token=svc.verify(guardian).token,
            ward_account_id=child.account_id,
        )
        other = WithdrawWard(
            guardian_verification_token=svc.verify(guardian).token,
            ward_account_id=child.account_id,
        )
        withdrawn_before = len(svc.uow.events("account.withdrawn"))
        with svc.uow.interleaved(point, partial(svc.handle, other)) as withdrawal:
            answer = outcome(svc, mine)
        if withdrawal.fired:
            fired += 1
            assert answer is Reason.NOT_GUARDIAN, (point, answer)
        assert len(svc.uow.events("account.withdrawn")) == withdrawn_before + 1
    assert fired >= 2


def test_a_correction_overtaken_by_the_withdrawal_answers_as_the_next_call_would(
    svc: Harness,
) -> None:
    """The correction read the account before the withdrawal committed: it writes nothing into
    what the withdrawal left (kept for the re-join cooldown) and answers TOKEN_INVALID."""
    fired = 0
    for point in POINTS:
        email, person = new_email(), verified_person()
        first = svc.sign_up_person(person, email=email).session
        assert first is not None
        second = svc.login(email)
        # A verified account's details change with a new verification of the same person.
        moved = svc.verify(dataclasses.replace(person, phone_number=new_phone_number())).token
        correct = UpdateProfile(access_token=first.access_token, verification_token=moved)
        leave = Withdraw(access_token=second.access_token, password=PASSWORD)
        with svc.uow.interleaved(point, partial(svc.handle, leave)) as withdrawal:
            answer = outcome(svc, correct)
        if not withdrawal.fired:
            assert not isinstance(answer, Reason), answer
            continue
        fired += 1
        assert answer is Reason.TOKEN_INVALID, (point, answer)
        remains = svc.uow.committed().accounts[second.account_id]
        assert not remains.live and remains.account.phone_number == ""
    assert fired >= 3


def test_a_code_replaced_by_a_resend_before_its_check_no_longer_passes(svc: Harness) -> None:
    """A rejection with the code of the first message, a resend (a fresh code) committing
    before each of its units of work in turn: once the resend comes before the code's check,
    the old code is wrong there, even though the rejection read the request before it."""
    answers = []
    for point in POINTS:
        child = child_signs_up(svc)
        old_code = code_of(svc, child)
        svc.clock.advance(RESEND_INTERVAL)
        resend = partial(svc.handle, ResendConsentNotification(id=child.request_id))
        with svc.uow.interleaved(point, resend) as resent:
            answer = outcome(svc, RejectConsentRequest(id=child.request_id, consent_code=old_code))
        if resent.fired and answer is Reason.CONSENT_CODE_INVALID:
            assert status_of(svc, child) is AccountStatus.PENDING_GUARDIAN_CONSENT
        answers.append(answer)
    # The read, then the check: a resend before either makes the old code wrong; one after the
    # check (the code was right when checked) or none lets the rejection through.
    invalid = answers.count(Reason.CONSENT_CODE_INVALID)
    assert invalid >= 2, answers
    assert answers == [Reason.CONSENT_CODE_INVALID] * invalid + [ConsentRequestStatus.REJECTED] * (
        len(answers) - invalid
    ), answers


def test_a_resend_overtaken_by_another_one_is_refused_and_writes_nothing(svc: Harness) -> None:
    """One message a minute: whichever point the other resend commits at, this one answers
    RATE_LIMITED, as a resend right after it would, and sends nothing."""
    for point in POINTS:
        child = child_signs_up(svc)
        svc.clock.advance(RESEND_INTERVAL)
        resend = ResendConsentNotification(id=child.request_id)
        with svc.uow.interleaved(point, partial(svc.handle, resend)) as other:
            answer = outcome(svc, resend)
        request = svc.uow.committed().consent_requests[child.request_id]
        if not other.fired:
            assert answer == request.request.expires_at
            continue
        assert answer is Reason.RATE_LIMITED, (point, answer)
        assert request.notifications_sent == 2  # the first message and the other resend's


def test_a_consent_change_overtaken_by_another_is_recorded_after_it(svc: Harness) -> None:
    """Another change commits (a second later) just before each of this call's units of work:
    this change's record, made after it, is the newest, and the choice in force is its own."""
    overtaken = 0
    for point in POINTS:
        signed = svc.sign_up_person(verified_person(phone_number=new_phone_number()))
        assert signed.session is not None
        token = signed.session.access_token

        def opt_in(token: str = token) -> None:
            svc.clock.advance(timedelta(seconds=1))
            svc.handle(UpdateConsents(access_token=token, marketing_opt_in=True))
            svc.clock.advance(timedelta(seconds=1))

        with svc.uow.interleaved(point, opt_in) as other:
            svc.handle(UpdateConsents(access_token=token, marketing_opt_in=False))
        if not other.fired:
            continue
        overtaken += 1
        document = json.loads(svc.handle(ExportPersonalData(access_token=token)))
        marketing = [h for h in document["consents"]["history"] if h["type"] == "marketing"]
        assert document["consents"]["marketing_opt_in"] is marketing[-1]["granted"], point
    assert overtaken >= 2


def test_a_password_change_overtaken_by_the_withdrawal_answers_as_the_next_call_would(
    svc: Harness,
) -> None:
    """The change checked the right current password, then a withdrawal committed: it answers
    TOKEN_INVALID (the account is gone), never INVALID_CREDENTIALS for a right password."""
    fired = 0
    for point in POINTS:
        _email, first, second = two_sessions(svc)
        change = ChangePassword(
            access_token=first.access_token,
            current_password=PASSWORD,
            new_password="a brand new passphrase 7!",
        )
        leave = Withdraw(access_token=second.access_token, password=PASSWORD)
        with svc.uow.interleaved(point, partial(svc.handle, leave)) as withdrawal:
            answer = outcome(svc, change)
        if not withdrawal.fired:
            assert not isinstance(answer, Reason), answer
            continue
        fired += 1
        assert answer is Reason.TOKEN_INVALID, (point, answer)
    assert fired >= 3


def test_a_password_change_overtaken_by_another_from_another_session_answers_token_invalid(
    svc: Harness,
) -> None:
    """The other change won and ended every other session, this one's included: this change
    answers TOKEN_INVALID, as its next call would, and its password is not the account's."""
    fired = 0
    for point in POINTS:
        email, first, second = two_sessions(svc)

        def change(token: str, new: str) -> ChangePassword:
            return ChangePassword(access_token=token, current_password=PASSWORD, new_password=new)

        mine = change(first.access_token, "my own new passphrase 7!")
        theirs = change(second.access_token, "their other passphrase 9?")
        with svc.uow.interleaved(point, partial(svc.handle, theirs)) as other:
            answer = outcome(svc, mine)
        if not other.fired:
            continue
        fired += 1
        assert answer is Reason.TOKEN_INVALID, (point, answer)
        svc.login(email, "their other passphrase 9?")  # the winner's password is the account's
    assert fired >= 2
