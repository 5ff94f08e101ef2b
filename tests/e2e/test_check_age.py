"""CheckAge over gRPC: every policy and subject, korea-rules examples, assurance and bad input."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
from google.protobuf import empty_pb2

from idservice.v1 import account_pb2, identity_pb2
from tests.conftest import make_settings
from tests.support.client import (
    STRONG_PASSWORD,
    Client,
    RpcFailure,
    failure_of,
    new_person,
)
from tests.support.serving import serving

SEOUL = ZoneInfo("Asia/Seoul")
CHILD = identity_pb2.AGE_POLICY_KR_CHILD_CONSENT
ADULT = identity_pb2.AGE_POLICY_KR_ADULT
YOUTH = identity_pb2.AGE_POLICY_KR_YOUTH_PROTECTION
MINIMUM = identity_pb2.AGE_POLICY_MINIMUM_AGE
UNSPECIFIED = identity_pb2.AGE_POLICY_UNSPECIFIED
SELF_DECLARED = identity_pb2.AGE_ASSURANCE_SELF_DECLARED
VERIFIED = identity_pb2.AGE_ASSURANCE_IDENTITY_VERIFIED


def check(
    client: Client,
    policy: int,
    *,
    as_of: str = "",
    minimum_age: int = 0,
    metadata: Sequence[tuple[str, str | bytes]] | None = None,
    **subject: object,
) -> identity_pb2.CheckAgeResponse:
    request = identity_pb2.CheckAgeRequest(
        policy=policy,  # type: ignore[arg-type]
        as_of=as_of,
        minimum_age=minimum_age,
        **subject,  # type: ignore[arg-type]
    )
    return client.identity.CheckAge(request, metadata=None if metadata is None else tuple(metadata))


def seoul_today() -> date:
    return datetime.now(SEOUL).date()


# (birth date, policy, minimum_age, as_of) -> (age, allowed, changes_on)
DECLARED_CASES = [
    # korea-rules Age 2: born on 29 February gains a year on 1 March in a non-leap year.
    ("2012-02-29", CHILD, 0, "2026-02-28", 13, False, "2026-03-01"),
    ("2012-02-29", CHILD, 0, "2026-03-01", 14, True, ""),
    ("2012-02-29", MINIMUM, 16, "2028-02-28", 15, False, "2028-02-29"),
    ("2012-02-29", MINIMUM, 16, "2028-02-29", 16, True, ""),
    ("2012-02-29", ADULT, 0, "2026-03-01", 14, False, "2031-03-01"),
    # 성년 is 만 19 (민법 제4조), gained at 00:00 on the birthday.
    ("2007-06-15", ADULT, 0, "2026-06-14", 18, False, "2026-06-15"),
    ("2007-06-15", ADULT, 0, "2026-06-15", 19, True, ""),
    # 청소년 보호법: counted by birth year — no longer a 청소년 from 1 January of the 19th year,
    # while still 만 18 and not an adult.
    ("2007-06-15", YOUTH, 0, "2025-12-31", 18, False, "2026-01-01"),
    ("2007-06-15", YOUTH, 0, "2026-01-01", 18, True, ""),
    ("2007-12-31", YOUTH, 0, "2026-01-01", 18, True, ""),
    ("2007-12-31", ADULT, 0, "2026-01-01", 18, False, "2026-12-31"),
    ("2008-01-01", YOUTH, 0, "2026-12-31", 18, False, "2027-01-01"),
    # MINIMUM_AGE with minimum_age.
    ("2006-05-10", MINIMUM, 20, "2026-05-09", 19, False, "2026-05-10"),
    ("2006-05-10", MINIMUM, 20, "2026-05-10", 20, True, ""),
    ("2006-05-10", MINIMUM, 0, "2026-05-10", 20, True, ""),
    # An adult passes every gate for good.
    ("1970-01-01", CHILD, 0, "2026-01-01", 56, True, ""),
    ("1970-01-01", YOUTH, 0, "2026-01-01", 56, True, ""),
    # The day of birth itself: 만 0.
    ("2026-01-01", CHILD, 0, "2026-01-01", 0, False, "2040-01-01"),
]


def test_self_declared_birth_dates_follow_the_korean_rules(client: Client) -> None:
    for birth, policy, minimum_age, as_of, age, allowed, changes_on in DECLARED_CASES:
        case = (birth, identity_pb2.AgePolicy.Name(policy), minimum_age, as_of)
        answer = check(client, policy, as_of=as_of, minimum_age=minimum_age, birth_date=birth)
        assert (answer.age, answer.allowed, answer.changes_on) == (age, allowed, changes_on), case
        assert answer.assurance == SELF_DECLARED, case


def test_today_is_the_calendar_date_in_seoul(tmp_path: Path, database_url: str) -> None:
    # 2026-02-28T15:30Z is already 2026-03-01 00:30 in Seoul: born 2012-02-29 is 14 there.
    moments = {
        datetime(2026, 2, 28, 14, 59, 59, tzinfo=UTC): (13, False, "2026-03-01"),
        datetime(2026, 2, 28, 15, 30, tzinfo=UTC): (14, True, ""),
    }
    now = list(moments)
    with serving(make_settings(tmp_path, database_url), clock=lambda: now[0]) as (_, client):
        for moment, expected in moments.items():
            now[0] = moment
            answer = check(client, CHILD, birth_date="2012-02-29")  # no as_of: today in Seoul
            assert (answer.age, answer.allowed, answer.changes_on) == expected, moment


def test_account_subject_uses_the_callers_verified_birth_date(client: Client) -> None:
    person = new_person(birth_date="2008-09-30")
    signed = client.sign_up(person)
    bearer = client.bearer(signed.session.access_token)

    answer = check(client, ADULT, as_of="2027-09-29", metadata=bearer, account=empty_pb2.Empty())
    assert (answer.age, answer.allowed, answer.changes_on) == (18, False, "2027-09-30")
    assert answer.assurance == VERIFIED
    answer = check(client, YOUTH, as_of="2027-01-01", metadata=bearer, account=empty_pb2.Empty())
    assert (answer.age, answer.allowed, answer.changes_on) == (18, True, "")
    answer = check(
        client,
        MINIMUM,
        minimum_age=17,
        as_of="2025-09-30",
        metadata=bearer,
        account=empty_pb2.Empty(),
    )
    assert (answer.age, answer.allowed, answer.changes_on) == (17, True, "")

    missing = failure_of(lambda: check(client, ADULT, account=empty_pb2.Empty()))
    assert (missing.code, missing.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


def test_account_without_identity_verification_is_self_declared(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url, require_identity_verification=False)
    with serving(settings, clock=lambda: datetime.now(UTC)) as (_, client):
        signed = client.accounts.SignUp(
            account_pb2.SignUpRequest(
                email=f"declared-{uuid.uuid4().hex[:8]}@example.com",
                password=STRONG_PASSWORD,
                name="오선언",
                phone_number="010-3141-5926",
                birth_date="1999-04-01",
                consents=client.consents(),
            )
        )
        assert not signed.account.identity_verified
        answer = check(
            client,
            ADULT,
            as_of="2026-04-01",
            metadata=client.bearer(signed.session.access_token),
            account=empty_pb2.Empty(),
        )
        assert (answer.age, answer.allowed) == (27, True)
        assert answer.assurance == SELF_DECLARED


def test_verification_token_subject_is_verified_and_not_consumed(client: Client) -> None:
    person = new_person(birth_date="2012-02-29")
    token = client.verify(person).verification_token

    answer = check(client, CHILD, as_of="2026-02-28", verification_token=token)
    assert (answer.age, answer.allowed, answer.changes_on) == (13, False, "2026-03-01")
    assert answer.assurance == VERIFIED
    answer = check(client, CHILD, as_of="2026-03-01", verification_token=token)
    assert (answer.age, answer.allowed, answer.changes_on) == (14, True, "")

    # CheckAge did not use the token up: an adult's token still signs up afterwards.
    adult = new_person(birth_date="1985-05-05")
    adult_token = client.verify(adult).verification_token
    assert check(client, ADULT, verification_token=adult_token).allowed
    signed = client.sign_up(adult, verification_token=adult_token)
    assert signed.account.identity_verified
    # ...and once used by SignUp it is no longer a subject.
    used = failure_of(lambda: check(client, ADULT, verification_token=adult_token))
    assert (used.code, used.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "VERIFICATION_TOKEN_INVALID",
    )
    unknown = failure_of(lambda: check(client, ADULT, verification_token="not-a-token-we-issued"))
    assert (unknown.code, unknown.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "VERIFICATION_TOKEN_INVALID",
    )


def test_an_empty_verification_token_subject_is_an_invalid_token(client: Client) -> None:
    # The subject chosen is the verification token; an empty one is no valid token. It is not
    # a self-declared birth date (which the caller never sent).
    failure = failure_of(lambda: check(client, ADULT, verification_token=""))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "VERIFICATION_TOKEN_INVALID",
    )
    assert "birth_date" not in failure.fields


def _future(days: int) -> str:
    return (seoul_today() + timedelta(days=days)).isoformat()


# (request fields, the field the violation must name)
BAD_REQUESTS: list[tuple[dict[str, object], str]] = [
    ({"policy": ADULT}, "subject"),
    ({"policy": UNSPECIFIED, "birth_date": "1990-01-15"}, "policy"),
    ({"policy": ADULT, "birth_date": "2013-02-29"}, "birth_date"),  # not a calendar date
    ({"policy": ADULT, "birth_date": "1990-13-01"}, "birth_date"),
    ({"policy": ADULT, "birth_date": "1990/01/15"}, "birth_date"),
    ({"policy": ADULT, "birth_date": "19900115"}, "birth_date"),
    ({"policy": ADULT, "birth_date": "1990-1-15"}, "birth_date"),
    ({"policy": ADULT, "birth_date": " 1990-01-15"}, "birth_date"),
    ({"policy": ADULT, "birth_date": "١٩٩٠-٠١-١٥"}, "birth_date"),  # non-ASCII digits
    ({"policy": ADULT, "birth_date": ""}, "birth_date"),
    ({"policy": ADULT, "birth_date": "1899-12-31"}, "birth_date"),
    ({"policy": ADULT, "birth_date": "FUTURE"}, "birth_date"),
    ({"policy": ADULT, "birth_date": "1990-01-15", "as_of": "2026-02-30"}, "as_of"),
    ({"policy": ADULT, "birth_date": "1990-01-15", "as_of": "tomorrow"}, "as_of"),
    ({"policy": MINIMUM, "birth_date": "1990-01-15", "minimum_age": -1}, "minimum_age"),
    ({"policy": MINIMUM, "birth_date": "1990-01-15", "minimum_age": 151}, "minimum_age"),
]


def test_bad_input_is_validation_failed(client: Client) -> None:
    wrong: list[tuple[dict[str, object], str, RpcFailure]] = []
    for fields, field in BAD_REQUESTS:
        values = dict(fields)
        if values.get("birth_date") == "FUTURE":
            values["birth_date"] = _future(3)  # days ahead of Seoul's today, clear of midnight
        request = identity_pb2.CheckAgeRequest(**values)  # type: ignore[arg-type]
        failure = failure_of(partial(client.identity.CheckAge, request))
        if (failure.code, failure.reason) != (
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION_FAILED",
        ) or field not in failure.fields:
            wrong.append((values, field, failure))
    assert wrong == []


def test_a_birth_date_after_as_of_or_after_today_is_validation_failed(client: Client) -> None:
    # On `as_of` the person is not born yet: there is no 만 나이 to answer with (never a
    # negative age).
    before_birth = failure_of(
        lambda: check(client, ADULT, as_of="2020-01-01", birth_date="2022-06-01")
    )
    assert (before_birth.code, before_birth.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
    )
    # Either value may be the mistake: both are named.
    assert sorted(before_birth.fields) == ["as_of", "birth_date"]
    # korea-rules Age 7: a birth date in the future is invalid input, whatever `as_of` asks.
    unborn = (seoul_today() + timedelta(days=30)).isoformat()
    later = (seoul_today() + timedelta(days=3650)).isoformat()
    future = failure_of(lambda: check(client, ADULT, as_of=later, birth_date=unborn))
    assert (future.code, future.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED")
    assert future.fields == ["birth_date"]
