"""PortOne V2 identity verification: GET /identity-verifications/{id} mapped to a VerifiedPerson."""

from __future__ import annotations

import logging
import random
import re
import time
from datetime import date
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from idservice.adapters.trace_context import EVENT_HOOKS
from idservice.domain.errors import DomainError, Reason
from idservice.domain.identity import (
    InvalidVerifiedPersonError,
    VerifiedPerson,
    check_verification_id,
)
from idservice.service_layer.ports import IdentityProvider

logger = logging.getLogger(__name__)

# PortOne V2 API (developers.portone.io, "본인인증 단건 조회"): the resource and its statuses.
IDENTITY_VERIFICATIONS_PATH = "/identity-verifications/"
STATUS_VERIFIED = "VERIFIED"
STATUS_READY = "READY"
STATUS_FAILED = "FAILED"
NOT_FOUND_TYPE = "IDENTITY_VERIFICATION_NOT_FOUND"
# PortOne's Gender enum.
KNOWN_GENDERS = frozenset({"MALE", "FEMALE", "OTHER"})

# With less budget than this left, an attempt cannot realistically finish; starting one only
# turns a clean "unavailable" into a timeout.
MIN_ATTEMPT_SECONDS = 0.01

_BIRTH_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# PortOne error types are SCREAMING_SNAKE codes; anything else is not echoed into logs.
_ERROR_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class _RetryableError(Exception):
    """An attempt failed in a way another attempt may fix (timeout, connection error, 5xx)."""


class _MalformedError(Exception):
    """The 200 body is not the documented shape; the message names fields, never values."""


def _unavailable() -> DomainError:
    return DomainError(
        Reason.UPSTREAM_UNAVAILABLE,
        "identity verification provider is unavailable",
        metadata={"provider": PortOneIdentityProvider.name},
    )


