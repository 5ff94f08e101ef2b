"""The one server interceptor (ApiGate): how each call is handed to its handler."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc

from idservice.domain.errors import server_busy
from idservice.entrypoints.grpc import metrics
from idservice.entrypoints.grpc.errors import to_status

# Threads that answer SERVER_BUSY (cheap and never waiting on the client, so a few keep up
# with any overload), and threads for reflection (off the API's pool, so an open reflection
# stream is not work the drain waits for).
REFUSAL_THREADS = 2
SIDE_THREADS = 4


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
