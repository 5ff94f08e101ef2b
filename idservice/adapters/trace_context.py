"""W3C trace context on outgoing HTTP calls (PortOne, Google, Kakao, the webhook).

While a traced API call is handled, each HTTP request it makes carries the call's `traceparent`
(and `tracestate`), so the provider's side shows up in the caller's trace. Only once tracing is
on (`enable()`, called when the OpenTelemetry SDK is set up: entrypoints/grpc/telemetry.py);
until then nothing of OpenTelemetry is imported and the hook adds nothing. Requests made outside
a traced call (the outbox's webhook deliveries) carry no trace. The header holds random ids
only, nothing about the person or the call.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

import httpx

_inject: Callable[[MutableMapping[str, str]], None] | None = None


def enable() -> None:
    """Propagate the current span's context from now on (the process's global propagator:
    `OTEL_PROPAGATORS`, by default W3C trace context and baggage)."""
    global _inject  # noqa: PLW0603
    from opentelemetry import propagate

    _inject = propagate.inject


def add_trace_context(request: httpx.Request) -> None:
    """An httpx request hook: the current span's trace context into the request's headers."""
    if _inject is not None:
        _inject(request.headers)


# `httpx.Client(event_hooks=EVENT_HOOKS)` for every client that calls out.
EVENT_HOOKS: dict[str, list[Callable[[httpx.Request], None]]] = {"request": [add_trace_context]}
