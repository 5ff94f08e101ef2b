"""The caller's own account against fakes: GetAccount, UpdateProfile (정정), ChangePassword."""

from __future__ import annotations

import dataclasses
from datetime import date

from idservice.domain.errors import Reason
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.policy import Policy
from idservice.service_layer.profile import ChangePassword, GetAccount, UpdateProfile
from idservice.service_layer.sessions import IntrospectToken, IssuedSession, RefreshSession
from tests.fakes.providers import new_phone_number, verified_person
from tests.service_layer.harness import OTHER_PASSWORD, PASSWORD, Harness


def signed_in(svc: Harness, email: str = "me@example.com") -> IssuedSession:
    result = svc.sign_up_person(verified_person(name="홍길동"), email=email)
    assert result.session is not None
    return result.session


def test_get_account_answers_the_bearer_account(svc: Harness) -> None:
    issued = signed_in(svc)
    account = svc.handle(GetAccount(access_token=issued.access_token))
    assert account.id == issued.account_id
    assert account.email == "me@example.com"
    assert account.name == "홍길동"
    assert account.sign_in_methods == ("password",)


def test_get_account_needs_a_live_session(svc: Harness) -> None:
    svc.fails(GetAccount(access_token="forged"), Reason.TOKEN_INVALID)
    issued = signed_in(svc)
    svc.clock.advance(svc.tokens.ttl)
    svc.fails(GetAccount(access_token=issued.access_token), Reason.TOKEN_EXPIRED)


def test_verified_fields_change_only_with_a_new_verification(svc: Harness) -> None:
    person = verified_person(name="홍길동")
    result = svc.sign_up_person(person)
    assert result.session is not None
    access = result.session.access_token
    svc.fails(
        UpdateProfile(access_token=access, name="홍길순"), Reason.IDENTITY_VERIFICATION_REQUIRED
    )
    # Unchanged values need nothing.
    same = svc.handle(UpdateProfile(access_token=access, name="홍길동"))
    assert same.name == "홍길동"

    renamed = dataclasses.replace(person, name="홍길순", phone_number=new_phone_number())
    token = svc.verify(renamed).token
    updated = svc.handle(
        UpdateProfile(access_token=access, name="홍길순", verification_token=token)
    )
    assert updated.name == "홍길순"
    assert updated.phone_number == "+82" + renamed.phone_number[1:]  # taken from the verification
    stored = svc.uow.committed().accounts[result.account.id].account
    assert (stored.name, stored.phone_number) == (updated.name, updated.phone_number)
    # The token was consumed by the correction.
    svc.fails(
        UpdateProfile(access_token=access, name="홍길순", verification_token=token),
        Reason.VERIFICATION_TOKEN_INVALID,
    )


def test_a_verification_of_someone_else_is_a_mismatch(svc: Harness) -> None:
    issued = signed_in(svc)
    stranger = svc.verify(verified_person(name="김철수")).token
    svc.fails(
        UpdateProfile(access_token=issued.access_token, name="김철수", verification_token=stranger),
        Reason.VERIFICATION_MISMATCH,
    )
    assert svc.handle(GetAccount(access_token=issued.access_token)).name == "홍길동"


def test_an_unverified_account_corrects_its_fields_freely() -> None:
    svc = Harness.build(Policy(require_identity_verification=False))
    cmd = svc.signup(name="이영희", phone_number="010-2345-6789", birth_date="1990-01-15")
    result = svc.handle(cmd)
    assert result.session is not None and not result.account.identity_verified
    updated = svc.handle(
        UpdateProfile(
            access_token=result.session.access_token, name="이영수", birth_date="1991-02-03"
        )
    )
    assert (updated.name, updated.birth_date) == ("이영수", date(1991, 2, 3))
    # Nobody turns into a child without the guardian-consent path.
    svc.fails(
        UpdateProfile(access_token=result.session.access_token, birth_date="2020-01-01"),
        Reason.IDENTITY_VERIFICATION_REQUIRED,
    )


def test_change_password_revokes_the_other_sessions(svc: Harness) -> None:
    current = signed_in(svc)
    other = svc.login("me@example.com")
    svc.handle(
        ChangePassword(
            access_token=current.access_token,
            current_password=PASSWORD,
            new_password=OTHER_PASSWORD,
        )
    )
    assert svc.handle(IntrospectToken(access_token=current.access_token)).active
    assert not svc.handle(IntrospectToken(access_token=other.access_token)).active
    svc.fails(RefreshSession(refresh_token=other.refresh_token), Reason.TOKEN_INVALID)
    row = svc.uow.committed().sessions[other.session_id]
    assert row.revoked_reason == "password_changed"

    svc.fails(PasswordLogin(email="me@example.com", password=PASSWORD), Reason.INVALID_CREDENTIALS)
    assert svc.login("me@example.com", OTHER_PASSWORD).account_id == current.account_id


def test_change_password_needs_the_current_password(svc: Harness) -> None:
    issued = signed_in(svc)
    error = svc.fails(
        ChangePassword(
            access_token=issued.access_token, current_password="wrong", new_password=OTHER_PASSWORD
        ),
        Reason.INVALID_CREDENTIALS,
    )
    assert error.message == "the current password is wrong"
    svc.fails(
        ChangePassword(
            access_token=issued.access_token, current_password=PASSWORD, new_password="short"
        ),
        Reason.VALIDATION_FAILED,
    )
    assert svc.login("me@example.com").account_id == issued.account_id
