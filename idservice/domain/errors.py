"""Domain errors with stable reason codes; the gRPC layer maps them to status codes in one table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """The stable reasons of contract §3 (google.rpc.ErrorInfo.reason)."""

    VALIDATION_FAILED = "VALIDATION_FAILED"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    IDENTITY_ALREADY_REGISTERED = "IDENTITY_ALREADY_REGISTERED"
    SNS_IDENTITY_ALREADY_LINKED = "SNS_IDENTITY_ALREADY_LINKED"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDENTITY_VERIFICATION_REQUIRED = "IDENTITY_VERIFICATION_REQUIRED"
    VERIFICATION_MISMATCH = "VERIFICATION_MISMATCH"
    GUARDIAN_INFO_REQUIRED = "GUARDIAN_INFO_REQUIRED"
    GUARDIAN_NOT_ADULT = "GUARDIAN_NOT_ADULT"
    GUARDIAN_SAME_PERSON = "GUARDIAN_SAME_PERSON"
    GUARDIAN_MISMATCH = "GUARDIAN_MISMATCH"
    CONSENT_REQUEST_EXPIRED = "CONSENT_REQUEST_EXPIRED"
    CONSENT_REQUEST_CLOSED = "CONSENT_REQUEST_CLOSED"
    ACCOUNT_PENDING_GUARDIAN_CONSENT = "ACCOUNT_PENDING_GUARDIAN_CONSENT"
    TERMS_VERSION_MISMATCH = "TERMS_VERSION_MISMATCH"
    REJOIN_COOLDOWN = "REJOIN_COOLDOWN"
    LAST_SIGN_IN_METHOD = "LAST_SIGN_IN_METHOD"
    PROVIDER_NOT_CONFIGURED = "PROVIDER_NOT_CONFIGURED"
    VERIFICATION_NOT_COMPLETED = "VERIFICATION_NOT_COMPLETED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    SNS_TOKEN_INVALID = "SNS_TOKEN_INVALID"
    VERIFICATION_TOKEN_INVALID = "VERIFICATION_TOKEN_INVALID"
    REAUTHENTICATION_REQUIRED = "REAUTHENTICATION_REQUIRED"
    ACCOUNT_LOCKED = "ACCOUNT_LOCKED"
    NOT_GUARDIAN = "NOT_GUARDIAN"
    CONSENT_CODE_INVALID = "CONSENT_CODE_INVALID"
    CONSENT_REQUEST_NOT_FOUND = "CONSENT_REQUEST_NOT_FOUND"
    VERIFICATION_NOT_FOUND = "VERIFICATION_NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"
    SERVER_BUSY = "SERVER_BUSY"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


class DomainError(Exception):
    """An expected failure with a stable reason. The message never contains personal data."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        self.retry_after_seconds = retry_after_seconds

    def __repr__(self) -> str:
        return f"DomainError({self.reason.value}, {self.message!r})"


class ValidationFailed(DomainError):
    """INVALID_ARGUMENT with one field violation per bad field."""

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        fields = ", ".join(v.field for v in violations)
        super().__init__(
            Reason.VALIDATION_FAILED, f"invalid fields: {fields}", violations=violations
        )


def invalid(field: str, description: str) -> ValidationFailed:
    """Shorthand for a single-field validation failure."""
    return ValidationFailed([FieldViolation(field, description)])


def server_busy() -> DomainError:
    """This process is saturated (or draining): retry, perhaps on another instance."""
    return DomainError(Reason.SERVER_BUSY, "the service is busy; retry", retry_after_seconds=1.0)


def database_unavailable() -> DomainError:
    return DomainError(Reason.DATABASE_UNAVAILABLE, "the database is unavailable; retry")
