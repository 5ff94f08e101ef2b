"""Around every RPC: reject RRN-like input, read the bearer, map errors, never leak data."""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from idservice.adapters.db.repository import database_unavailable
from idservice.adapters.db.unit_of_work import is_busy, is_unavailable, server_busy
from idservice.domain.errors import DomainError, FieldViolation, Reason, ValidationFailed
from idservice.entrypoints.grpc import metrics
from idservice.entrypoints.grpc.errors import internal_status, to_status
from idservice.service_layer.validation import check_no_rrn

log = logging.getLogger("idservice.rpc")

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Handler = Callable[[Any, Req, grpc.ServicerContext], Resp]

BEARER_PREFIX = "bearer "
# Threads that answer SERVER_BUSY (cheap and never waiting on the client, so a few keep up
# with any overload), and threads for reflection (off the API's pool, so an open reflection
# stream is not work the drain waits for).
REFUSAL_THREADS = 2
SIDE_THREADS = 4
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


class MalformedRequest:
    """Stands in for a request whose bytes are not the method's message (see TolerantDecoding)."""

    __slots__ = ()


MALFORMED = MalformedRequest()


if TYPE_CHECKING:
    _ServerInterceptor = grpc.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.ServerInterceptor


class TolerantDecoding(_ServerInterceptor):
    """Hand undecodable request bytes to the handler as MALFORMED instead of failing in grpc.

    grpc answers a request it cannot parse (truncated bytes, invalid UTF-8 in a string field)
    with a bare INTERNAL, and contract §3 allows INTERNAL for no input; the `rpc` wrapper turns
    MALFORMED into INVALID_ARGUMENT VALIDATION_FAILED. Only methods under `prefixes` are touched.
    """

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self._prefixes = prefixes

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method = getattr(handler_call_details, "method", "") or ""
        parse = getattr(handler, "request_deserializer", None)
        if handler is None or parse is None or not method.startswith(self._prefixes):
            return handler

        def tolerant(data: bytes) -> object:
            try:
                return parse(data)
            except Exception:
                return MALFORMED

        # grpc's method handlers are namedtuples.
        replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(  # type: ignore[attr-defined]
            request_deserializer=tolerant
        )
        return replaced


class AdmissionGate(_ServerInterceptor):
    """Answer a new call to `prefixes` SERVER_BUSY (with RetryInfo) at once when the server is
    draining, or when `limit` calls are already queued or running (`outstanding()`).

    The interceptor runs when grpc hands a call to the server, before it is queued for a worker
    thread. Calls that arrived before a drain began still run to completion; calls arriving
    during it, or beyond the limit, get the contract's status rather than grpc's bare
    CANCELLED or RESOURCE_EXHAUSTED.
    """

    def __init__(
        self, prefixes: tuple[str, ...], *, limit: int, outstanding: Callable[[], int]
    ) -> None:
        self._prefixes = prefixes
        self._limit = limit
        self._outstanding = outstanding
        self.draining = False
        # Refusals run on their own threads: queued behind the work that overloads the server
        # they would not be immediate, and they must not count as outstanding work.
        self._refusals = ThreadPoolExecutor(max_workers=REFUSAL_THREADS, thread_name_prefix="busy")
        self._side = ThreadPoolExecutor(max_workers=SIDE_THREADS, thread_name_prefix="side")

    def close(self) -> None:
        self._refusals.shutdown(wait=False, cancel_futures=True)
        self._side.shutdown(wait=False, cancel_futures=True)

    def _on_side_threads(
        self, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        for arity in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, arity, None)
            if behavior is None:
                continue
            if hasattr(behavior, "experimental_thread_pool"):
                return handler  # it brought its own threads (the health service does)

            def moved(*args: Any, _behavior: Callable[..., Any] = behavior) -> Any:
                return _behavior(*args)

            moved.experimental_thread_pool = self._side  # type: ignore[attr-defined]
            replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(  # type: ignore[attr-defined]
                **{arity: moved}
            )
            return replaced
        return handler

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method = getattr(handler_call_details, "method", "") or ""
        if handler is None:
            return None
        if not method.startswith(self._prefixes):
            # Reflection (and anything else not of the API) runs on the side threads: an open
            # reflection stream is not work the drain should wait for.
            return self._on_side_threads(handler)
        if not self.draining and self._outstanding() < self._limit:
            return handler

        def refuse(_requests: object, context: grpc.ServicerContext) -> None:
            metrics.observe(method.rsplit("/", 1)[-1], "RESOURCE_EXHAUSTED", "SERVER_BUSY", 0.0)
            context.abort_with_status(to_status(server_busy()))

        refuse.experimental_thread_pool = self._refusals  # type: ignore[attr-defined]
        # Stream-unary, so the answer goes out without waiting for the request message: a
        # client that sends headers and nothing else cannot hold a refusal thread.
        return grpc.stream_unary_rpc_method_handler(refuse, request_deserializer=_raw)


def _raw(data: bytes) -> bytes:
    return data


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


def rpc(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Wrap a servicer method: domain errors become rich statuses; bugs are logged without data."""
    name = handler.__name__

    @functools.wraps(handler)
    def wrapper(self: Any, request: Req, context: grpc.ServicerContext) -> Resp:
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
            if is_unavailable(error):
                reason, status = (
                    Reason.DATABASE_UNAVAILABLE.value,
                    to_status(database_unavailable()),
                )
            elif is_busy(error):
                busy = server_busy()
                reason, status = busy.reason.value, to_status(busy)
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


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


# grpc reports "no deadline" as a huge remaining time.
NO_DEADLINE_SECONDS = 24 * 3600.0


def time_remaining(context: grpc.ServicerContext) -> float | None:
    """Seconds left before the caller's deadline; None when the caller set none."""
    remaining = context.time_remaining()
    if remaining is None or remaining > NO_DEADLINE_SECONDS:
        return None
    return float(remaining)
