"""Hypothesis drives SignUp and PasswordLogin with hostile input: no INTERNAL, always ErrorInfo."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, assume, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from idservice.bootstrap import App, build_app
from idservice.entrypoints.grpc.server import create_server
from idservice.v1 import account_pb2, auth_pb2
from tests.conftest import make_settings
from tests.support.client import STRONG_PASSWORD, Client, RpcFailure, decode, new_person

RPC_TIMEOUT = 30.0
ERROR_DOMAIN = "idservice.v1"
# The server refuses messages over 64 KiB before any handler runs; stay under it.
MAX_REQUEST_BYTES = 60_000
FRESH_TOKEN = "<fresh verification token>"
UNIQUE_EMAIL = "<unique email>"
UNIQUE_KEY = "<unique idempotency key>"
KNOWN_EMAIL = "Known.Person@Example.com"

C = grpc.StatusCode
# contract.md §3, copied here on purpose: the test checks the service against the contract.
CONTRACT_REASONS: dict[str, grpc.StatusCode] = {
    "VALIDATION_FAILED": C.INVALID_ARGUMENT,
    **dict.fromkeys(
        [
            "EMAIL_TAKEN",
            "IDENTITY_ALREADY_REGISTERED",
            "SNS_IDENTITY_ALREADY_LINKED",
            "IDEMPOTENCY_KEY_REUSED",
        ],
        C.ALREADY_EXISTS,
    ),
    **dict.fromkeys(
        [
            "IDENTITY_VERIFICATION_REQUIRED",
            "VERIFICATION_MISMATCH",
            "GUARDIAN_INFO_REQUIRED",
            "GUARDIAN_NOT_ADULT",
            "GUARDIAN_SAME_PERSON",
            "GUARDIAN_MISMATCH",
            "CONSENT_REQUEST_EXPIRED",
            "CONSENT_REQUEST_CLOSED",
            "ACCOUNT_PENDING_GUARDIAN_CONSENT",
            "TERMS_VERSION_MISMATCH",
            "REJOIN_COOLDOWN",
            "LAST_SIGN_IN_METHOD",
            "PROVIDER_NOT_CONFIGURED",
            "VERIFICATION_NOT_COMPLETED",
        ],
        C.FAILED_PRECONDITION,
    ),
    **dict.fromkeys(
        [
            "INVALID_CREDENTIALS",
            "TOKEN_INVALID",
            "TOKEN_EXPIRED",
            "SNS_TOKEN_INVALID",
            "VERIFICATION_TOKEN_INVALID",
            "REAUTHENTICATION_REQUIRED",
        ],
        C.UNAUTHENTICATED,
    ),
    **dict.fromkeys(
        ["ACCOUNT_LOCKED", "NOT_GUARDIAN", "CONSENT_CODE_INVALID"], C.PERMISSION_DENIED
    ),
    **dict.fromkeys(["CONSENT_REQUEST_NOT_FOUND", "VERIFICATION_NOT_FOUND"], C.NOT_FOUND),
    **dict.fromkeys(["RATE_LIMITED", "SERVER_BUSY"], C.RESOURCE_EXHAUSTED),
    **dict.fromkeys(["UPSTREAM_UNAVAILABLE", "DATABASE_UNAVAILABLE"], C.UNAVAILABLE),
}

FUZZ = hypothesis_settings(
    max_examples=150,
    deadline=None,
    database=None,  # the tree is shared: leave no example database behind
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# -- strategies ------------------------------------------------------------------------------

# Any code point protobuf can carry (UTF-8): everything but lone surrogates.
ANY_CHAR = st.characters(exclude_categories=["Cs"])
SHORT_TEXT = st.text(ANY_CHAR, max_size=40)
ANY_TEXT = st.text(ANY_CHAR, max_size=300)
# Far beyond every field limit, built by repetition so generation stays cheap.
HUGE_TEXT = st.builds(
    lambda piece, times: piece * times,
    st.text(ANY_CHAR, min_size=1, max_size=6),
    st.integers(min_value=300, max_value=3000),
)
WITH_NUL = st.builds(lambda a, b: f"{a}\x00{b}", SHORT_TEXT, SHORT_TEXT)
FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")
RRN_LIKE = st.one_of(
    st.sampled_from(["900101-1234567", "9001011234567", "９００１０１－１２３４５６７"]),
    st.builds(
        lambda day, separator, rest, wide: f"{day:%y%m%d}{separator}{rest}".translate(
            FULL_WIDTH if wide else {}
        ),
        st.dates(date(1900, 1, 1), date(2099, 12, 31)),
        st.sampled_from(["", "-", " ", "\u2013", "\u2212"]),
        st.integers(min_value=1_000_000, max_value=8_999_999).map(str),
        st.booleans(),
    ),
    st.builds(lambda a, rrn, b: f"{a}{rrn}{b}", SHORT_TEXT, st.just("850505-2345678"), SHORT_TEXT),
)


def hostile(plausible: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A field's plausible values mixed with arbitrary, huge, NUL-bearing and RRN-like text."""
    return st.one_of(plausible, st.just(""), ANY_TEXT, HUGE_TEXT, WITH_NUL, RRN_LIKE)


