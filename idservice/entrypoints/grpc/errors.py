"""The one table from domain reasons to gRPC codes, and rich google.rpc.Status errors."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from idservice.domain.errors import DomainError, Reason

log = logging.getLogger(__name__)

ERROR_DOMAIN = "idservice.v1"

C = grpc.StatusCode
STATUS_OF: Mapping[Reason, grpc.StatusCode] = {
    Reason.VALIDATION_FAILED: C.INVALID_ARGUMENT,
    Reason.EMAIL_TAKEN: C.ALREADY_EXISTS,
    Reason.IDENTITY_ALREADY_REGISTERED: C.ALREADY_EXISTS,
    Reason.SNS_IDENTITY_ALREADY_LINKED: C.ALREADY_EXISTS,
    Reason.IDEMPOTENCY_KEY_REUSED: C.ALREADY_EXISTS,
    Reason.IDENTITY_VERIFICATION_REQUIRED: C.FAILED_PRECONDITION,
    Reason.VERIFICATION_MISMATCH: C.FAILED_PRECONDITION,
    Reason.GUARDIAN_INFO_REQUIRED: C.FAILED_PRECONDITION,
    Reason.GUARDIAN_NOT_ADULT: C.FAILED_PRECONDITION,
    Reason.GUARDIAN_SAME_PERSON: C.FAILED_PRECONDITION,
    Reason.GUARDIAN_MISMATCH: C.FAILED_PRECONDITION,
    Reason.CONSENT_REQUEST_EXPIRED: C.FAILED_PRECONDITION,
    Reason.CONSENT_REQUEST_CLOSED: C.FAILED_PRECONDITION,
    Reason.ACCOUNT_PENDING_GUARDIAN_CONSENT: C.FAILED_PRECONDITION,
    Reason.TERMS_VERSION_MISMATCH: C.FAILED_PRECONDITION,
    Reason.REJOIN_COOLDOWN: C.FAILED_PRECONDITION,
    Reason.LAST_SIGN_IN_METHOD: C.FAILED_PRECONDITION,
    Reason.PROVIDER_NOT_CONFIGURED: C.FAILED_PRECONDITION,
    Reason.VERIFICATION_NOT_COMPLETED: C.FAILED_PRECONDITION,
    Reason.INVALID_CREDENTIALS: C.UNAUTHENTICATED,
    Reason.TOKEN_INVALID: C.UNAUTHENTICATED,
    Reason.TOKEN_EXPIRED: C.UNAUTHENTICATED,
    Reason.SNS_TOKEN_INVALID: C.UNAUTHENTICATED,
    Reason.VERIFICATION_TOKEN_INVALID: C.UNAUTHENTICATED,
    Reason.REAUTHENTICATION_REQUIRED: C.UNAUTHENTICATED,
    Reason.ACCOUNT_LOCKED: C.PERMISSION_DENIED,
    Reason.NOT_GUARDIAN: C.PERMISSION_DENIED,
    Reason.CONSENT_CODE_INVALID: C.PERMISSION_DENIED,
    Reason.CONSENT_REQUEST_NOT_FOUND: C.NOT_FOUND,
    Reason.VERIFICATION_NOT_FOUND: C.NOT_FOUND,
    Reason.RATE_LIMITED: C.RESOURCE_EXHAUSTED,
    Reason.SERVER_BUSY: C.RESOURCE_EXHAUSTED,
    Reason.UPSTREAM_UNAVAILABLE: C.UNAVAILABLE,
    Reason.DATABASE_UNAVAILABLE: C.UNAVAILABLE,
}

# Retry hints when a domain error names none (RESOURCE_EXHAUSTED must carry RetryInfo).
DEFAULT_RETRY_SECONDS: Mapping[Reason, float] = {
    Reason.RATE_LIMITED: 1.0,
    Reason.SERVER_BUSY: 1.0,
    Reason.DATABASE_UNAVAILABLE: 1.0,
    Reason.UPSTREAM_UNAVAILABLE: 1.0,
}


def to_status(error: DomainError) -> grpc.Status:
    """A DomainError as a grpc.Status with ErrorInfo (+ BadRequest / RetryInfo)."""
    code = STATUS_OF[error.reason]
    status = status_pb2.Status(code=_rpc_code(code), message=error.message)
    info = error_details_pb2.ErrorInfo(
        reason=error.reason.value, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    status.details.add().Pack(info)
    if error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        status.details.add().Pack(bad)
    retry = error.retry_after_seconds or DEFAULT_RETRY_SECONDS.get(error.reason)
    if retry:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return rpc_status.to_status(status)


def internal_status() -> grpc.Status:
    """A bug: the caller learns nothing but that it happened."""
    return _bare_status(code_pb2.INTERNAL, "INTERNAL", "internal error")


def _bare_status(code: int, reason: str, message: str) -> grpc.Status:
    status = status_pb2.Status(code=code, message=message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    return rpc_status.to_status(status)


def _rpc_code(code: grpc.StatusCode) -> int:
    value = code.value[0]
    assert isinstance(value, int)
    return value
