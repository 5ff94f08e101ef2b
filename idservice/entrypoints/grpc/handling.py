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
    """Stands in for a request whose bytes are not the method's message (see ApiGate)."""

    __slots__ = ()


MALFORMED = MalformedRequest()


if TYPE_CHECKING:
    _ServerInterceptor = grpc.ServerInterceptor[Any, Any]
    MethodHandler = grpc.RpcMethodHandler[Any, Any]
else:
    _ServerInterceptor = grpc.ServerInterceptor
    MethodHandler = grpc.RpcMethodHandler


class ApiGate(_ServerInterceptor):
    """The one interceptor: how each call is handed to its handler.

    - API calls (methods under `prefixes`) get a request parser that never fails: grpc answers
      bytes it cannot parse (truncated, invalid UTF-8 in a string) with a bare INTERNAL, which
      contract §3 allows for no input, so the handler receives MALFORMED and the `rpc` wrapper
      answers INVALID_ARGUMENT VALIDATION_FAILED.
    - While draining, or when `limit` calls are already queued or running (`outstanding()`),
      a new API call is answered SERVER_BUSY (with RetryInfo) at once. The gate runs when grpc
      hands the call to the server, before it waits for a worker thread, so calls received
      before a drain began still run to completion.
    - Anything else (reflection) runs on side threads, so an open reflection stream is not work
      the drain waits for.

    The prepared handlers are made once per method and reused for every call.
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
        # method -> (the handler to use, its refusal; None for methods outside the API)
        self._prepared: dict[str, tuple[MethodHandler, MethodHandler | None]] = {}

    def close(self) -> None:
        self._refusals.shutdown(wait=False, cancel_futures=True)
        self._side.shutdown(wait=False, cancel_futures=True)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], MethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> MethodHandler | None:
        method = getattr(handler_call_details, "method", "") or ""
        prepared = self._prepared.get(method)
        if prepared is None:
            handler = continuation(handler_call_details)
            if handler is None:
                return None
            prepared = self._prepare(method, handler)
            self._prepared[method] = prepared
        handler, refusal = prepared
        if refusal is None or (not self.draining and self._outstanding() < self._limit):
            return handler
        return refusal

    def _prepare(
        self, method: str, handler: MethodHandler
    ) -> tuple[MethodHandler, MethodHandler | None]:
        if not method.startswith(self._prefixes):
            return self._on_side_threads(handler), None
        parse = handler.request_deserializer
        if parse is not None:

            def tolerant(data: bytes) -> object:
                try:
                    return parse(data)
                except Exception:
                    return MALFORMED

            handler = handler._replace(request_deserializer=tolerant)  # type: ignore[attr-defined]
        name = method.rsplit("/", 1)[-1]

        def refuse(_requests: object, context: grpc.ServicerContext) -> None:
            metrics.observe(name, "RESOURCE_EXHAUSTED", "SERVER_BUSY", 0.0)
            context.abort_with_status(to_status(server_busy()))

        refuse.experimental_thread_pool = self._refusals  # type: ignore[attr-defined]
        # Stream-unary, so the answer goes out without waiting for the request message: a
        # client that sends headers and nothing else cannot hold a refusal thread.
        return handler, grpc.stream_unary_rpc_method_handler(refuse, request_deserializer=_raw)

    def _on_side_threads(self, handler: MethodHandler) -> MethodHandler:
        for arity in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, arity, None)
            if behavior is None:
                continue
            if hasattr(behavior, "experimental_thread_pool"):
                return handler  # it brought its own threads (the health service does)

            def moved(*args: Any, _behavior: Callable[..., Any] = behavior) -> Any:
                return _behavior(*args)

            moved.experimental_thread_pool = self._side  # type: ignore[attr-defined]
            replaced: MethodHandler = handler._replace(**{arity: moved})  # type: ignore[attr-defined]
            return replaced
        return handler


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