PLAUSIBLE_EMAILS = st.one_of(
    st.just(UNIQUE_EMAIL),
    st.emails(),
    st.sampled_from(["hong@example.com", "Hong.GilDong@Example.com", "홍길동@예시.한국", "a@b.co"]),
)
STRONG_PASSWORDS = st.sampled_from(
    [STRONG_PASSWORD, "violet kayak drifts under copper moon", "그린 사과 열두 개가 굴러간다"]
)
PLAUSIBLE_NAMES = st.sampled_from(["홍길동", "Kim Minsu", "마이클·조던", "O’Brien", "김 민수"])
PLAUSIBLE_PHONES = st.sampled_from(
    ["010-1234-5678", "01012345678", "010 9876 5432", "+82 10-1234-5678", "(02) 123-4567"]
)
# An adult, a youth and a child under 14 (who needs a guardian).
BIRTH_DATES = st.sampled_from(["1990-01-15", "2010-06-01", "2016-03-03"])
PLAUSIBLE_DATES = st.one_of(
    BIRTH_DATES,
    st.dates(date(1850, 1, 1), date(2100, 12, 31)).map(date.isoformat),
    st.sampled_from(["2023-02-29", "1990-13-01", "1990-1-1", "90-01-01"]),
)
PLAUSIBLE_TERMS = st.sampled_from(["2024-05-15", "2001-01-01"])
VALID_CONSENTS = st.fixed_dictionaries(
    {"terms_version": st.just("2024-05-15"), "privacy_policy_version": st.just("2024-05-15")},
    optional={"marketing_opt_in": st.booleans()},
)
CONSENTS = st.fixed_dictionaries(
    {},
    optional={
        "terms_version": hostile(PLAUSIBLE_TERMS),
        "privacy_policy_version": hostile(PLAUSIBLE_TERMS),
        "marketing_opt_in": st.booleans(),
    },
)
GUARDIAN = st.fixed_dictionaries(
    {}, optional={"name": hostile(PLAUSIBLE_NAMES), "phone_number": hostile(PLAUSIBLE_PHONES)}
)
# Every SignUp field with its hostile values.
HOSTILE_SIGNUP_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "idempotency_key": hostile(st.sampled_from(["key-1", "key-2", "1700000000000"])),
    "email": hostile(PLAUSIBLE_EMAILS),
    "password": hostile(st.one_of(STRONG_PASSWORDS, st.sampled_from(["password123", "short"]))),
    "sns_signup_ticket": hostile(st.just("ticket")),
    "name": hostile(PLAUSIBLE_NAMES),
    "phone_number": hostile(PLAUSIBLE_PHONES),
    "birth_date": hostile(PLAUSIBLE_DATES),
    "verification_token": st.one_of(st.just(FRESH_TOKEN), hostile(st.just("token"))),
    "consents": CONSENTS,
    "guardian": GUARDIAN,
}
# Any combination of fields, each of them hostile.
ARBITRARY_SIGNUPS = st.fixed_dictionaries({}, optional=HOSTILE_SIGNUP_FIELDS)


@st.composite
def mostly_valid_signups(draw: st.DrawFn) -> dict[str, Any]:
    """A valid SignUp (verified or declared, with or without a guardian and a key), then up to
    three fields dropped or replaced by hostile values: reaches the code past validation."""
    fields: dict[str, Any] = {
        "email": draw(PLAUSIBLE_EMAILS),
        "password": draw(STRONG_PASSWORDS),
        "consents": draw(VALID_CONSENTS),
    }
    if draw(st.booleans()):
        fields["verification_token"] = FRESH_TOKEN
    else:
        fields["name"] = draw(PLAUSIBLE_NAMES)
        fields["phone_number"] = draw(PLAUSIBLE_PHONES)
        fields["birth_date"] = draw(BIRTH_DATES)
    if draw(st.booleans()):
        fields["guardian"] = {
            "name": draw(PLAUSIBLE_NAMES),
            "phone_number": draw(PLAUSIBLE_PHONES),
        }
    if draw(st.booleans()):
        fields["idempotency_key"] = draw(st.sampled_from([UNIQUE_KEY, UNIQUE_KEY, "key-1"]))
    spoiled = draw(
        st.lists(st.sampled_from(sorted(HOSTILE_SIGNUP_FIELDS)), max_size=3, unique=True)
    )
    for name in spoiled:
        if draw(st.booleans()):
            fields.pop(name, None)
        else:
            fields[name] = draw(HOSTILE_SIGNUP_FIELDS[name])
    return fields


