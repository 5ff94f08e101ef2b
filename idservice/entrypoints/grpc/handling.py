"""Around every RPC: reject RRN-like input, read the bearer, map errors, never leak data."""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from idservice.domain.errors import DomainError, FieldViolation, Reason, ValidationFailed
from idservice.entrypoints.grpc import metrics
from idservice.entrypoints.grpc.errors import internal_status, to_status
from idservice.entrypoints.grpc.interceptors import MalformedRequest
from idservice.service_layer.validation import check_no_rrn

log = logging.getLogger("idservice.rpc")

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Handler = Callable[[Any, Req, grpc.ServicerContext], Resp]

BEARER_PREFIX = "bearer "
# Every request of the API is small; a larger one is refused before any work.
MAX_REQUEST_BYTES = 64 * 1024
# Opaque identifiers and secrets are not personal input: a 13-digit millisecond timestamp used
# as an idempotency key can look like YYMMDD-NNNNNNN. Every other string field is checked.
OPAQUE_FIELDS = frozenset(
    {
        "idempotency_key",
        "verification_id",
        "verification_token",
        "guardian_verification_token",
        "sns_signup_ticket",
        "access_token",
        "refresh_token",
        "id_token",
        "kakao_access_token",
        "nonce",
        "authorization_code",
        "code_verifier",
        "redirect_uri",
        "consent_code",
        "id",
        "ward_account_id",
    }
)


def _string_fields(message: Message, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every string value in a message, with its field path (e.g. `guardian.name`)."""
    for descriptor, value in message.ListFields():
        path = f"{prefix}{descriptor.name}"
        if descriptor.name in OPAQUE_FIELDS:
            continue
        if descriptor.type == FieldDescriptor.TYPE_STRING:
            if descriptor.is_repeated:
                for index, item in enumerate(value):
                    yield f"{path}[{index}]", item
            else:
                yield path, value
        elif descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            if descriptor.is_repeated:
                for index, item in enumerate(value):
                    yield from _string_fields(item, f"{path}[{index}].")
            else:
                yield from _string_fields(value, f"{path}.")


def reject_rrn(message: Message) -> None:
    """korea-rules CI/DI 1: a value that looks like a 주민등록번호 anywhere is invalid input."""
    violations = check_no_rrn(dict(_string_fields(message)))
    if violations:
        raise ValidationFailed(violations)


def bearer_token(context: grpc.ServicerContext) -> str:
    """The access token of `authorization: Bearer <token>` metadata."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            if value[: len(BEARER_PREFIX)].lower() == BEARER_PREFIX and len(value) > len(
                BEARER_PREFIX
            ):
                return value[len(BEARER_PREFIX) :].strip()
            break
    raise DomainError(Reason.TOKEN_INVALID, "send authorization: Bearer <access token>")


class ClassifiesStorageErrors(Protocol):
    """A servicer whose app names storage failures (DATABASE_UNAVAILABLE, SERVER_BUSY)."""

    def storage_error(self, exc: BaseException) -> DomainError | None: ...


def rpc(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Wrap a servicer method: domain errors become rich statuses; bugs are logged without data."""
    name = handler.__name__

    @functools.wraps(handler)
    def wrapper(self: ClassifiesStorageErrors, request: Req, context: grpc.ServicerContext) -> Resp:
        started = time.perf_counter()
        try:
            if isinstance(request, MalformedRequest):
                raise ValidationFailed(
                    [FieldViolation("request", f"is not a valid {_request_type(handler)} message")]
                )
            if request.ByteSize() > MAX_REQUEST_BYTES:
                raise ValidationFailed(
                    [FieldViolation("request", f"must be at most {MAX_REQUEST_BYTES} bytes")]
                )
            reject_rrn(request)
            response = handler(self, request, context)
        except DomainError as error:
            reason, status = error.reason.value, to_status(error)
        except Exception as error:
            known = self.storage_error(error)
            if known is not None:
                reason, status = known.reason.value, to_status(known)
            else:
                # Exception messages may quote inputs or SQL parameters: log the type and the
                # stack only.
                log.error(
                    "unhandled %s in %s\n%s",
                    type(error).__name__,
                    name,
                    "".join(traceback.format_tb(error.__traceback__)),
                )
                reason, status = "INTERNAL", internal_status()
        else:
            metrics.observe(name, "OK", "", time.perf_counter() - started)
            return response
        metrics.observe(name, status.code.name, reason, time.perf_counter() - started)
        context.abort_with_status(status)
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    return wrapper


def _request_type(handler: Handler[Any, Any]) -> str:
    annotation = handler.__annotations__.get("request", "request")
    return str(getattr(annotation, "__name__", annotation)).rsplit(".", 1)[-1]


# grpc reports "no deadline" as a huge remaining time.
NO_DEADLINE_SECONDS = 24 * 3600.0


def time_remaining(context: grpc.ServicerContext) -> float | None:
    """Seconds left before the caller's deadline; None when the caller set none."""
    remaining = context.time_remaining()
    if remaining is None or remaining > NO_DEADLINE_SECONDS:
        return None
    return float(remaining)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_address(
    context: grpc.ServicerContext,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of the connection's peer (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`)."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        host = rest.rsplit(":", 1)[0]
    elif kind == "ipv6":
        host = rest.rsplit(":", 1)[0].strip("[]")
    else:
        return None
    try:
        return ipaddress.ip_address(urllib.parse.unquote(host))
    except ValueError:
        return None


def end_user_address(context: grpc.ServicerContext, trusted_proxies: tuple[Network, ...]) -> str:
    """The end user's address as a trusted proxy names it in `x-forwarded-for`, else "".

    Callers are internal services and load tests: without a trusted proxy in front there is no
    end-user address to count attempts by, and the peer's own address is not one.
    """
    peer = peer_address(context)
    if peer is None or not any(peer in network for network in trusted_proxies):
        return ""
    forwarded = ""
    for key, value in context.invocation_metadata() or ():
        if key == "x-forwarded-for" and isinstance(value, str):
            forwarded = value
    # The right-most address that is not itself a trusted proxy is the client's.
    for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return ""
        if not any(address in network for network in trusted_proxies):
            return str(address)
    return ""
