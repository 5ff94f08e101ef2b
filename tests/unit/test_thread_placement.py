"""Which thread pool a call runs on: the gate puts the quick calls on their pool, and
`ThreadPlacement` keeps them there when another interceptor (tracing) wraps the handler."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from idservice.entrypoints.grpc.interceptors import ApiGate, ThreadPlacement
from idservice.entrypoints.grpc.pools import QUICK_METHODS

PREFIX = "/idservice.v1.AuthService/"


class Details(grpc.HandlerCallDetails):
    """What grpc hands an interceptor: the method's full name (and no metadata)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _behavior(request: object, context: object) -> object:
    return request


def _registered(_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(_behavior)


def _wrapped_like_tracing(
    inner: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
) -> Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None]:
    """What OpenTelemetry's server interceptor does: a new handler around a new function."""

    def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = inner(details)
        assert handler is not None
        behavior: Any = handler.unary_unary

        def traced(request: object, context: object) -> object:
            return behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(traced)

    return continuation


@pytest.fixture
def quick_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1)


def _gate(quick_pool: ThreadPoolExecutor, outstanding: int = 0) -> ApiGate:
    return ApiGate(
        (PREFIX,), limit=10, outstanding=lambda: outstanding, quick=(QUICK_METHODS, quick_pool)
    )


def _pool(handler: grpc.RpcMethodHandler[Any, Any] | None) -> object:
    assert handler is not None
    behavior = handler.unary_unary or handler.stream_unary
    return getattr(behavior, "experimental_thread_pool", None)


def test_the_gate_puts_quick_calls_on_their_pool_and_others_on_the_servers(
    quick_pool: ThreadPoolExecutor,
) -> None:
    gate = _gate(quick_pool)
    try:
        quick = gate.intercept_service(_registered, Details(PREFIX + "IntrospectToken"))
        assert _pool(quick) is quick_pool
        assert gate.placed_on() is quick_pool
        main = gate.intercept_service(_registered, Details(PREFIX + "PasswordLogin"))
        assert _pool(main) is None  # grpc runs it on the server's own pool
        assert gate.placed_on() is None
    finally:
        gate.close()


def test_the_placement_survives_a_wrapping_interceptor(quick_pool: ThreadPoolExecutor) -> None:
    gate = _gate(quick_pool)
    placement = ThreadPlacement(gate)
    try:
        chain = _wrapped_like_tracing(lambda details: gate.intercept_service(_registered, details))
        alone = chain(Details(PREFIX + "GetAccount"))
        assert _pool(alone) is None  # the wrapper lost it
        placed = placement.intercept_service(chain, Details(PREFIX + "GetAccount"))
        assert _pool(placed) is quick_pool
        assert placement.intercept_service(chain, Details(PREFIX + "SignUp")) is not None
        assert _pool(placement.intercept_service(chain, Details(PREFIX + "SignUp"))) is None
    finally:
        gate.close()


def test_a_refusal_stays_on_the_refusal_threads_under_a_wrapping_interceptor(
    quick_pool: ThreadPoolExecutor,
) -> None:
    gate = _gate(quick_pool, outstanding=10)  # at the limit: every call is refused
    placement = ThreadPlacement(gate)
    try:

        def chain(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
            handler = gate.intercept_service(_registered, details)
            assert handler is not None
            behavior: Any = handler.stream_unary

            def traced(requests: object, context: object) -> object:
                return behavior(requests, context)

            return grpc.stream_unary_rpc_method_handler(traced)

        refused = gate.intercept_service(_registered, Details(PREFIX + "IntrospectToken"))
        refusal_pool = _pool(refused)
        assert refusal_pool is not None and refusal_pool is not quick_pool
        placed = placement.intercept_service(chain, Details(PREFIX + "IntrospectToken"))
        assert _pool(placed) is refusal_pool
    finally:
        gate.close()
