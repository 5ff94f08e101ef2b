"""A test client over generated stubs: typed calls, rich-error decoding, sandbox people."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import phonenumbers
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from idservice.v1 import (
    account_pb2,
    account_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    guardian_consent_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
)

STRONG_PASSWORD = "correct horse battery staple"
_person_counter = itertools.count()


@dataclass
class RpcFailure:
    """A decoded gRPC error: code, ErrorInfo reason/metadata, field violations, retry delay."""

    code: grpc.StatusCode
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    violations: list[tuple[str, str]] = field(default_factory=list)  # (field, description)
    retry_seconds: float | None = None
    message: str = ""


def decode(error: grpc.RpcError) -> RpcFailure:
    assert isinstance(error, grpc.Call)
    failure = RpcFailure(code=error.code(), message=error.details() or "")
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            failure.reason, failure.domain = info.reason, info.domain
            failure.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            failure.fields = [v.field for v in bad.field_violations]
            failure.violations = [(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            failure.retry_seconds = retry.retry_delay.ToNanoseconds() / 1e9
    return failure


def outcome_of(call: Callable[[], object]) -> object:
    """The call's answer, or the reason of its failure (a str)."""
    try:
        return call()
    except grpc.RpcError as error:
        return decode(error).reason


def reason_or_ok(call: Callable[[], object]) -> str:
    """ "OK" when the call succeeds, else the reason of its failure."""
    answer = outcome_of(call)
    return answer if isinstance(answer, str) else "OK"


def failure_of(call: Callable[[], object]) -> RpcFailure:
    """Run a call that must fail and decode its rich error."""
    try:
        call()
    except grpc.RpcError as error:
        return decode(error)
    raise AssertionError("the call succeeded")


@dataclass(frozen=True)
class Person:
    """A sandbox person: the verification id mints CI/DI from the seed."""

    name: str
    birth_date: str
    phone: str
    seed: str

    def verification_id(self, attempt: int | None = None) -> str:
        suffix = f":{attempt}" if attempt is not None else f":{uuid.uuid4().hex[:8]}"
        return f"sandbox:{self.name}:{self.birth_date}:{self.phone}:{self.seed}{suffix}"


def new_mobile_number() -> str:
    """A valid Korean mobile number (some 010 blocks are unassigned, so check)."""
    while True:
        candidate = f"010-{2000 + next(_person_counter) % 8000:04d}-{uuid.uuid4().int % 10000:04d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate, "KR")):
            return candidate


def new_person(birth_date: str = "1990-01-15", name: str = "홍길동") -> Person:
    return Person(
        name=name, birth_date=birth_date, phone=new_mobile_number(), seed=str(uuid.uuid4())
    )


class Client:
    """All four services on one channel."""

    def __init__(self, channel: grpc.Channel, *, terms_version: str = "2024-05-15") -> None:
        self.identity = identity_pb2_grpc.IdentityServiceStub(channel)
        self.accounts = account_pb2_grpc.AccountServiceStub(channel)
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.guardian = guardian_consent_pb2_grpc.GuardianConsentServiceStub(channel)
        self.terms_version = terms_version

    @staticmethod
    def bearer(access_token: str) -> tuple[tuple[str, str | bytes], ...]:
        return (("authorization", f"Bearer {access_token}"),)

    def consents(self, marketing: bool = False) -> common_pb2.Consents:
        return common_pb2.Consents(
            terms_version=self.terms_version,
            privacy_policy_version=self.terms_version,
            marketing_opt_in=marketing,
        )

    def verify(
        self, person: Person, attempt: int | None = None
    ) -> identity_pb2.CompleteVerificationResponse:
        return self.identity.CompleteVerification(
            identity_pb2.CompleteVerificationRequest(
                verification_id=person.verification_id(attempt)
            )
        )

    def signup_request(
        self,
        person: Person,
        *,
        email: str | None = None,
        password: str = STRONG_PASSWORD,
        verification_token: str | None = None,
        idempotency_key: str = "",
        **extra: object,
    ) -> account_pb2.SignUpRequest:
        if verification_token is None:
            verification_token = self.verify(person).verification_token
        return account_pb2.SignUpRequest(
            idempotency_key=idempotency_key,
            email=email or f"user-{uuid.uuid4().hex[:12]}@example.com",
            password=password,
            verification_token=verification_token,
            consents=self.consents(),
            **extra,  # type: ignore[arg-type]
        )

    def sign_up(self, person: Person | None = None, **kwargs: object) -> account_pb2.SignUpResponse:
        request = self.signup_request(person or new_person(), **kwargs)  # type: ignore[arg-type]
        return self.accounts.SignUp(request)

    def login(self, email: str, password: str = STRONG_PASSWORD) -> auth_pb2.PasswordLoginResponse:
        return self.auth.PasswordLogin(
            auth_pb2.PasswordLoginRequest(email=email, password=password)
        )
