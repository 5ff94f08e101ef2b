"""Identity providers end to end: PortOne over real HTTP to the stand-in, and the sandbox."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from idservice.adapters.identity.portone import PortOneIdentityProvider
from idservice.adapters.identity.sandbox import SandboxIdentityProvider, sandbox_ci, sandbox_di
from idservice.domain.errors import DomainError, Reason
from idservice.domain.identity import (
    MAX_IDENTITY_KEY_LENGTH,
    InvalidVerifiedPersonError,
    VerifiedPerson,
    check_identity_keys,
    check_verification_id,
)
from idservice.service_layer.provider_answers import validate_provider_person
from tests.fakes.portone import PortOneStandIn, verified_body

SECRET = "test-portone-secret-Zq8"
STORE_ID = "store-4f1c2a7e"
NAME = "홍길동"
PHONE = "01098761234"
BIRTH = "1990-01-15"
CI = base64.b64encode(b"c" * 64).decode()  # 88 characters, like a real CI
DI = "d1" * 32  # 64 characters, like a common DI
# Plenty for loopback; the slow case passes its own short budget.
TIMEOUT = 5.0
# Short so the retry tests stay fast; the budget, not the backoff, is what they exercise.
BACKOFF = 0.01


@pytest.fixture
def portone() -> Iterator[PortOneStandIn]:
    with PortOneStandIn(secret=SECRET, store_id=STORE_ID) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def http_client() -> Iterator[httpx.Client]:
    # One client for the module: building one loads a CA bundle (~0.1 s), which would dominate
    # the run. The adapter's own client is exercised by the logging and close() tests.
    with httpx.Client() as client:
        yield client


@pytest.fixture
def make_provider(
    portone: PortOneStandIn, http_client: httpx.Client
) -> Callable[..., PortOneIdentityProvider]:
    def make(**overrides: Any) -> PortOneIdentityProvider:
        settings: dict[str, Any] = {
            "api_base": portone.base_url,
            "api_secret": SECRET,
            "store_id": None,
            "client": http_client,
            "backoff_base": BACKOFF,
        }
        settings.update(overrides)
        return PortOneIdentityProvider(**settings)

    return make


@pytest.fixture
def provider(
    make_provider: Callable[..., PortOneIdentityProvider],
) -> Iterator[PortOneIdentityProvider]:
    with make_provider() as adapter:
        yield adapter


def add_person(portone: PortOneStandIn, verification_id: str, **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "name": NAME,
        "phone": PHONE,
        "birth_date": BIRTH,
        "ci": CI,
        "di": DI,
    }
    fields.update(overrides)
    portone.add_verified(verification_id, **fields)


def reason_of(provider: PortOneIdentityProvider, verification_id: str, **kw: Any) -> Reason:
    with pytest.raises(DomainError) as caught:
        provider.fetch(verification_id, timeout=kw.pop("timeout", TIMEOUT))
    return caught.value.reason


# -- PortOne: outcomes ------------------------------------------------------------------------


def test_verified_maps_every_field(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    add_person(portone, "iv-ok", gender="FEMALE", is_foreigner=True)

    person = provider.fetch("iv-ok", timeout=TIMEOUT)

    assert person == VerifiedPerson(
        name=NAME,
        phone_number=PHONE,
        birth_date=date(1990, 1, 15),
        gender="FEMALE",
        is_foreigner=True,
        ci=CI,
        di=DI,
    )


def test_ready_is_not_completed(portone: PortOneStandIn, provider: PortOneIdentityProvider) -> None:
    portone.add_status("iv-ready", "READY")
    assert reason_of(provider, "iv-ready") is Reason.VERIFICATION_NOT_COMPLETED


def test_failed_is_not_completed(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    """The contract requires VERIFIED: FAILED is not a completed verification either."""
    portone.add_status("iv-failed", "FAILED")
    assert reason_of(provider, "iv-failed") is Reason.VERIFICATION_NOT_COMPLETED


def test_unknown_id_is_not_found(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    assert reason_of(provider, "iv-nobody") is Reason.VERIFICATION_NOT_FOUND
    assert len(portone.requests) == 1  # a 404 is an answer, not retried


def test_404_of_another_type_is_not_found_with_a_warning(
    portone: PortOneStandIn, provider: PortOneIdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    portone.add_response("iv-x", 404, {"type": "STORE_NOT_FOUND", "message": "no store"})
    assert reason_of(provider, "iv-x") is Reason.VERIFICATION_NOT_FOUND
    assert any("STORE_NOT_FOUND" in r.getMessage() for r in caplog.records)


def test_wrong_secret_is_unavailable_and_logged_as_error(
    portone: PortOneStandIn,
    make_provider: Callable[..., PortOneIdentityProvider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    add_person(portone, "iv-ok")
    with make_provider(api_secret="wrong-secret") as adapter:
        assert reason_of(adapter, "iv-ok") is Reason.UPSTREAM_UNAVAILABLE

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "PortOne rejected the API secret (check IDSERVICE_PORTONE_API_SECRET)" in (
        errors[0].getMessage()
    )
    assert len(portone.requests) == 1  # a bad secret is not retried


def test_forbidden_store_is_unavailable(
    portone: PortOneStandIn, make_provider: Callable[..., PortOneIdentityProvider]
) -> None:
    add_person(portone, "iv-ok")
    with make_provider(store_id="store-of-someone-else") as adapter:
        assert reason_of(adapter, "iv-ok") is Reason.UPSTREAM_UNAVAILABLE


def test_slow_upstream_is_unavailable_within_the_budget(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    add_person(portone, "iv-slow")
    portone.add_slow("iv-slow", 30.0)  # the stand-in wakes it when it stops

    assert reason_of(provider, "iv-slow", timeout=0.3) is Reason.UPSTREAM_UNAVAILABLE


def test_no_budget_left_means_no_request(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    add_person(portone, "iv-ok")
    assert reason_of(provider, "iv-ok", timeout=0.0) is Reason.UPSTREAM_UNAVAILABLE
    assert portone.requests == []


@pytest.mark.parametrize("http_status", [500, 502, 503])
def test_5xx_then_success_is_retried(
    portone: PortOneStandIn, provider: PortOneIdentityProvider, http_status: int
) -> None:
    add_person(portone, "iv-flaky")
    portone.add_failure("iv-flaky", http_status, times=2)

    person = provider.fetch("iv-flaky", timeout=TIMEOUT)

    assert person.ci == CI
    assert len(portone.requests_for("iv-flaky")) == 3


def test_5xx_always_is_unavailable_after_max_attempts(
    portone: PortOneStandIn, make_provider: Callable[..., PortOneIdentityProvider]
) -> None:
    add_person(portone, "iv-down")
    portone.add_failure("iv-down", 500)
    with make_provider(max_attempts=4) as adapter:
        assert reason_of(adapter, "iv-down") is Reason.UPSTREAM_UNAVAILABLE
    assert len(portone.requests_for("iv-down")) == 4


def test_connection_refused_is_unavailable(
    make_provider: Callable[..., PortOneIdentityProvider],
) -> None:
    stand_in = PortOneStandIn(secret=SECRET)
    dead_base = stand_in.base_url
    stand_in.stop()  # the port is now closed
    with make_provider(api_base=dead_base) as adapter:
        assert reason_of(adapter, "iv-ok") is Reason.UPSTREAM_UNAVAILABLE


@pytest.mark.parametrize("http_status", [400, 409, 429])
def test_other_4xx_is_unavailable_without_retry(
    portone: PortOneStandIn, provider: PortOneIdentityProvider, http_status: int
) -> None:
    portone.add_failure("iv-4xx", http_status)
    assert reason_of(provider, "iv-4xx") is Reason.UPSTREAM_UNAVAILABLE
    assert len(portone.requests) == 1


def test_ci_only(portone: PortOneStandIn, provider: PortOneIdentityProvider) -> None:
    add_person(portone, "iv-ci", di=None)
    person = provider.fetch("iv-ci", timeout=TIMEOUT)
    assert (person.ci, person.di) == (CI, None)


def test_di_only(portone: PortOneStandIn, provider: PortOneIdentityProvider) -> None:
    add_person(portone, "iv-di", ci=None)
    person = provider.fetch("iv-di", timeout=TIMEOUT)
    assert (person.ci, person.di) == (None, DI)


def test_neither_ci_nor_di_is_unavailable(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    add_person(portone, "iv-none", ci=None, di=None)
    assert reason_of(provider, "iv-none") is Reason.UPSTREAM_UNAVAILABLE


def test_empty_ci_counts_as_absent(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    add_person(portone, "iv-empty", ci="")
    assert provider.fetch("iv-empty", timeout=TIMEOUT).ci is None


def test_unknown_gender_is_dropped(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    add_person(portone, "iv-g", gender="UNSPECIFIED")
    assert provider.fetch("iv-g", timeout=TIMEOUT).gender is None


def test_missing_gender_and_is_foreigner(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    body = verified_body("iv-min", name=NAME, phone=PHONE, birth_date=BIRTH, ci=CI, di=None)
    body["verifiedCustomer"].pop("gender")
    body["verifiedCustomer"].pop("isForeigner")
    portone.add_response("iv-min", 200, body)

    person = provider.fetch("iv-min", timeout=TIMEOUT)

    assert (person.gender, person.is_foreigner) == (None, False)


_DROP = object()


def _customer_with(**changes: Any) -> dict[str, Any]:
    body = verified_body("iv-bad", name=NAME, phone=PHONE, birth_date=BIRTH, ci=CI, di=DI)
    for key, value in changes.items():
        if value is _DROP:
            body["verifiedCustomer"].pop(key)
        else:
            body["verifiedCustomer"][key] = value
    return body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>gateway</html>", id="not-json"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-past-the-parser-limit"),
        pytest.param([1, 2], id="not-an-object"),
        pytest.param({"status": "CANCELLED", "id": "iv-bad"}, id="unknown-status"),
        pytest.param({"status": "VERIFIED", "id": "iv-bad"}, id="no-verified-customer"),
        pytest.param(
            {**_customer_with(), "id": "iv-someone-else"},
            id="another-verification",
        ),
        pytest.param(_customer_with(name=""), id="empty-name"),
        pytest.param(_customer_with(phoneNumber=_DROP), id="no-phone"),
        pytest.param(_customer_with(birthDate="1990-02-30"), id="impossible-birth-date"),
        pytest.param(_customer_with(birthDate="19900115"), id="birth-date-format"),
        pytest.param(_customer_with(isForeigner="N"), id="is-foreigner-not-bool"),
        pytest.param(_customer_with(ci=12345), id="ci-not-a-string"),
        pytest.param(_customer_with(ci="x" * (MAX_IDENTITY_KEY_LENGTH + 1)), id="ci-too-long"),
        pytest.param(_customer_with(di="a\nb"), id="di-control-character"),
    ],
)
def test_malformed_verified_body_is_unavailable(
    portone: PortOneStandIn, provider: PortOneIdentityProvider, body: Any
) -> None:
    portone.add_response("iv-bad", 200, body)
    assert reason_of(provider, "iv-bad") is Reason.UPSTREAM_UNAVAILABLE
    assert len(portone.requests) == 1  # a wrong shape will not fix itself on retry


# Every place of the answer that holds a value, with each JSON type it must not have.
_WRONG_TYPES: dict[str, Any] = {
    "object": {"value": "MALE"},
    "array": ["MALE"],
    "number": 19900115,
    "float": 1.5,
    "true": True,
    "false": False,
}
_STRING_FIELDS = ("name", "phoneNumber", "birthDate", "gender", "ci", "di")


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        (field, kind)
        for field in [*_STRING_FIELDS, "isForeigner", "verifiedCustomer", "status"]
        for kind in _WRONG_TYPES
        if not (field == "isForeigner" and kind in ("true", "false"))
    ],
)
def test_wrong_json_types_anywhere_are_unavailable(
    portone: PortOneStandIn, provider: PortOneIdentityProvider, field: str, kind: str
) -> None:
    body = _customer_with()
    if field in ("verifiedCustomer", "status"):
        body[field] = _WRONG_TYPES[kind]
    else:
        body["verifiedCustomer"][field] = _WRONG_TYPES[kind]
    portone.add_response("iv-bad", 200, body)

    assert reason_of(provider, "iv-bad") is Reason.UPSTREAM_UNAVAILABLE


# -- provider answers are validated like caller input ------------------------------------------

TODAY = date(2026, 3, 2)


def bad_answer_cases() -> list[Any]:
    """(field, verifiedCustomer changes): answers PortOne's shape allows but the rules refuse."""
    return [
        pytest.param("birth_date", {"birthDate": "0001-01-01"}, id="born-in-year-1"),
        pytest.param("birth_date", {"birthDate": "2999-01-01"}, id="born-in-2999"),
        pytest.param("birth_date", {"birthDate": "1899-12-31"}, id="born-before-1900"),
        pytest.param("birth_date", {"birthDate": "2026-03-03"}, id="born-tomorrow-in-seoul"),
        pytest.param("name", {"name": "가" * 5000}, id="name-of-5000-characters"),
        pytest.param("name", {"name": "홍\x00길\n동"}, id="name-with-nul-and-newline"),
        pytest.param("name", {"name": "홍길동\n"}, id="name-with-newline"),
        pytest.param("name", {"name": "홍길동\u200b"}, id="name-with-format-character"),
        pytest.param("name", {"name": "900101-1234567"}, id="name-is-an-rrn"),
        pytest.param("name", {"name": "홍길동 9001011234567"}, id="name-holds-an-rrn"),
        pytest.param("name", {"name": "홍길동2"}, id="name-with-digits"),
        pytest.param("name", {"name": "   "}, id="name-blank"),
        pytest.param("phone_number", {"phoneNumber": "900115-1234567"}, id="rrn-shaped-phone"),
        pytest.param("phone_number", {"phoneNumber": "9001151234567"}, id="rrn-digits-phone"),
        pytest.param("phone_number", {"phoneNumber": "call-me"}, id="phone-of-letters"),
        pytest.param("phone_number", {"phoneNumber": "0" * 40}, id="phone-too-long"),
    ]


