"""CompleteVerification and CheckAge against fakes."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from idservice.domain.age import AgePolicy
from idservice.domain.errors import Reason
from idservice.service_layer.age_check import CheckAge
from idservice.service_layer.ports import TokenPurpose
from idservice.service_layer.verification import (
    VERIFICATION_TOKEN_TTL,
    CompleteVerification,
)
from tests.fakes.providers import FakeIdentityProvider, verified_person
from tests.service_layer.harness import Harness


def test_a_verification_is_stored_once_and_answered_with_a_token(svc: Harness) -> None:
    person = verified_person(birth_date=date(2000, 6, 3))  # 24 on 2025-06-02, 25 the next day
    verification_id = svc.provider.verify(person)
    done = svc.handle(
        CompleteVerification(provider=None, verification_id=verification_id, timeout=3.0)
    )

    # Checked and normalised like caller input: the phone in E.164.
    assert done.person == dataclasses.replace(person, phone_number="+82" + person.phone_number[1:])
    assert (done.age, done.is_under_14) == (24, False)
    assert done.expires_at == svc.clock() + VERIFICATION_TOKEN_TTL
    assert not done.duplicate.exists
    # The provider got less than the caller's deadline.
    [(fetched_id, budget)] = svc.provider.fetches
    assert fetched_id == verification_id and 0 < budget < 3.0
    [row] = svc.uow.committed().verifications.values()
    assert row.token_hash == svc.cipher.token_hash(
        done.token, purpose=TokenPurpose.VERIFICATION_TOKEN
    )
    assert done.token not in repr(row)
    assert row.person == done.person and row.consumed_at is None


def test_a_child_is_flagged_under_14(svc: Harness) -> None:
    done = svc.verify(verified_person(birth_date=date(2012, 1, 1)))
    assert (done.age, done.is_under_14) == (13, True)


def test_an_existing_account_is_reported_without_its_details(svc: Harness) -> None:
    person = verified_person()
    svc.sign_up_person(person, email="hong@example.com")
    done = svc.verify(person)
    assert done.duplicate.exists
    assert done.duplicate.sign_in_methods == ("password",)
    assert done.duplicate.masked_email == "ho***@example.com"
    # A provider that gives no CI is matched by the DI.
    assert svc.verify(dataclasses.replace(person, ci=None)).duplicate.exists


def test_a_verification_id_is_accepted_once(svc: Harness) -> None:
    verification_id = svc.provider.verify(verified_person())
    cmd = CompleteVerification(provider=None, verification_id=verification_id)
    svc.handle(cmd)
    svc.fails(cmd, Reason.VERIFICATION_NOT_FOUND)
    assert len(svc.uow.committed().verifications) == 1


def test_unknown_ids_and_providers(svc: Harness) -> None:
    svc.fails(
        CompleteVerification(provider=None, verification_id="never-made"),
        Reason.VERIFICATION_NOT_FOUND,
    )
    error = svc.fails(
        CompleteVerification(provider="portone", verification_id="whatever"),
        Reason.PROVIDER_NOT_CONFIGURED,
    )
    assert error.metadata == {"provider": "portone"}
    svc.fails(CompleteVerification(provider=None, verification_id="a/b"), Reason.VALIDATION_FAILED)
    assert not svc.uow.committed().verifications


def test_resident_registration_numbers_are_never_taken_in(svc: Harness) -> None:
    rrn_id = svc.provider.register("900115-1234567", verified_person())
    rrn_name = svc.provider.verify(verified_person(name="900115-1234567"))
    for verification_id in (rrn_id, rrn_name):
        error = svc.fails(
            CompleteVerification(provider=None, verification_id=verification_id),
            Reason.VALIDATION_FAILED,
        )
        assert [v.field for v in error.violations] == ["verification_id"]
    assert not svc.uow.committed().verifications


def test_a_bad_answer_from_a_real_provider_is_upstream_unavailable() -> None:
    svc = Harness.build(provider=FakeIdentityProvider(name="portone"))
    for bad in (verified_person(name="홍길동\n"), verified_person(name="900115-1234567")):
        verification_id = svc.provider.verify(bad)
        error = svc.fails(
            CompleteVerification(provider=None, verification_id=verification_id),
            Reason.UPSTREAM_UNAVAILABLE,
        )
        assert error.metadata == {"provider": "portone"}  # as its other failures name it
    assert not svc.uow.committed().verifications
    good = svc.verify(verified_person())
    assert good.token and svc.provider.fetches[-1][0].startswith("fake-verification-")


def test_a_providers_phone_with_the_national_zero_after_plus_82_is_a_phone_number() -> None:
    """`+8201012345678` has `820101` for a birth date in its digits; a phone number written
    with its `+` is still read as one (E.164), not refused as a 주민등록번호."""
    svc = Harness.build(provider=FakeIdentityProvider(name="portone"))
    done = svc.verify(verified_person(phone_number="+8201012345678"))
    assert done.person.phone_number == "+821012345678"


def test_an_unused_token_expires(svc: Harness) -> None:
    token = svc.verify(verified_person()).token
    svc.clock.advance(VERIFICATION_TOKEN_TTL)
    svc.fails(svc.signup(token), Reason.VERIFICATION_TOKEN_INVALID)


@pytest.mark.parametrize(
    ("policy", "birth", "allowed", "changes_on"),
    [
        (AgePolicy.KR_ADULT, "2006-06-03", False, date(2025, 6, 3)),
        (AgePolicy.KR_ADULT, "2006-06-02", True, None),
        (AgePolicy.KR_CHILD_CONSENT, "2011-06-02", True, None),
        (AgePolicy.KR_YOUTH_PROTECTION, "2007-01-01", False, date(2026, 1, 1)),
    ],
)
def test_check_age_of_a_declared_birth_date(
    svc: Harness, policy: AgePolicy, birth: str, allowed: bool, changes_on: date | None
) -> None:
    answer = svc.handle(CheckAge(policy=policy, birth_date=birth))
    assert (answer.allowed, answer.changes_on, answer.identity_verified) == (
        allowed,
        changes_on,
        False,
    )


def test_check_age_as_of_another_day_and_of_a_verification(svc: Harness) -> None:
    answer = svc.handle(
        CheckAge(
            policy=AgePolicy.MINIMUM_AGE,
            minimum_age=20,
            birth_date="2006-06-03",
            as_of="2026-06-03",
        )
    )
    assert (answer.age, answer.allowed) == (20, True)
    svc.fails(
        CheckAge(policy=AgePolicy.KR_ADULT, birth_date="2030-01-01"), Reason.VALIDATION_FAILED
    )
    token = svc.verify(verified_person(birth_date=date(2012, 1, 1))).token
    verified = svc.handle(CheckAge(policy=AgePolicy.KR_CHILD_CONSENT, verification_token=token))
    assert (verified.age, verified.allowed, verified.identity_verified) == (13, False, True)
    # Checking does not use the token up.
    svc.clock.advance(timedelta(minutes=1))
    assert svc.handle(CheckAge(policy=AgePolicy.KR_ADULT, verification_token=token)).age == 13