class PortOneIdentityProvider(IdentityProvider):
    """Reads finished verifications from PortOne V2 over one pooled HTTP client."""

    name = "portone"

    def __init__(
        self,
        *,
        api_base: str,
        api_secret: str,
        store_id: str | None,
        client: httpx.Client | None = None,
        max_attempts: int = 3,
        backoff_base: float = 0.1,
    ) -> None:
        if not api_base.startswith(("https://", "http://")):
            raise ValueError("PortOne api_base must be an http(s) URL")
        # The secret goes into a header: an empty or non-ASCII one would only fail per request.
        if not api_secret or not api_secret.isascii() or not api_secret.isprintable():
            raise ValueError("PortOne api_secret must be non-empty printable ASCII")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if backoff_base < 0:
            raise ValueError("backoff_base must not be negative")
        self._api_base = api_base.rstrip("/")
        self._authorization = f"PortOne {api_secret}"
        self._store_id = store_id or None
        self._owns_client = client is None
        # One client for the provider's lifetime so connections (and TLS sessions) are reused.
        self._client = client if client is not None else httpx.Client(event_hooks=EVENT_HOOKS)
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base

    def __repr__(self) -> str:
        # Never the secret.
        return f"PortOneIdentityProvider(api_base={self._api_base!r})"

    def __enter__(self) -> PortOneIdentityProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client if this provider created it (an injected one is the caller's)."""
        if self._owns_client:
            self._client.close()

    def fetch(self, verification_id: str, *, timeout: float) -> VerifiedPerson:
        """GET the verification, retrying transient failures within `timeout` seconds."""
        check_verification_id(verification_id)
        deadline = time.monotonic() + timeout
        url = f"{self._api_base}{IDENTITY_VERIFICATIONS_PATH}{quote(verification_id, safe='')}"
        params = {"storeId": self._store_id} if self._store_id is not None else None
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        for attempt in range(1, self._max_attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_SECONDS:
                break
            try:
                # httpx applies the timeout per phase (connect, each read), not to the whole
                # exchange; PortOne's answers are one small JSON body, so in practice it bounds it.
                response = self._client.get(
                    url, params=params, headers=headers, timeout=httpx.Timeout(remaining)
                )
                return self._interpret(response, verification_id)
            except _RetryableError as retryable:
                logger.warning(
                    "PortOne attempt %d/%d failed: %s", attempt, self._max_attempts, retryable
                )
            except httpx.TimeoutException:
                logger.warning("PortOne attempt %d/%d timed out", attempt, self._max_attempts)
            except httpx.RequestError as error:
                # Connection refused/reset, protocol and decoding errors. The exception text
                # can quote the URL; its class name says enough.
                logger.warning(
                    "PortOne attempt %d/%d failed: %s",
                    attempt,
                    self._max_attempts,
                    type(error).__name__,
                )
            if attempt == self._max_attempts:
                break
            delay = self._backoff(attempt)
            # Never sleep past the caller's deadline, nor into a window too short to retry in.
            if deadline - time.monotonic() - delay < MIN_ATTEMPT_SECONDS:
                break
            time.sleep(delay)
        logger.warning("PortOne identity verification lookup gave up; answering unavailable")
        raise _unavailable()

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter" so concurrent callers do not retry in step."""
        ceiling = self._backoff_base * (2.0 ** (attempt - 1))
        # Jitter only spreads load; it needs no cryptographic randomness.
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311

    def _interpret(self, response: httpx.Response, verification_id: str) -> VerifiedPerson:
        status = response.status_code
        if status == httpx.codes.OK:
            return self._verified_person(response, verification_id)
        error_type = _error_type(response)
        if status == httpx.codes.NOT_FOUND:
            if error_type != NOT_FOUND_TYPE:
                # Another 404 (say, an unknown store) is more likely configuration than the user.
                logger.warning("PortOne answered 404 with error type %s", error_type)
            raise DomainError(Reason.VERIFICATION_NOT_FOUND, "identity verification was not found")
        if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            logger.error(
                "PortOne rejected the API secret (check IDSERVICE_PORTONE_API_SECRET): "
                "HTTP %d, error type %s",
                status,
                error_type,
            )
            raise _unavailable()
        if status >= httpx.codes.INTERNAL_SERVER_ERROR:
            raise _RetryableError(f"HTTP {status}, error type {error_type}")
        logger.warning("PortOne answered an unexpected HTTP %d, error type %s", status, error_type)
        raise _unavailable()

    def _verified_person(self, response: httpx.Response, verification_id: str) -> VerifiedPerson:
        try:
            body = response.json()
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
            logger.warning("PortOne answered 200 with a body that is not JSON")
            raise _unavailable() from None
        if not isinstance(body, dict):
            logger.warning("PortOne answered 200 with a JSON body that is not an object")
            raise _unavailable()
        status = body.get("status")
        # The contract requires VERIFIED: PortOne's two other states are not completed ones.
        if status == STATUS_READY:
            raise DomainError(
                Reason.VERIFICATION_NOT_COMPLETED, "identity verification is not completed"
            )
        if status == STATUS_FAILED:
            raise DomainError(
                Reason.VERIFICATION_NOT_COMPLETED,
                "identity verification failed; the person must verify again",
            )
        if status != STATUS_VERIFIED:
            logger.warning("PortOne answered 200 with an unknown verification status")
            raise _unavailable()
        if body.get("id", verification_id) != verification_id:
            logger.warning("PortOne answered with a different verification than requested")
            raise _unavailable()
        try:
            return _parse_verified_customer(body.get("verifiedCustomer"))
        except (_MalformedError, InvalidVerifiedPersonError) as problem:
            # The message names the field only (see _MalformedError, InvalidVerifiedPersonError).
            logger.warning("PortOne answered a malformed verified customer: %s", problem)
            raise _unavailable() from None


def _error_type(response: httpx.Response) -> str:
    """PortOne's error `type` code, if the body has a recognisable one (safe to log)."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return "(none)"
    error_type = body.get("type") if isinstance(body, dict) else None
    if isinstance(error_type, str) and _ERROR_TYPE.fullmatch(error_type):
        return error_type
    return "(none)"


def _parse_verified_customer(customer: Any) -> VerifiedPerson:
    """PortOne's IdentityVerificationVerifiedCustomer to a VerifiedPerson."""
    if not isinstance(customer, dict):
        raise _MalformedError("verifiedCustomer is missing or not an object")
    name = customer.get("name")
    if not isinstance(name, str) or not name:
        raise _MalformedError("name is missing")
    # PortOne documents phoneNumber as optional; phone verification always has one, and the
    # guardian check (korea-rules.md Guardian consent 3) cannot work without it.
    phone_number = customer.get("phoneNumber")
    if not isinstance(phone_number, str) or not phone_number:
        raise _MalformedError("phoneNumber is missing")
    birth_date = _parse_birth_date(customer.get("birthDate"))
    gender = customer.get("gender")
    if gender is not None and not isinstance(gender, str):
        raise _MalformedError("gender is not a string")
    if gender is not None and gender not in KNOWN_GENDERS:
        # Unused by the rules: an unknown value is dropped rather than failing the person.
        logger.warning("PortOne answered an unknown gender code; ignoring it")
        gender = None
    is_foreigner = customer.get("isForeigner", False)
    if not isinstance(is_foreigner, bool):
        raise _MalformedError("isForeigner is not a boolean")
    ci = _optional_key(customer, "ci")
    di = _optional_key(customer, "di")
    return VerifiedPerson(
        name=name,
        phone_number=phone_number,
        birth_date=birth_date,
        gender=gender,
        is_foreigner=is_foreigner,
        ci=ci,
        di=di,
    )


def _parse_birth_date(value: Any) -> date:
    """PortOne's birthDate, `yyyy-MM-dd`."""
    if not isinstance(value, str) or _BIRTH_DATE.fullmatch(value) is None:
        raise _MalformedError("birthDate is missing or not yyyy-MM-dd")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _MalformedError("birthDate is not a calendar date") from None


def _optional_key(customer: dict[str, Any], field: str) -> str | None:
    """CI or DI; absent, null and "" all mean the provider did not give one."""
    value = customer.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _MalformedError(f"{field} is not a string")
    return value