SIGNUP_FIELDS = st.one_of(mostly_valid_signups(), ARBITRARY_SIGNUPS)
LOGIN_EMAILS = st.one_of(
    st.sampled_from([KNOWN_EMAIL, KNOWN_EMAIL.lower(), KNOWN_EMAIL.upper()]),
    hostile(PLAUSIBLE_EMAILS),
)
LOGIN_PASSWORDS = st.one_of(st.just(STRONG_PASSWORD), hostile(STRONG_PASSWORDS))

# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["verification-required", "verification-optional"])
def sqlite_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    """A server on a fresh SQLite database (SQLite only, to keep the fuzzing quick)."""
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'fuzz.db'}",
        require_identity_verification=request.param,
    )
    app: App = build_app(settings)
    try:
        running = create_server(app, "127.0.0.1:0")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                yield Client(channel, terms_version=settings.terms_version)
        finally:
            running.halt()
    finally:
        app.close()


# -- checks ----------------------------------------------------------------------------------


def check_contract_error(error: grpc.RpcError) -> None:
    """The error is one of contract §3: right code for its reason, ErrorInfo in our domain."""
    failure: RpcFailure = decode(error)
    event(f"{failure.code.name} {failure.reason}")
    assert failure.code not in (C.INTERNAL, C.UNKNOWN), failure
    assert failure.domain == ERROR_DOMAIN, failure
    assert failure.reason in CONTRACT_REASONS, failure
    assert failure.code == CONTRACT_REASONS[failure.reason], failure
    if failure.reason == "VALIDATION_FAILED":
        assert failure.fields, failure
    if failure.code == C.RESOURCE_EXHAUSTED:
        assert failure.retry_seconds is not None, failure


def build_signup(client: Client, fields: dict[str, Any], birth: str) -> account_pb2.SignUpRequest:
    """Fill the placeholders: a fresh verification (born on `birth`), a new email and key."""
    values = dict(fields)
    if values.get("verification_token") == FRESH_TOKEN:
        verified = client.verify(new_person(birth_date=birth))
        values["verification_token"] = verified.verification_token
    if values.get("email") == UNIQUE_EMAIL:
        values["email"] = f"user-{uuid.uuid4().hex[:12]}@example.com"
    if values.get("idempotency_key") == UNIQUE_KEY:
        values["idempotency_key"] = f"signup-{uuid.uuid4()}"
    return account_pb2.SignUpRequest(**values)


# -- properties -------------------------------------------------------------------------------


@FUZZ
@given(fields=SIGNUP_FIELDS, birth=BIRTH_DATES)
def test_signup_never_fails_internally(
    sqlite_client: Client, fields: dict[str, Any], birth: str
) -> None:
    request = build_signup(sqlite_client, fields, birth)
    assume(request.ByteSize() < MAX_REQUEST_BYTES)
    try:
        sqlite_client.accounts.SignUp(request, timeout=RPC_TIMEOUT)
        event("OK")
    except grpc.RpcError as error:
        check_contract_error(error)


@pytest.fixture
def known_email(sqlite_client: Client) -> str:
    """An account that exists, so some logins reach the password check and the lockout."""
    sqlite_client.sign_up(new_person(), email=KNOWN_EMAIL)
    return KNOWN_EMAIL


@FUZZ
@given(email=LOGIN_EMAILS, password=LOGIN_PASSWORDS)
def test_password_login_never_fails_internally(
    sqlite_client: Client, known_email: str, email: str, password: str
) -> None:
    request = auth_pb2.PasswordLoginRequest(email=email, password=password)
    assume(request.ByteSize() < MAX_REQUEST_BYTES)
    try:
        sqlite_client.auth.PasswordLogin(request, timeout=RPC_TIMEOUT)
        event("OK")
    except grpc.RpcError as error:
        check_contract_error(error)
