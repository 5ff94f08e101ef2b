"""AccountService over gRPC on both databases: SignUp validation, idempotency, profile, password."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
from sqlalchemy import column, func, select, table

from idservice.bootstrap import App
from idservice.v1 import account_pb2, auth_pb2, common_pb2
from tests.conftest import make_settings
from tests.e2e.test_malformed_bytes import METHODS
from tests.support.client import STRONG_PASSWORD, Client, RpcFailure, decode, failure_of, new_person
from tests.support.serving import serving

RPC_TIMEOUT = 30.0
ERROR_DOMAIN = "idservice.v1"
# Two days ahead of Seoul's date, so no time zone or midnight makes it "today".
FUTURE_DATE = (datetime.now(ZoneInfo("Asia/Seoul")).date() + timedelta(days=2)).isoformat()
NEW_PASSWORD = "violet kayak drifts under copper moon"
# Strong on its own (zxcvbn score ≥ 3 without context), too guessable once the name is known.
NAME_FOR_PASSWORD = "Wolfeschlegel"
PASSWORD_WITH_NAME = "Wolfeschlegel!!7"

C = grpc.StatusCode
accounts_table = table("accounts", column("id"))

# Each value is bad in exactly one field of an otherwise valid SignUp.
BAD_FIELDS: list[tuple[str, str]] = [
    ("email", "not-an-email"),
    ("email", "two@@example.com"),
    ("email", ""),
    ("password", "Sh0rt!x"),  # 7 characters
    ("password", ""),
    ("password", "password123"),
    ("password", "qwertyuiop"),
    ("name", "Kim2"),
    ("name", "홍길동3"),
    ("phone_number", "010-123"),
    ("phone_number", "010-1234-56789"),
    ("phone_number", "010-ABCD-5678"),
    ("birth_date", FUTURE_DATE),
    ("birth_date", "1899-12-31"),
    ("birth_date", "2023-02-29"),
    ("birth_date", "1990/01/15"),
]
RRN_VALUES = ("900101-1234567", "9001011234567")
# (field path, value template): every personal field of a SignUp, nested ones included.
RRN_PLACES: list[tuple[str, str]] = [
    ("email", "a{rrn}@example.com"),  # otherwise a valid address
    ("name", "{rrn}"),
    ("name", "홍길동 {rrn}"),
    ("phone_number", "{rrn}"),
    ("birth_date", "{rrn}"),
    ("password", "my number is {rrn} ok"),
    ("guardian.name", "{rrn}"),
    ("guardian.phone_number", "{rrn}"),
]
BAD_BEARERS: list[tuple[tuple[str, str], ...] | None] = [
    None,
    (("authorization", "Bearer garbage"),),
    (("authorization", "Bearer a.b.c"),),
    (("authorization", "Basic dXNlcjpwYXNz"),),
    (("authorization", "Bearer"),),
    (("authorization", "Bearer eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.e30."),),  # alg none
]


def outcome_of(call: Callable[[], object]) -> RpcFailure | None:
    """The decoded error of a call, or None when it succeeded."""
    try:
        call()
    except grpc.RpcError as error:
        return decode(error)
    return None


def assert_failure(failure: RpcFailure, code: grpc.StatusCode, reason: str) -> None:
    assert (failure.code, failure.reason, failure.domain) == (code, reason, ERROR_DOMAIN)


def mismatch(
    label: str,
    failure: RpcFailure | None,
    code: grpc.StatusCode,
    reason: str,
    fields: list[str] | None = None,
) -> list[str]:
    """[] when `failure` has the code, reason, domain (and exact fields); else one problem."""
    if failure is None:
        return [f"{label}: succeeded"]
    got = (failure.code, failure.reason, failure.domain)
    ok = got == (code, reason, ERROR_DOMAIN)
    if fields is not None:
        ok = ok and failure.fields == fields
    return [] if ok else [f"{label}: {got} fields={failure.fields}"]


def sign_up(client: Client, request: account_pb2.SignUpRequest) -> account_pb2.SignUpResponse:
    return client.accounts.SignUp(request, timeout=RPC_TIMEOUT)


def account_count(app: App) -> int:
    query = select(func.count()).select_from(accounts_table)
    with app.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def get_account(client: Client, access_token: str) -> common_pb2.Account:
    return client.accounts.GetAccount(
        account_pb2.GetAccountRequest(), metadata=client.bearer(access_token), timeout=RPC_TIMEOUT
    ).account


def set_field(request: account_pb2.SignUpRequest, path: str, value: str) -> None:
    """Set `email` or a nested `guardian.name` style field of a SignUpRequest."""
    target: object = request
    *parents, name = path.split(".")
    for parent in parents:
        target = getattr(target, parent)
    setattr(target, name, value)


# -- SignUp validation ---------------------------------------------------------------------


def test_each_bad_field_is_one_field_violation(client: Client, app: App) -> None:
    problems: list[str] = []
    for field, value in BAD_FIELDS:
        request = client.signup_request(new_person())
        setattr(request, field, value)
        failure = outcome_of(partial(sign_up, client, request))
        problems += mismatch(
            f"{field}={value!r}", failure, C.INVALID_ARGUMENT, "VALIDATION_FAILED", [field]
        )
    assert not problems, "\n".join(problems)
    assert account_count(app) == 0


def test_password_containing_the_given_name_is_refused(client: Client) -> None:
    person = new_person(name=NAME_FOR_PASSWORD)
    request = client.signup_request(person, password=PASSWORD_WITH_NAME, name=person.name)
    failure = failure_of(lambda: sign_up(client, request))
    assert_failure(failure, C.INVALID_ARGUMENT, "VALIDATION_FAILED")
    assert failure.fields == ["password"]


def test_password_containing_the_email_is_refused(client: Client) -> None:
    request = client.signup_request(
        new_person(), email=f"{NAME_FOR_PASSWORD.lower()}@example.com", password=PASSWORD_WITH_NAME
    )
    failure = failure_of(lambda: sign_up(client, request))
    assert_failure(failure, C.INVALID_ARGUMENT, "VALIDATION_FAILED")
    assert failure.fields == ["password"]


def test_password_containing_the_verified_name_is_refused(client: Client) -> None:
    # The usual flow leaves the name out: it comes from the verification, and it is still the
    # user's name, which the password must not contain.
    person = new_person(name=NAME_FOR_PASSWORD)
    request = client.signup_request(person, password=PASSWORD_WITH_NAME)
    failure = failure_of(lambda: sign_up(client, request))
    assert_failure(failure, C.INVALID_ARGUMENT, "VALIDATION_FAILED")
    assert failure.fields == ["password"]


def test_missing_consents_are_field_violations(client: Client) -> None:
    removals: dict[str, Callable[[account_pb2.SignUpRequest], None]] = {
        "no consents": lambda r: r.ClearField("consents"),
        "no terms_version": lambda r: r.consents.ClearField("terms_version"),
        "no privacy_policy_version": lambda r: r.consents.ClearField("privacy_policy_version"),
    }
    problems: list[str] = []
    for label, remove in removals.items():
        request = client.signup_request(new_person())
        remove(request)
        failure = outcome_of(partial(sign_up, client, request))
        problems += mismatch(label, failure, C.INVALID_ARGUMENT, "VALIDATION_FAILED")
        if failure is not None and not (
            failure.fields and all(f.startswith("consents.") for f in failure.fields)
        ):
            problems.append(f"{label}: fields {failure.fields}")
    assert not problems, "\n".join(problems)


def test_several_bad_fields_are_reported_in_one_error(client: Client) -> None:
    request = client.signup_request(new_person())
    request.email = "not-an-email"
    request.name = "Kim2"
    request.phone_number = "010-123"
    request.birth_date = "2023-02-29"
    request.password = "short"
    failure = failure_of(lambda: sign_up(client, request))
    assert_failure(failure, C.INVALID_ARGUMENT, "VALIDATION_FAILED")
    assert sorted(failure.fields) == ["birth_date", "email", "name", "password", "phone_number"]


def test_rrn_like_value_in_any_personal_field_is_a_violation(client: Client, app: App) -> None:
    problems: list[str] = []
    for path, template in RRN_PLACES:
        for rrn in RRN_VALUES:
            request = client.signup_request(new_person())
            set_field(request, path, template.format(rrn=rrn))
            failure = outcome_of(partial(sign_up, client, request))
            label = f"{path}={template.format(rrn=rrn)!r}"
            problems += mismatch(label, failure, C.INVALID_ARGUMENT, "VALIDATION_FAILED")
            if failure is not None and path not in failure.fields:
                problems.append(f"{label}: fields {failure.fields}")
    assert not problems, "\n".join(problems)
    assert account_count(app) == 0


def test_wrong_terms_version_is_a_precondition_failure(client: Client) -> None:
    problems: list[str] = []
    for field in ("terms_version", "privacy_policy_version"):
        request = client.signup_request(new_person())
        setattr(request.consents, field, "2001-01-01")
        failure = outcome_of(partial(sign_up, client, request))
        problems += mismatch(field, failure, C.FAILED_PRECONDITION, "TERMS_VERSION_MISMATCH")
    assert not problems, "\n".join(problems)


# -- SignUp outcomes -------------------------------------------------------------------------


def test_email_taken_ignores_case(client: Client, app: App) -> None:
    client.sign_up(new_person(), email="Case.Test@Example.com")
    problems: list[str] = []
    for email in ("case.test@example.com", "CASE.TEST@EXAMPLE.COM", "Case.Test@example.COM"):
        request = client.signup_request(new_person(), email=email)
        failure = outcome_of(partial(sign_up, client, request))
        problems += mismatch(email, failure, C.ALREADY_EXISTS, "EMAIL_TAKEN")
    assert not problems, "\n".join(problems)
    assert account_count(app) == 1


def full_width(text: str) -> str:
    """The full-width form of printable ASCII (what some Korean and Japanese IMEs type)."""
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def test_look_alike_emails_do_not_make_a_second_account(client: Client, app: App) -> None:
    local = f"gildong.{uuid.uuid4().hex[:8]}"
    original = f"{local}@example.com"
    signed = client.sign_up(new_person(), email=original)
    cyrillic_i = original.replace("i", "\u0456", 1)  # Cyrillic і (U+0456) for the first Latin i
    assert cyrillic_i != original
    taken = (C.ALREADY_EXISTS, "EMAIL_TAKEN", None)
    problems: list[str] = []
    for label, email, code, reason, fields in [
        ("full-width local part", f"{full_width(local)}@example.com", *taken),
        ("full-width copy", full_width(original), *taken),
        ("Cyrillic i", cyrillic_i, C.INVALID_ARGUMENT, "VALIDATION_FAILED", ["email"]),
    ]:
        request = client.signup_request(new_person(), email=email)
        failure = outcome_of(partial(sign_up, client, request))
        problems += mismatch(label, failure, code, reason, fields)
        assert failure is None or email.partition("@")[0] not in failure.message
    assert not problems, "\n".join(problems)
    assert account_count(app) == 1
    # The original logs in, and so do its full-width copies (the same lookup key).
    assert client.login(original).session.account_id == signed.account.id
    assert client.login(f"{full_width(local)}@example.com").session.account_id == signed.account.id
    assert client.login(full_width(original)).session.account_id == signed.account.id
    failure = failure_of(lambda: client.login(cyrillic_i))
    assert_failure(failure, C.UNAUTHENTICATED, "INVALID_CREDENTIALS")


def test_hangul_and_latin_addresses_sign_up(client: Client, app: App) -> None:
    suffix = uuid.uuid4().hex[:6]
    for email in (f"홍길동{suffix}@example.com", f"gildong{suffix}홍@example.com"):
        assert client.sign_up(new_person(), email=email).account.email == email
    assert account_count(app) == 2


def test_spaced_phone_number_is_stored_and_returned_as_e164(client: Client) -> None:
    person = new_person()
    expected = "+82" + person.phone.replace("-", "")[1:]
    signed = client.sign_up(person, phone_number=person.phone.replace("-", " "))
    assert signed.account.phone_number == expected
    assert get_account(client, signed.session.access_token).phone_number == expected


def test_signup_without_verification_token_needs_verification_by_default(
    client: Client, app: App
) -> None:
    request = client.signup_request(
        new_person(),
        verification_token="",
        name="이영희",
        phone_number="010-1234-5678",
        birth_date="1995-05-05",
    )
    failure = failure_of(lambda: sign_up(client, request))
    assert_failure(failure, C.FAILED_PRECONDITION, "IDENTITY_VERIFICATION_REQUIRED")
    assert account_count(app) == 0


def test_same_idempotency_key_and_body_returns_the_first_result(client: Client, app: App) -> None:
    request = client.signup_request(new_person(), idempotency_key=f"signup-{uuid.uuid4()}")
    first = sign_up(client, request)
    again = sign_up(client, request)
    assert again.account.id == first.account.id
    assert again.session.access_token == first.session.access_token
    assert again.session.refresh_token == first.session.refresh_token
    assert account_count(app) == 1
    assert get_account(client, again.session.access_token).id == first.account.id


def test_same_idempotency_key_with_another_body_is_refused(client: Client, app: App) -> None:
    request = client.signup_request(new_person(), idempotency_key=f"signup-{uuid.uuid4()}")
    first = sign_up(client, request)
    other = account_pb2.SignUpRequest()
    other.CopyFrom(request)
    other.email = f"other-{uuid.uuid4().hex[:8]}@example.com"
    failure = failure_of(lambda: sign_up(client, other))
    assert_failure(failure, C.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert account_count(app) == 1
    # The original body still answers with the original account.
    assert sign_up(client, request).account.id == first.account.id


# -- GetAccount authentication ---------------------------------------------------------------


def test_get_account_without_a_valid_bearer_is_token_invalid(client: Client) -> None:
    token = client.sign_up().session.access_token
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    problems: list[str] = []
    for metadata in [*BAD_BEARERS, tuple(client.bearer(tampered))]:
        failure = outcome_of(
            partial(
                client.accounts.GetAccount,
                account_pb2.GetAccountRequest(),
                metadata=metadata,
                timeout=RPC_TIMEOUT,
            )
        )
        problems += mismatch(str(metadata)[:60], failure, C.UNAUTHENTICATED, "TOKEN_INVALID")
    assert not problems, "\n".join(problems)
    assert get_account(client, token).email  # the untampered token works


# -- UpdateProfile ---------------------------------------------------------------------------


def test_update_profile_of_verified_account_needs_a_new_verification(client: Client) -> None:
    person = new_person()
    signed = client.sign_up(person)
    bearer = client.bearer(signed.session.access_token)
    changes: list[dict[str, str]] = [
        {"name": "김철수"},
        {"phone_number": "010-9876-5432"},
        {"birth_date": "1991-02-03"},
    ]
    problems: list[str] = []
    for change in changes:
        failure = outcome_of(
            partial(
                client.accounts.UpdateProfile,
                account_pb2.UpdateProfileRequest(**change),
                metadata=bearer,
                timeout=RPC_TIMEOUT,
            )
        )
        problems += mismatch(
            str(change), failure, C.FAILED_PRECONDITION, "IDENTITY_VERIFICATION_REQUIRED"
        )
    assert not problems, "\n".join(problems)
    account = get_account(client, signed.session.access_token)
    assert (account.name, account.birth_date) == (person.name, person.birth_date)
    assert account.phone_number == signed.account.phone_number


def test_unverified_account_phone_is_e164_and_profile_corrects(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url, require_identity_verification=False)
    with serving(settings) as (_app, client):
        signed = client.sign_up(
            new_person(),
            verification_token="",
            name="이영희",
            phone_number="010 2222 3333",
            birth_date="1995-05-05",
        )
        assert not signed.account.identity_verified
        assert signed.account.phone_number == "+821022223333"
        bearer = client.bearer(signed.session.access_token)
        updated = client.accounts.UpdateProfile(
            account_pb2.UpdateProfileRequest(name="이영수", phone_number="010 4444 5555"),
            metadata=bearer,
            timeout=RPC_TIMEOUT,
        ).account
        assert (updated.name, updated.phone_number) == ("이영수", "+821044445555")
        account = get_account(client, signed.session.access_token)
        assert (account.name, account.phone_number) == ("이영수", "+821044445555")
        assert account.birth_date == "1995-05-05"


# -- ChangePassword --------------------------------------------------------------------------


def test_change_password_with_wrong_current_password_is_invalid_credentials(
    client: Client,
) -> None:
    signed = client.sign_up()
    failure = failure_of(
        lambda: client.accounts.ChangePassword(
            account_pb2.ChangePasswordRequest(
                current_password="not the right password at all", new_password=NEW_PASSWORD
            ),
            metadata=client.bearer(signed.session.access_token),
            timeout=RPC_TIMEOUT,
        )
    )
    assert_failure(failure, C.UNAUTHENTICATED, "INVALID_CREDENTIALS")
    assert failure.message == "the current password is wrong"
    # Nothing changed: the old password still logs in, the new one does not.
    assert client.login(signed.account.email).session.account_id == signed.account.id
    failure = failure_of(lambda: client.login(signed.account.email, NEW_PASSWORD))
    assert_failure(failure, C.UNAUTHENTICATED, "INVALID_CREDENTIALS")


def test_change_password_with_both_fields_empty_names_both(client: Client) -> None:
    signed = client.sign_up()
    failure = failure_of(
        lambda: client.accounts.ChangePassword(
            account_pb2.ChangePasswordRequest(),
            metadata=client.bearer(signed.session.access_token),
            timeout=RPC_TIMEOUT,
        )
    )
    assert_failure(failure, C.INVALID_ARGUMENT, "VALIDATION_FAILED")
    assert sorted(failure.fields) == ["current_password", "new_password"]


def test_change_password_revokes_other_sessions_and_keeps_the_callers(client: Client) -> None:
    signed = client.sign_up()
    email = signed.account.email
    caller = signed.session
    other = client.login(email).session
    assert get_account(client, other.access_token).id == signed.account.id

    client.accounts.ChangePassword(
        account_pb2.ChangePasswordRequest(
            current_password=STRONG_PASSWORD, new_password=NEW_PASSWORD
        ),
        metadata=client.bearer(caller.access_token),
        timeout=RPC_TIMEOUT,
    )

    # The other session is over: its access token and its refresh token.
    failure = failure_of(lambda: get_account(client, other.access_token))
    assert_failure(failure, C.UNAUTHENTICATED, "TOKEN_INVALID")
    failure = failure_of(
        lambda: client.auth.RefreshSession(
            auth_pb2.RefreshSessionRequest(refresh_token=other.refresh_token), timeout=RPC_TIMEOUT
        )
    )
    assert_failure(failure, C.UNAUTHENTICATED, "TOKEN_INVALID")

    # The caller's session keeps working and still refreshes.
    assert get_account(client, caller.access_token).id == signed.account.id
    refreshed = client.auth.RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=caller.refresh_token), timeout=RPC_TIMEOUT
    ).session
    assert get_account(client, refreshed.access_token).id == signed.account.id

    # The new password logs in; the old one no longer does.
    assert client.login(email, NEW_PASSWORD).session.account_id == signed.account.id
    failure = failure_of(lambda: client.login(email, STRONG_PASSWORD))
    assert_failure(failure, C.UNAUTHENTICATED, "INVALID_CREDENTIALS")


# -- Every RPC is served ----------------------------------------------------------------------


def test_no_rpc_answers_unimplemented(channel: grpc.Channel, client: Client) -> None:
    bearer = client.bearer(client.sign_up().session.access_token)
    codes = {}
    for method in METHODS:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        outcome = outcome_of(functools.partial(call, b"", metadata=bearer, timeout=RPC_TIMEOUT))
        codes[method] = (outcome or RpcFailure(C.OK)).code
    assert C.UNIMPLEMENTED not in codes.values(), codes
