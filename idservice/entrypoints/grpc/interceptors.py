"""Server interceptors: ApiGate (how each call reaches its handler) and ThreadPlacement."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from concurrent.futures import Executor, ThreadPoolExecutor
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
    - API calls named in `quick` run on its pool (`HandlerPools.quick`), the others on the
      server's own.
    - Anything else (reflection) runs on side threads, so an open reflection stream is not work
      the drain waits for.

    The prepared handlers are made once per method and reused for every call.
    """

    def __init__(
        self,
        prefixes: tuple[str, ...],
        *,
        limit: int,
        outstanding: Callable[[], int],
        quick: tuple[Collection[str], Executor] | None = None,
    ) -> None:
        self._prefixes = prefixes
        self._quick = quick
        # The handler this thread's last call was given (its pool, for `ThreadPlacement`).
        self._placed = threading.local()
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
            self._placed.handler = handler
            return handler
        self._placed.handler = refusal
        return refusal

    def placed_on(self) -> Executor | None:
        """The pool the gate chose for the call it last handled on this thread (None: the
        server's own). Read from the handler only when asked (under tracing)."""
        handler: MethodHandler | None = getattr(self._placed, "handler", None)
        return None if handler is None else _pool_of(handler)

    def _prepare(
        self, method: str, handler: MethodHandler
    ) -> tuple[MethodHandler, MethodHandler | None]:
        if not method.startswith(self._prefixes):
            return _on_threads(handler, self._side), None
        name = method.rsplit("/", 1)[-1]
        if self._quick is not None and name in self._quick[0]:
            handler = _on_threads(handler, self._quick[1])
        parse = handler.request_deserializer
        if parse is not None:

            def tolerant(data: bytes) -> object:
                try:
                    return parse(data)
                except Exception:
                    return MALFORMED

            handler = handler._replace(request_deserializer=tolerant)  # type: ignore[attr-defined]

        def refuse(_requests: object, context: grpc.ServicerContext) -> None:
            metrics.observe(name, "RESOURCE_EXHAUSTED", "SERVER_BUSY", 0.0)
            context.abort_with_status(to_status(server_busy()))

        refuse.experimental_thread_pool = self._refusals  # type: ignore[attr-defined]
        # Stream-unary, so the answer goes out without waiting for the request message: a
        # client that sends headers and nothing else cannot hold a refusal thread.
        return handler, grpc.stream_unary_rpc_method_handler(refuse, request_deserializer=_raw)


class ThreadPlacement(_ServerInterceptor):
    """Goes first (outermost) when other interceptors wrap the gate's handlers: a wrapper is a
    new function without grpc's `experimental_thread_pool` (OpenTelemetry's is), and the call
    would run on the server's own pool. This puts it back on the pool the gate chose."""

    def __init__(self, gate: ApiGate) -> None:
        self._gate = gate

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], MethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> MethodHandler | None:
        handler = continuation(handler_call_details)
        pool = self._gate.placed_on()
        if handler is None or pool is None:
            return handler
        return _on_threads(handler, pool)


def _pool_of(handler: MethodHandler) -> Executor | None:
    for arity in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behavior = getattr(handler, arity, None)
        if behavior is not None:
            pool: Executor | None = getattr(behavior, "experimental_thread_pool", None)
            return pool
    return None


def _on_threads(handler: MethodHandler, pool: Executor) -> MethodHandler:
    """`handler`, its behaviour run on `pool` (grpc's `experimental_thread_pool`) unless it
    brought threads of its own (the health service does)."""
    for arity in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behavior = getattr(handler, arity, None)
        if behavior is None:
            continue
        if hasattr(behavior, "experimental_thread_pool"):
            return handler

        def moved(*args: Any, _behavior: Callable[..., Any] = behavior) -> Any:
            return _behavior(*args)

        moved.experimental_thread_pool = pool  # type: ignore[attr-defined]
        replaced: MethodHandler = handler._replace(**{arity: moved})  # type: ignore[attr-defined]
        return replaced
    return handler


def _raw(data: bytes) -> bytes:
    return data
