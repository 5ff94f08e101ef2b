"""W3C trace context on outgoing HTTP calls (PortOne, Google, Kakao, the webhook).

While a traced API call is handled, each HTTP request it makes carries the call's `traceparent`,
so the provider's side shows up in the caller's trace. Only once tracing is on (`enable()`,
called when the OpenTelemetry SDK is set up: entrypoints/grpc/telemetry.py); until then nothing
of OpenTelemetry is imported and the hook adds nothing. Requests made outside a traced call (the
outbox's webhook deliveries) carry no trace. Only `traceparent` goes out, which holds random ids
only: the caller's `tracestate` and `baggage` are free text it chose (a phone number, say), so
they never reach a provider, whatever `OTEL_PROPAGATORS` says.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

import httpx

_inject: Callable[[MutableMapping[str, str]], None] | None = None


TRACEPARENT = "traceparent"


def enable() -> None:
    """Propagate the current span's `traceparent` from now on (W3C trace context alone)."""
    global _inject  # noqa: PLW0603
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()

    def inject(headers: MutableMapping[str, str]) -> None:
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
        if TRACEPARENT in carrier:
            headers[TRACEPARENT] = carrier[TRACEPARENT]

    _inject = inject


def add_trace_context(request: httpx.Request) -> None:
    """An httpx request hook: the current span's trace context into the request's headers."""
    if _inject is not None:
        _inject(request.headers)


# `httpx.Client(event_hooks=EVENT_HOOKS)` for every client that calls out.
EVENT_HOOKS: dict[str, list[Callable[[httpx.Request], None]]] = {"request": [add_trace_context]}