@pytest.mark.parametrize(("field", "changes"), bad_answer_cases())
def test_a_bad_provider_answer_is_unavailable_and_logged_by_field(
    portone: PortOneStandIn,
    provider: PortOneIdentityProvider,
    caplog: pytest.LogCaptureFixture,
    field: str,
    changes: dict[str, str],
) -> None:
    caplog.set_level(logging.DEBUG)
    portone.add_response("iv-bad", 200, _customer_with(**changes))

    with pytest.raises(DomainError) as caught:
        validate_provider_person(provider.fetch("iv-bad", timeout=TIMEOUT), today=TODAY)

    assert caught.value.reason is Reason.UPSTREAM_UNAVAILABLE
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(field in r.getMessage() for r in warnings), caplog.text
    for value in changes.values():
        assert not value.strip() or value not in caplog.text
        assert value not in f"{caught.value} {caught.value.metadata}"


def test_a_lone_surrogate_in_the_name_is_unavailable(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    body = json.dumps(_customer_with(name="NAME-HERE")).replace("NAME-HERE", "\\ud800")
    portone.add_response("iv-bad", 200, body.encode())
    with pytest.raises(DomainError) as caught:
        validate_provider_person(provider.fetch("iv-bad", timeout=TIMEOUT), today=TODAY)
    assert caught.value.reason is Reason.UPSTREAM_UNAVAILABLE


def test_a_good_provider_answer_is_normalised(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    decomposed = unicodedata.normalize("NFD", NAME)
    add_person(portone, "iv-ok", name=f"  {decomposed}  ", phone=PHONE, gender="FEMALE")

    person = validate_provider_person(provider.fetch("iv-ok", timeout=TIMEOUT), today=TODAY)

    assert person == VerifiedPerson(
        name=NAME,
        phone_number="+82" + PHONE[1:],
        birth_date=date(1990, 1, 15),
        gender="FEMALE",
        is_foreigner=False,
        ci=CI,
        di=DI,
    )


def test_an_unassigned_but_well_formed_verified_phone_is_kept() -> None:
    # The carrier verified it; the library's metadata may lag (require_valid=False).
    person = _person(phone_number="01059751234")
    assert validate_provider_person(person, today=TODAY).phone_number == "+821059751234"


def test_a_digit_run_in_a_di_is_not_taken_for_an_rrn() -> None:
    di = "ab" + "9001011234567" + "c" * 49  # 64 characters, 13 digits shaped like an RRN
    assert validate_provider_person(_person(di=di), today=TODAY).di == di


@pytest.mark.parametrize("gender", ["900101-1234567", "UNSPECIFIED"])
def test_a_gender_other_than_the_known_codes_is_refused(gender: str) -> None:
    # The PortOne adapter drops unknown codes; another provider's adapter may not.
    with pytest.raises(DomainError) as caught:
        validate_provider_person(_person(gender=gender), today=TODAY)
    assert caught.value.reason is Reason.UPSTREAM_UNAVAILABLE


def test_sandbox_persons_are_caller_input() -> None:
    person = _person(name="홍길동2")
    with pytest.raises(DomainError) as caught:
        validate_provider_person(person, today=TODAY, from_caller=True)
    assert caught.value.reason is Reason.VALIDATION_FAILED
    assert [v.field for v in caught.value.violations] == ["verification_id"]


# -- PortOne: the request on the wire ---------------------------------------------------------


def test_authorization_header_and_path(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    add_person(portone, "iv-ok")
    provider.fetch("iv-ok", timeout=TIMEOUT)

    (request,) = portone.requests
    assert request.method == "GET"
    assert request.path == "/identity-verifications/iv-ok"
    assert request.headers["authorization"] == f"PortOne {SECRET}"
    assert "storeId" not in request.query


def test_store_id_is_sent_when_configured(
    portone: PortOneStandIn, make_provider: Callable[..., PortOneIdentityProvider]
) -> None:
    add_person(portone, "iv-ok")
    # A trailing slash on the base is tolerated (a common way to write the setting).
    with make_provider(api_base=portone.base_url + "/", store_id=STORE_ID) as adapter:
        adapter.fetch("iv-ok", timeout=TIMEOUT)

    (request,) = portone.requests
    assert request.query["storeId"] == [STORE_ID]
    assert request.path == "/identity-verifications/iv-ok"


def test_id_is_one_quoted_path_segment(
    portone: PortOneStandIn, provider: PortOneIdentityProvider
) -> None:
    odd_id = "iv:한글%2F&x=1;.."
    add_person(portone, odd_id)

    provider.fetch(odd_id, timeout=TIMEOUT)

    (request,) = portone.requests
    assert request.verification_id == odd_id
    assert request.query == {}


@pytest.mark.parametrize(
    "verification_id",
    ["", "a/b", "a?b", "a#b", "a b", "a\tb", "a\x00b", "x" * 201, ".", ".."],
)
def test_malformed_id_is_invalid_without_a_request(
    portone: PortOneStandIn, provider: PortOneIdentityProvider, verification_id: str
) -> None:
    assert reason_of(provider, verification_id) is Reason.VALIDATION_FAILED
    assert portone.requests == []


def test_id_of_200_characters_is_accepted() -> None:
    assert check_verification_id("x" * 200) == "x" * 200


def test_close_closes_only_an_owned_client(portone: PortOneStandIn) -> None:
    owned = PortOneIdentityProvider(api_base=portone.base_url, api_secret=SECRET, store_id=None)
    owned.close()
    with httpx.Client() as injected:
        adapter = PortOneIdentityProvider(
            api_base=portone.base_url, api_secret=SECRET, store_id=None, client=injected
        )
        adapter.close()
        assert not injected.is_closed
    assert SECRET not in repr(owned)


def test_logs_and_errors_hold_no_personal_data_or_secret(
    portone: PortOneStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    add_person(portone, "iv-ok")
    add_person(portone, "iv-flaky")
    portone.add_failure("iv-flaky", 503, times=1)
    add_person(portone, "iv-none", ci=None, di=None)
    add_person(portone, "iv-gender", gender="X")
    portone.add_response("iv-long", 200, _customer_with(ci="y" * 200))
    portone.add_response("iv-404", 404, {"type": f"{NAME} {PHONE}", "message": CI})
    outcomes: list[str] = []
    with (
        PortOneIdentityProvider(
            api_base=portone.base_url, api_secret=SECRET, store_id=STORE_ID, backoff_base=BACKOFF
        ) as good,
        PortOneIdentityProvider(
            api_base=portone.base_url, api_secret=SECRET + "-wrong", store_id=None
        ) as bad,
    ):
        for adapter, verification_id in [
            (good, "iv-ok"),
            (good, "iv-flaky"),
            (good, "iv-none"),
            (good, "iv-gender"),
            (good, "iv-long"),
            (good, "iv-404"),
            (bad, "iv-ok"),
        ]:
            try:
                outcomes.append(repr(adapter.fetch(verification_id, timeout=TIMEOUT)))
            except DomainError as error:
                outcomes.append(f"{error!r} {error} {error.metadata}")

    assert any("VerifiedPerson" in o for o in outcomes)
    assert any(r.levelno >= logging.WARNING for r in caplog.records)
    everything = caplog.text + "\n".join(outcomes)
    for secret in (NAME, PHONE, BIRTH, CI, DI, SECRET, "y" * 129):
        assert secret not in everything


# -- domain: VerifiedPerson -------------------------------------------------------------------


def _person(**changes: Any) -> VerifiedPerson:
    fields: dict[str, Any] = {
        "name": NAME,
        "phone_number": PHONE,
        "birth_date": date(1990, 1, 15),
        "gender": None,
        "is_foreigner": False,
        "ci": CI,
        "di": DI,
    }
    fields.update(changes)
    return VerifiedPerson(**fields)


def test_repr_shows_only_presence_of_ci_and_di() -> None:
    assert repr(_person()) == "VerifiedPerson(ci=present, di=present)"
    assert str(_person(di=None)) == "VerifiedPerson(ci=present, di=absent)"


@pytest.mark.parametrize(
    ("ci", "di"),
    [(None, None), ("", DI), (CI, "z" * (MAX_IDENTITY_KEY_LENGTH + 1)), ("a\x1fb", None)],
)
def test_identity_keys_rules(ci: str | None, di: str | None) -> None:
    with pytest.raises(InvalidVerifiedPersonError) as caught:
        check_identity_keys(ci, di)
    assert CI not in str(caught.value) and DI not in str(caught.value)


def test_identity_keys_of_128_characters_are_accepted() -> None:
    check_identity_keys("c" * MAX_IDENTITY_KEY_LENGTH, None)


# -- sandbox ----------------------------------------------------------------------------------

# 2026-03-01T15:30Z is already 2026-03-02 in Seoul (korea-rules.md Age 3).
NOW = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)


@pytest.fixture
def sandbox() -> SandboxIdentityProvider:
    return SandboxIdentityProvider(clock=lambda: NOW)


def test_sandbox_reads_the_person_from_the_id(sandbox: SandboxIdentityProvider) -> None:
    person = sandbox.fetch(f"sandbox:{NAME}:2012-02-29:010-9876-1234:seed-1", timeout=1.0)

    assert person.name == NAME
    assert person.birth_date == date(2012, 2, 29)
    assert person.phone_number == "010-9876-1234"  # passed through, normalised by the caller
    assert (person.gender, person.is_foreigner) == (None, False)
    assert sandbox.name == "sandbox"


def test_sandbox_ci_di_depend_on_the_seed_alone(sandbox: SandboxIdentityProvider) -> None:
    first = sandbox.fetch(f"sandbox:{NAME}:1990-01-15:{PHONE}:seed-1", timeout=1.0)
    again = sandbox.fetch(f"sandbox:{NAME}:1990-01-15:{PHONE}:seed-1:2", timeout=1.0)
    renamed = sandbox.fetch("sandbox:김철수:1985-05-05:+821011112222:seed-1:3", timeout=1.0)
    other = sandbox.fetch(f"sandbox:{NAME}:1990-01-15:{PHONE}:seed-2", timeout=1.0)

    assert (first.ci, first.di) == (again.ci, again.di) == (renamed.ci, renamed.di)
    assert first.ci != other.ci and first.di != other.di
    assert first.ci is not None and first.di is not None
    assert len(first.ci) == 88 and len(base64.b64decode(first.ci, validate=True)) == 64
    assert len(first.di) == 64 and int(first.di, 16) >= 0
    assert first.ci != first.di


def test_sandbox_derivation_follows_the_documented_formula() -> None:
    # Other tools (load tests, e2e) predict sandbox CI/DI; the formula is part of the contract.
    seed = "seed-1"
    ci = base64.b64encode(hashlib.sha512(b"idservice-sandbox-ci\0" + seed.encode()).digest())
    assert sandbox_ci(seed) == ci.decode()
    assert sandbox_di(seed) == hashlib.sha256(b"idservice-sandbox-di\0" + seed.encode()).hexdigest()
    # Pinned so a refactor cannot silently change every sandbox person's identity.
    assert sandbox_di(seed) == "869331040ac044c7cb8d2317e5daa0e5ed1769e70ebf5fc0c70669e6e0034600"


@pytest.mark.parametrize(
    "verification_id",
    [
        "sandbox",
        "sandbox:",
        "sandbox:홍길동:1990-01-15:01012345678",  # no seed
        "sandbox:홍길동:1990-01-15:01012345678:seed:1:extra",
        "sandbox::1990-01-15:01012345678:seed",  # empty name
        "sandbox:홍길동:1990-01-15:01012345678:",  # empty seed
        "sandbox:홍길동:1990-01-15:01012345678:seed:",  # empty attempt
        "sandbox:홍길동:1990-1-15:01012345678:seed",
        "sandbox:홍길동:1990-02-30:01012345678:seed",  # not a real day
        "sandbox:홍길동:2001-02-29:01012345678:seed",  # not a leap year
        "sandbox:홍길동:1899-12-31:01012345678:seed",  # before 1900
        "sandbox:홍길동:2026-03-03:01012345678:seed",  # future in Seoul
        "sandbox:홍길동:1990-01-15:phone:seed",
        "sandbox:홍길동:1990-01-15:010--:seed",
        "sandbox:홍길동:1990-01-15:12345:seed",  # no such number (would be +8212345)
        "sandbox:홍길동:1990-01-15:99999999999:seed",
        "portone:홍길동:1990-01-15:01012345678:seed",
        "sandbox:홍 길동:1990-01-15:01012345678:seed",  # whitespace
    ],
)
def test_sandbox_malformed_ids_are_invalid(
    sandbox: SandboxIdentityProvider, verification_id: str
) -> None:
    with pytest.raises(DomainError) as caught:
        sandbox.fetch(verification_id, timeout=1.0)
    assert caught.value.reason is Reason.VALIDATION_FAILED
    assert [v.field for v in caught.value.violations] == ["verification_id"]
    assert "홍길동" not in str(caught.value)
    assert all("01012345678" not in v.description for v in caught.value.violations)


def test_sandbox_accepts_today_in_seoul(sandbox: SandboxIdentityProvider) -> None:
    person = sandbox.fetch("sandbox:아기:2026-03-02:01012345678:seed-baby", timeout=1.0)
    assert person.birth_date == date(2026, 3, 2)
