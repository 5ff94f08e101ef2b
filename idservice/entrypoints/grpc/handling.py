"""Around every RPC: reject NUL characters and RRN-like input, read the bearer, map errors,
never leak data, and record the call (request id, connection log, access line: `calls`)."""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from idservice.bootstrap import App
from idservice.domain.errors import DomainError, FieldViolation, Reason, ValidationFailed
from idservice.entrypoints.grpc import calls, metrics

# Re-exported: servicers read the caller's addresses from here.
from idservice.entrypoints.grpc.addresses import Network as Network  # noqa: PLC0414
from idservice.entrypoints.grpc.addresses import end_user_address as end_user_address  # noqa: PLC0414
from idservice.entrypoints.grpc.addresses import peer_address as peer_address  # noqa: PLC0414
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


def _string_fields(
    message: Message, prefix: str = "", *, opaque: bool = False
) -> Iterator[tuple[str, str]]:
    """Every string value in a message, with its field path (e.g. `guardian.name`); those of
    OPAQUE_FIELDS only with `opaque`."""
    for descriptor, value in message.ListFields():
        path = f"{prefix}{descriptor.name}"
        if not opaque and descriptor.name in OPAQUE_FIELDS:
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
                    yield from _string_fields(item, f"{path}[{index}].", opaque=opaque)
            else:
                yield from _string_fields(value, f"{path}.", opaque=opaque)


@functools.cache
def _may_carry_personal_text(descriptor: Descriptor) -> bool:
    """Whether a message type has a string field outside OPAQUE_FIELDS, at any depth.

    Requests without one (IntrospectToken, RefreshSession, …) skip the scan entirely.
    """
    for field in descriptor.fields:
        if field.name in OPAQUE_FIELDS:
            continue
        if field.type == FieldDescriptor.TYPE_STRING:
            return True
        if field.type == FieldDescriptor.TYPE_MESSAGE and (
            field.message_type is descriptor or _may_carry_personal_text(field.message_type)
        ):
            return True
    return False


NUL_REFUSED = "must not contain the NUL character (U+0000)"


def reject_unsafe_text(message: Message) -> None:
    """Refuse, before any work, a NUL character in any string, and (korea-rules CI/DI 1) a value
    that looks like a 주민등록번호 in any string that is not an opaque identifier or secret."""
    # No field of the API has a use for U+0000, and PostgreSQL's text cannot store it.
    violations = [
        FieldViolation(path, NUL_REFUSED)
        for path, value in _string_fields(message, opaque=True)
        if "\x00" in value
    ]
    if _may_carry_personal_text(message.DESCRIPTOR):
        violations += check_no_rrn(dict(_string_fields(message)))
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


class ServesCalls(Protocol):
    """A servicer: the app it serves, which also names storage failures (DATABASE_UNAVAILABLE,
    SERVER_BUSY)."""

    app: App

    def storage_error(self, exc: BaseException) -> DomainError | None: ...


def rpc(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Wrap a servicer method: domain errors become rich statuses; bugs are logged without data;
    every call gets a request id, a connection-log entry and one access line (`calls`)."""
    name = handler.__name__

    @functools.wraps(handler)
    def wrapper(self: ServesCalls, request: Req, context: grpc.ServicerContext) -> Resp:
        call = calls.begin(self.app, type(self), name, context)
        with calls.scope(call):
            response, reason, status = _answer(self, handler, request, context)
            code = "OK" if status is None else status.code.name
            metrics.observe(name, code, reason, call.seconds())
            trailing = calls.finish(self.app, call, context, code, reason)
        if status is None:
            assert response is not None
            context.set_trailing_metadata(trailing)
            return response
        context.abort_with_status(calls.with_metadata(status, trailing))
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    return wrapper


def _answer(
    servicer: ServesCalls,
    handler: Handler[Req, Resp],
    request: Req,
    context: grpc.ServicerContext,
) -> tuple[Resp | None, str, grpc.Status | None]:
    """The handler's response, or the reason and status of its failure."""
    try:
        if isinstance(request, MalformedRequest):
            raise ValidationFailed(
                [FieldViolation("request", f"is not a valid {_request_type(handler)} message")]
            )
        if request.ByteSize() > MAX_REQUEST_BYTES:
            raise ValidationFailed(
                [FieldViolation("request", f"must be at most {MAX_REQUEST_BYTES} bytes")]
            )
        reject_unsafe_text(request)
        return handler(servicer, request, context), "", None
    except DomainError as error:
        return None, error.reason.value, to_status(error)
    except Exception as error:
        known = servicer.storage_error(error)
        if known is not None:
            return None, known.reason.value, to_status(known)
        # Exception messages may quote inputs or SQL parameters: log the type and the stack only.
        log.error(
            "unhandled %s in %s\n%s",
            type(error).__name__,
            handler.__name__,
            "".join(traceback.format_tb(error.__traceback__)),
        )
        return None, "INTERNAL", internal_status()


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
