"""CompleteVerification over gRPC (PortOne stand-in and sandbox), then SignUp with its token."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from sqlalchemy import func, select, update

from idservice.adapters.db.tables import rejoin_holds, verifications
from idservice.adapters.identity.sandbox import sandbox_ci, sandbox_di
from idservice.bootstrap import App
from idservice.config import Settings
from idservice.v1 import account_pb2, auth_pb2, common_pb2, identity_pb2
from tests.conftest import make_settings
from tests.fakes.portone import PortOneStandIn, verified_body
from tests.support.client import (
    STRONG_PASSWORD,
    Client,
    Person,
    decode,
    failure_of,
    new_person,
)
from tests.support.serving import FakeClock, serving

SEOUL = ZoneInfo("Asia/Seoul")
SECRET = "portone-e2e-secret-Hq7"
STORE_ID = "store-e2e-3b9d"
PORTONE = identity_pb2.VERIFICATION_PROVIDER_PORTONE
SANDBOX = identity_pb2.VERIFICATION_PROVIDER_SANDBOX
# The client-side deadline of the slow-upstream call, and how long the stand-in stalls (far
# beyond it, so only the service's own budget can produce an answer).
SLOW_CALL_DEADLINE_SECONDS = 3.0
SLOW_UPSTREAM_SECONDS = 20.0
# Concurrent callers in the race tests.
RACERS = 4


# -- helpers ------------------------------------------------------------------------------------


def seoul_today() -> date:
    return datetime.now(SEOUL).date()


def birth_date_for_age(years: int) -> str:
    """A birth date making someone exactly `years` old today in Seoul, far from any birthday."""
    anchor = seoul_today() - timedelta(days=120)
    try:
        return anchor.replace(year=anchor.year - years).isoformat()
    except ValueError:  # 29 February in a non-leap year
        return anchor.replace(year=anchor.year - years, day=28).isoformat()


def age_today(birth: str) -> int:
    born, today = date.fromisoformat(birth), seoul_today()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def new_ci() -> str:
    return base64.b64encode(hashlib.sha512(uuid.uuid4().bytes).digest()).decode()  # 88 chars


def new_di() -> str:
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()  # 64 chars


def new_phone() -> str:
    """PortOne sends digits only (and libphonenumber refuses 010-597x…-599x: stay clear)."""
    return f"0102{uuid.uuid4().int % 10**7:07d}"


def e164(korean_mobile_digits: str) -> str:
    return "+82" + korean_mobile_digits.replace("-", "")[1:]


def jwt_claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(claims, dict)
    return claims


def portone_verify(
    client: Client, verification_id: str, *, timeout: float | None = None
) -> identity_pb2.CompleteVerificationResponse:
    return client.identity.CompleteVerification(
        identity_pb2.CompleteVerificationRequest(provider=PORTONE, verification_id=verification_id),
        timeout=timeout,
    )


def portone_settings(
    tmp_path: Path, database_url: str, api_base: str, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "identity_provider": "portone",
        "portone_api_secret": SECRET,
        "portone_api_base": api_base,
        "portone_store_id": STORE_ID,
    }
    values.update(overrides)
    return make_settings(tmp_path, database_url, **values)


@pytest.fixture
def portone() -> Iterator[PortOneStandIn]:
    with PortOneStandIn(secret=SECRET, store_id=STORE_ID) as stand_in:
        yield stand_in


@pytest.fixture
def portone_client(tmp_path: Path, database_url: str, portone: PortOneStandIn) -> Iterator[Client]:
    with serving(portone_settings(tmp_path, database_url, portone.base_url)) as (_, client):
        yield client


def add_portone_person(
    portone: PortOneStandIn,
    verification_id: str,
    *,
    name: str = "김본인",
    birth_date: str = "1991-07-23",
    ci: str | None = "generate",
    di: str | None = "generate",
) -> dict[str, str | None]:
    person: dict[str, str | None] = {
        "name": name,
        "phone": new_phone(),
        "birth_date": birth_date,
        "ci": new_ci() if ci == "generate" else ci,
        "di": new_di() if di == "generate" else di,
    }
    portone.add_verified(
        verification_id,
        name=name,
        phone=str(person["phone"]),
        birth_date=birth_date,
        ci=person["ci"],
        di=person["di"],
    )
    return person


def email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def signup_with_token(
    client: Client, token: str, address: str | None = None, **extra: object
) -> account_pb2.SignUpResponse:
    """SignUp with only email, password, consents and the verification token (plus `extra`)."""
    return client.accounts.SignUp(
        account_pb2.SignUpRequest(
            email=address or email(),
            password=STRONG_PASSWORD,
            verification_token=token,
            consents=client.consents(),
            **extra,  # type: ignore[arg-type]
        )
    )


# -- PortOne outcomes ---------------------------------------------------------------------------


def test_portone_verified_gives_a_token_that_signs_up_with_the_verified_person(
    portone_client: Client, portone: PortOneStandIn
) -> None:
    person = add_portone_person(portone, "iv-verified-1", birth_date="1991-07-23")

    done = portone_client.identity.CompleteVerification(
        identity_pb2.CompleteVerificationRequest(verification_id="iv-verified-1")
    )  # provider unspecified = the configured one (portone)

    assert done.verification_token
    assert done.name == person["name"]
    assert done.birth_date == "1991-07-23"
    assert done.age == age_today("1991-07-23")
    assert not done.is_under_14
    assert not done.duplicate.exists
    assert list(done.duplicate.sign_in_methods) == []
    assert done.duplicate.masked_email == ""
    # Server-to-server: the documented resource, the secret in the header, the store named.
    (request,) = portone.requests_for("iv-verified-1")
    assert request.method == "GET"
    assert request.path == "/identity-verifications/iv-verified-1"
    assert request.headers["authorization"] == f"PortOne {SECRET}"
    assert request.query.get("storeId") == [STORE_ID]

    # SignUp with only email, password, consents and the token: the rest comes from PortOne.
    signed = signup_with_token(portone_client, done.verification_token, email())
    account = signed.account
    assert account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
    assert account.identity_verified
    assert account.name == person["name"]
    assert account.birth_date == "1991-07-23"
    assert account.phone_number == e164(str(person["phone"]))


def test_portone_ready_is_not_completed_and_stays_usable_once_verified(
    portone_client: Client, portone: PortOneStandIn
) -> None:
    portone.add_status("iv-ready-1", "READY")
    failure = failure_of(lambda: portone_verify(portone_client, "iv-ready-1"))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "VERIFICATION_NOT_COMPLETED",
    )
    assert failure.domain == "idservice.v1"

    # The person finishes 본인인증 afterwards: the same id is accepted now (READY did not burn it).
    add_portone_person(portone, "iv-ready-1")
    done = portone_verify(portone_client, "iv-ready-1")
    assert done.verification_token


def test_portone_failed_verification_is_not_completed_and_unknown_is_not_found(
    portone_client: Client, portone: PortOneStandIn
) -> None:
    """The contract requires `status == "VERIFIED"`: a FAILED one, like a READY one, is
    `VERIFICATION_NOT_COMPLETED`; an id PortOne does not know is `VERIFICATION_NOT_FOUND`."""
    portone.add_status("iv-failed-1", "FAILED")
    portone.add_not_found("iv-unknown-1")
    answers = {
        "iv-failed-1": (grpc.StatusCode.FAILED_PRECONDITION, "VERIFICATION_NOT_COMPLETED"),
        "iv-unknown-1": (grpc.StatusCode.NOT_FOUND, "VERIFICATION_NOT_FOUND"),
    }
    for verification_id, answer in answers.items():
        failure = failure_of(partial(portone_verify, portone_client, verification_id))
        assert (failure.code, failure.reason) == answer, verification_id
        assert len(portone.requests_for(verification_id)) == 1


def test_portone_rejecting_our_credentials_is_upstream_unavailable(
    tmp_path: Path, database_url: str, portone: PortOneStandIn
) -> None:
    add_portone_person(portone, "iv-auth-1")
    wrong_secret = {"portone_api_secret": "a-wrong-secret"}  # PortOne answers 401
    wrong_store = {"portone_store_id": "store-of-someone-else"}  # PortOne answers 403
    for overrides in (wrong_secret, wrong_store):
        settings = portone_settings(tmp_path, database_url, portone.base_url, **overrides)
        with serving(settings) as (_, client):
            failure = failure_of(partial(portone_verify, client, "iv-auth-1"))
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "UPSTREAM_UNAVAILABLE",
        ), overrides
    # Both calls reached PortOne and were refused there.
    assert len(portone.requests_for("iv-auth-1")) >= 2


def test_portone_slow_answer_is_unavailable_within_the_call_deadline(
    portone_client: Client, portone: PortOneStandIn
) -> None:
    add_portone_person(portone, "iv-slow-1")
    portone.add_slow("iv-slow-1", SLOW_UPSTREAM_SECONDS)
    # The service must answer UNAVAILABLE itself before the caller's deadline passes; a
    # DEADLINE_EXCEEDED would mean it spent the caller's whole budget waiting upstream.
    failure = failure_of(
        lambda: portone_verify(portone_client, "iv-slow-1", timeout=SLOW_CALL_DEADLINE_SECONDS)
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "UPSTREAM_UNAVAILABLE",
    )


def test_portone_500_is_retried_and_then_succeeds(
    portone_client: Client, portone: PortOneStandIn
) -> None:
    person = add_portone_person(portone, "iv-flaky-1")
    portone.add_failure("iv-flaky-1", 500, times=1)
    done = portone_verify(portone_client, "iv-flaky-1")
    assert done.name == person["name"]
    assert len(portone.requests_for("iv-flaky-1")) == 2


def test_portone_500_every_time_is_retried_then_unavailable(
    portone_client: Client, portone: PortOneStandIn
) -> None:
    add_portone_person(portone, "iv-down-1")
    portone.add_failure("iv-down-1", 500)
    failure = failure_of(lambda: portone_verify(portone_client, "iv-down-1"))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "UPSTREAM_UNAVAILABLE",
    )
    assert len(portone.requests_for("iv-down-1")) >= 2


def test_portone_answer_without_ci_and_di_is_refused(
    portone_client: Client, portone: PortOneStandIn
) -> None:
    add_portone_person(portone, "iv-nokeys-1", ci=None, di=None)
    failure = failure_of(lambda: portone_verify(portone_client, "iv-nokeys-1"))
    assert failure.code == grpc.StatusCode.UNAVAILABLE
    assert failure.reason == "UPSTREAM_UNAVAILABLE"


@pytest.mark.parametrize("only", ["ci", "di"])
def test_portone_ci_only_or_di_only_person_is_one_account(
    portone_client: Client, portone: PortOneStandIn, only: str
) -> None:
    ci, di = (new_ci(), None) if only == "ci" else (None, new_di())
    add_portone_person(portone, "iv-one-1", name="이한키", ci=ci, di=di)
    first = portone_verify(portone_client, "iv-one-1")
    owner_email = f"onekey-{only}@example.com"
    signed = signup_with_token(portone_client, first.verification_token, owner_email)
    assert signed.account.identity_verified

    # The same person verifies again (a new PortOne verification with the same single key).
    add_portone_person(portone, "iv-one-2", name="이한키", ci=ci, di=di)
    again = portone_verify(portone_client, "iv-one-2")
    assert again.duplicate.exists
    assert list(again.duplicate.sign_in_methods) == ["password"]
    assert again.duplicate.masked_email == "on***@example.com"
    failure = failure_of(
        lambda: signup_with_token(portone_client, again.verification_token, email())
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "IDENTITY_ALREADY_REGISTERED",
    )
    assert failure.metadata.get("sign_in_methods") == "password"
    assert failure.metadata.get("masked_email") == "on***@example.com"


def test_portone_verification_id_is_accepted_once(
    portone_client: Client, portone: PortOneStandIn
) -> None:
    add_portone_person(portone, "iv-once-1")
    first = portone_verify(portone_client, "iv-once-1")

    replay = failure_of(lambda: portone_verify(portone_client, "iv-once-1"))
    assert (replay.code, replay.reason) == (grpc.StatusCode.NOT_FOUND, "VERIFICATION_NOT_FOUND")

    # The replay took nothing from the first completion: its token still signs up.
    signed = signup_with_token(portone_client, first.verification_token, email())
    assert signed.account.identity_verified
    # Once the token is used, the id is still spent.
    late = failure_of(lambda: portone_verify(portone_client, "iv-once-1"))
    assert (late.code, late.reason) == (grpc.StatusCode.NOT_FOUND, "VERIFICATION_NOT_FOUND")


MALFORMED_IDS = ["", "../admin", "..", "iv/../../x", "iv?storeId=x", "iv#x", "iv 1", "i" * 201]


def test_portone_malformed_verification_id_is_refused_before_any_request(
    portone_client: Client, portone: PortOneStandIn
) -> None:
    for verification_id in MALFORMED_IDS:
        failure = failure_of(partial(portone_verify, portone_client, verification_id))
        assert (failure.code, failure.reason, failure.fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION_FAILED",
            ["verification_id"],
        ), verification_id
    assert portone.requests == []


def test_asking_for_portone_when_only_the_sandbox_runs_is_provider_not_configured(
    client: Client,
) -> None:
    failure = failure_of(lambda: portone_verify(client, "iv-anything-1"))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PROVIDER_NOT_CONFIGURED",
    )
    # The configured provider (the sandbox) still answers, by name and by default.
    person = new_person()
    by_name = client.identity.CompleteVerification(
        identity_pb2.CompleteVerificationRequest(
            provider=SANDBOX, verification_id=person.verification_id()
        )
    )
    assert by_name.name == person.name
    assert client.verify(person).name == person.name


# -- providers' answers are checked like callers' input -----------------------------------------

# verifiedCustomer changes PortOne's answer shape allows (or a careless upstream might send) that
# the service must refuse: UNAVAILABLE UPSTREAM_UNAVAILABLE, never INTERNAL, nothing stored.
BAD_CUSTOMER_CHANGES: dict[str, dict[str, object]] = {
    "gender-object": {"gender": {"code": "MALE"}},
    "gender-array": {"gender": ["MALE"]},
    "gender-number": {"gender": 1},
    "name-number": {"name": 12345},
    "name-boolean": {"name": True},
    "phone-number-as-number": {"phoneNumber": 1023456789},
    "birth-date-array": {"birthDate": [1990, 1, 15]},
    "is-foreigner-string": {"isForeigner": "N"},
    "ci-object": {"ci": {"value": "x"}},
    "di-number": {"di": 12345},
    "born-in-year-1": {"birthDate": "0001-01-01"},
    "born-in-2999": {"birthDate": "2999-01-01"},
    "name-of-5000-characters": {"name": "가" * 5000},
    "name-with-nul-and-newline": {"name": "홍\x00길\n동"},
    "name-shaped-like-an-rrn": {"name": "900101-1234567"},
    "phone-shaped-like-an-rrn": {"phoneNumber": "900115-1234567"},
}


def bad_answer(verification_id: str, changes: dict[str, object]) -> dict[str, object]:
    body = verified_body(
        verification_id,
        name="김본인",
        phone=new_phone(),
        birth_date="1991-07-23",
        ci=new_ci(),
        di=new_di(),
    )
    body["verifiedCustomer"].update(changes)
    return body


def stored_verifications(app: App) -> int:
    with app.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(verifications)).scalar_one())


def test_bad_portone_answers_are_upstream_unavailable_and_store_nothing(
    tmp_path: Path,
    database_url: str,
    portone: PortOneStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers: dict[str, object] = {
        label: bad_answer(f"iv-bad-{label}", changes)
        for label, changes in BAD_CUSTOMER_CHANGES.items()
    }
    answers["verified-customer-array"] = {
        **bad_answer("iv-bad-verified-customer-array", {}),
        "verifiedCustomer": [],
    }
    answers["status-object"] = {**bad_answer("iv-bad-status-object", {}), "status": {"v": 1}}
    surrogate = json.dumps(bad_answer("iv-bad-lone-surrogate", {"name": "NAME"}))
    answers["lone-surrogate"] = surrogate.replace('"NAME"', '"\\ud800"').encode()
    for label, body in answers.items():
        portone.add_response(f"iv-bad-{label}", 200, body)

    with serving(portone_settings(tmp_path, database_url, portone.base_url)) as (app, client):
        for label in answers:
            failure = failure_of(partial(portone_verify, client, f"iv-bad-{label}"))
            assert (failure.code, failure.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "UPSTREAM_UNAVAILABLE",
            ), label
            assert failure.domain == "idservice.v1"
        assert stored_verifications(app) == 0

        # The service itself is fine: a good answer still completes (and is all that is stored).
        add_portone_person(portone, "iv-good-after-bad")
        assert portone_verify(client, "iv-good-after-bad").verification_token
        assert stored_verifications(app) == 1

    # Each refusal was logged by field, never with the value.
    logged = caplog.text
    for changes in BAD_CUSTOMER_CHANGES.values():
        for value in changes.values():
            if isinstance(value, str) and len(value) > 1:
                assert value not in logged
    assert "invalid fields (birth_date)" in logged
    assert "invalid fields (phone_number)" in logged


def test_sandbox_persons_failing_the_rules_are_the_callers_invalid_input(
    client: Client, app: App
) -> None:
    for verification_id in (
        "sandbox:홍길동2:1990-01-15:010-2345-6789:seed-digits",  # a name with a digit
        f"sandbox:{'가' * 60}:1990-01-15:010-2345-6789:seed-long",  # a name too long
        "sandbox:홍길동:1990-01-15:0:seed-phone",  # no phone number at all
    ):
        request = identity_pb2.CompleteVerificationRequest(verification_id=verification_id)
        failure = failure_of(partial(client.identity.CompleteVerification, request))
        assert (failure.code, failure.reason, failure.fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION_FAILED",
            ["verification_id"],
        ), verification_id
    assert stored_verifications(app) == 0


# -- sandbox flow -------------------------------------------------------------------------------


def test_sandbox_verification_id_is_accepted_once(client: Client) -> None:
    person = new_person()
    client.verify(person, attempt=1)
    replay = failure_of(lambda: client.verify(person, attempt=1))
    assert (replay.code, replay.reason) == (grpc.StatusCode.NOT_FOUND, "VERIFICATION_NOT_FOUND")
    # A new attempt of the same person is a new verification.
    assert client.verify(person, attempt=2).verification_token


def outcome_of(call: Callable[[], object]) -> str:
    """ "ok", or "<CODE> <REASON>" of the error."""
    try:
        call()
    except grpc.RpcError as error:
        failure = decode(error)
        return f"{failure.code.name} {failure.reason}"
    return "ok"


def test_concurrent_completions_of_one_verification_id_accept_exactly_one(
    client: Client,
) -> None:
    request = identity_pb2.CompleteVerificationRequest(
        verification_id=new_person().verification_id(attempt=7)
    )
    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        outcomes = list(
            pool.map(
                lambda _: outcome_of(lambda: client.identity.CompleteVerification(request)),
                range(RACERS),
            )
        )
    assert sorted(outcomes) == ["NOT_FOUND VERIFICATION_NOT_FOUND"] * (RACERS - 1) + ["ok"]


def test_concurrent_signups_with_one_token_make_exactly_one_account(client: Client) -> None:
    token = client.verify(new_person()).verification_token
    emails = [f"racer-{i}@example.com" for i in range(RACERS)]
    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        outcomes = list(
            pool.map(
                lambda address: outcome_of(lambda: signup_with_token(client, token, address)),
                emails,
            )
        )
    assert outcomes.count("ok") == 1, outcomes
    # A loser either finds the token used or (having checked it just before the winner
    # committed) the person registered; never an internal or database error.
    losing = {
        "UNAUTHENTICATED VERIFICATION_TOKEN_INVALID",
        "ALREADY_EXISTS IDENTITY_ALREADY_REGISTERED",
    }
    assert set(outcomes) - {"ok"} <= losing, outcomes
    # Exactly one account exists: only the winner's email signs in.
    signs_in = [outcome_of(partial(client.login, address)) for address in emails]
    assert signs_in.count("ok") == 1
    assert signs_in.index("ok") == outcomes.index("ok")
    assert set(signs_in) - {"ok"} == {"UNAUTHENTICATED INVALID_CREDENTIALS"}


def test_signup_with_token_only_takes_the_verified_person_and_uses_the_token_once(
    client: Client,
) -> None:
    person = new_person(birth_date="1988-11-02", name="박인증")
    done = client.verify(person)
    assert (done.name, done.birth_date) == ("박인증", "1988-11-02")
    assert done.age == age_today("1988-11-02")

    signed = signup_with_token(client, done.verification_token)
    assert signed.account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
    assert signed.session.access_token

    account = client.accounts.GetAccount(
        account_pb2.GetAccountRequest(), metadata=client.bearer(signed.session.access_token)
    ).account
    assert account.name == "박인증"
    assert account.birth_date == "1988-11-02"
    assert account.phone_number == e164(person.phone)
    assert account.identity_verified

    reuse = failure_of(lambda: signup_with_token(client, done.verification_token))
    assert (reuse.code, reuse.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "VERIFICATION_TOKEN_INVALID",
    )


def test_a_value_differing_from_the_verification_is_a_mismatch(client: Client) -> None:
    person = new_person(birth_date="1988-11-02", name="박인증")
    token = client.verify(person).verification_token
    differing = {"name": "임꺽정", "birth_date": "1988-11-03", "phone_number": "010-9999-0000"}
    for field, value in differing.items():
        failure = failure_of(partial(signup_with_token, client, token, **{field: value}))
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "VERIFICATION_MISMATCH",
        ), field
    # The rejected calls did not use the token: the same values as verified (the phone in
    # another common form) sign up with it.
    digits = person.phone.replace("-", "")
    signed = signup_with_token(
        client,
        token,
        name=person.name,
        birth_date=person.birth_date,
        phone_number=f"+82 {digits[1:3]}-{digits[3:7]}-{digits[7:]}",
    )
    assert signed.account.phone_number == e164(person.phone)


def test_the_same_person_again_is_told_how_the_existing_account_signs_in(
    client: Client,
) -> None:
    person = new_person(name="최중복")
    client.sign_up(person, email="abcdef@example.com")

    again = client.verify(person)  # a new attempt, same seed: same CI/DI
    assert again.duplicate.exists
    assert list(again.duplicate.sign_in_methods) == ["password"]
    assert again.duplicate.masked_email == "ab***@example.com"

    failure = failure_of(
        lambda: signup_with_token(client, again.verification_token, "another@example.com")
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "IDENTITY_ALREADY_REGISTERED",
    )
    assert failure.metadata.get("sign_in_methods") == "password"
    assert failure.metadata.get("masked_email") == "ab***@example.com"
    # Never the full email, the name or the phone number.
    told = " ".join([failure.message, *failure.metadata.values()])
    digits = person.phone.replace("-", "")
    for secret in ("abcdef", person.name, digits, digits[1:], person.phone, person.birth_date):
        assert secret not in told


def test_a_failed_signup_does_not_consume_the_token(client: Client) -> None:
    client.sign_up(new_person(), email="taken-address@example.com")
    person = new_person()
    token = client.verify(person).verification_token

    taken = failure_of(lambda: signup_with_token(client, token, "Taken-Address@example.com"))
    assert (taken.code, taken.reason) == (grpc.StatusCode.ALREADY_EXISTS, "EMAIL_TAKEN")

    signed = signup_with_token(client, token, "fresh-address@example.com")
    assert signed.account.status == common_pb2.ACCOUNT_STATUS_ACTIVE


def test_a_verification_token_expires_after_30_minutes(tmp_path: Path, database_url: str) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    started = clock()
    with serving(make_settings(tmp_path, database_url), clock=clock) as (_, client):
        early, late = new_person(), new_person()
        early_done = client.verify(early)
        late_done = client.verify(late)
        expires_at = late_done.verification_token_expires_at.ToDatetime(tzinfo=UTC)
        assert expires_at == started + timedelta(minutes=30)

        clock.advance(timedelta(minutes=29, seconds=59))
        signed = signup_with_token(client, early_done.verification_token)
        assert signed.account.identity_verified

        clock.advance(timedelta(seconds=2))  # 30 min 1 s after verification
        expired = failure_of(lambda: signup_with_token(client, late_done.verification_token))
        assert (expired.code, expired.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "VERIFICATION_TOKEN_INVALID",
        )


def test_verified_age_is_counted_on_the_calendar_date_in_seoul(
    tmp_path: Path, database_url: str
) -> None:
    # 2026-02-28T15:30Z is already 2026-03-01 in Seoul: born 2012-02-29 has turned 14 there.
    clock = FakeClock(datetime(2026, 2, 28, 14, 59, 59, tzinfo=UTC))
    with serving(make_settings(tmp_path, database_url), clock=clock) as (_, client):
        person = new_person(birth_date="2012-02-29")
        before = client.verify(person)
        assert (before.age, before.is_under_14) == (13, True)
        clock.advance(timedelta(minutes=30, seconds=1))
        after = client.verify(person)
        assert (after.age, after.is_under_14) == (14, False)


def test_a_child_under_14_waits_for_the_guardian(client: Client) -> None:
    child = new_person(birth_date=birth_date_for_age(10), name="정어린")
    done = client.verify(child)
    assert done.is_under_14
    assert done.age == 10

    missing = failure_of(
        lambda: signup_with_token(client, done.verification_token, "child-one@example.com")
    )
    assert (missing.code, missing.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GUARDIAN_INFO_REQUIRED",
    )

    # The guardian confirms by mobile-phone identity verification, after a text: a landline,
    # 070 or 050x contact could never match, and the request could only expire.
    for landline in ("02-123-4567", "070-1234-5678", "0505-123-4567"):
        guardian = common_pb2.Guardian(name="정보호", phone_number=landline)
        refused = failure_of(
            partial(
                signup_with_token,
                client,
                done.verification_token,
                "child-one@example.com",
                guardian=guardian,
            )
        )
        assert (refused.code, refused.reason, refused.violations) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION_FAILED",
            [("guardian.phone_number", "must be a Korean mobile phone number")],
        )

    signed = signup_with_token(
        client,
        done.verification_token,
        "child-one@example.com",
        guardian=common_pb2.Guardian(name="정보호", phone_number="010-2468-1357"),
    )
    assert signed.account.status == common_pb2.ACCOUNT_STATUS_PENDING_GUARDIAN_CONSENT
    assert not signed.HasField("session")
    assert signed.guardian_consent_request.id
    assert signed.guardian_consent_request.HasField("expires_at")

    login = failure_of(lambda: client.login("child-one@example.com"))
    assert (login.code, login.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ACCOUNT_PENDING_GUARDIAN_CONSENT",
    )


def test_age_band_in_access_token_and_introspection(client: Client) -> None:
    for age, band in ((15, "youth"), (30, "adult")):
        person = new_person(birth_date=birth_date_for_age(age))
        signed = client.sign_up(person, email=email())
        assert jwt_claims(signed.session.access_token)["age_band"] == band

        login = client.login(signed.account.email, STRONG_PASSWORD).session
        claims = jwt_claims(login.access_token)
        assert claims["age_band"] == band
        assert person.birth_date not in json.dumps(claims)  # the band, never the birth date
        introspection = client.auth.IntrospectToken(
            auth_pb2.IntrospectTokenRequest(access_token=login.access_token)
        )
        assert introspection.active
        assert introspection.age_band == band


# -- re-join cooldown ---------------------------------------------------------------------------


def hold(app: App, person: Person, *, until: datetime, ci: bool = True, di: bool = True) -> None:
    """What withdrawing leaves behind: the person's CI/DI blind indexes, held until `until`."""
    with app.deps.uow() as uow:
        uow.accounts.add_rejoin_hold(
            str(uuid.uuid4()),
            ci=sandbox_ci(person.seed) if ci else None,
            di=sandbox_di(person.seed) if di else None,
            until=until,
        )
        uow.commit()


@pytest.mark.parametrize("held", ["ci-and-di", "ci-only", "di-only"])
def test_person_in_rejoin_cooldown_is_refused_until_it_ends(
    client: Client, app: App, held: str
) -> None:
    person = new_person()
    until = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    hold(app, person, until=until, ci=held != "di-only", di=held != "ci-only")

    verified = client.verify(person)
    # Flagged as a duplicate, with nothing about the withdrawn account (its data is destroyed).
    assert verified.duplicate.exists
    assert not verified.duplicate.sign_in_methods and not verified.duplicate.masked_email
    failure = failure_of(lambda: client.accounts.SignUp(client.signup_request(person)))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "IDENTITY_ALREADY_REGISTERED",
    )
    assert failure.metadata["rejoin_allowed_after"].endswith("Z")
    assert datetime.fromisoformat(failure.metadata["rejoin_allowed_after"]) == until
    assert "sign_in_methods" not in failure.metadata or not failure.metadata["sign_in_methods"]

    # Once the cooldown is over the same person signs up again.
    with app.engine.begin() as connection:
        connection.execute(
            update(rejoin_holds).values(hold_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert not client.verify(person).duplicate.exists
    signed = client.accounts.SignUp(client.signup_request(person))
    assert signed.account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
