"""The trace a call belongs to: the trace id of its W3C `traceparent` metadata (Trace Context,
https://www.w3.org/TR/trace-context/), for its log lines (`trace_id`).

A missing, repeated or malformed `traceparent` gives no trace id, never an error. When spans are
exported (`telemetry.py`), the id is that of the call's span instead: the caller's trace when it
sent a valid `traceparent`, else the new trace the span started.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import grpc

TRACEPARENT_KEY = "traceparent"
# version-traceid-parentid-flags, lowercase hex. A later version may append fields after a dash.
_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<parent_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?",
    re.DOTALL,
)
_INVALID_VERSION = "ff"
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16

# Set by `telemetry` when spans are exported: the trace id of the span current on this thread.
_span_trace_id: Callable[[], str | None] | None = None


def parse_traceparent(value: str) -> str | None:
    """The trace id (32 lowercase hex digits) of a `traceparent` value, or None if invalid."""
    match = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    version = match["version"]
    if version == _INVALID_VERSION or (version == "00" and match["rest"] is not None):
        return None
    if match["trace_id"] == _ZERO_TRACE_ID or match["parent_id"] == _ZERO_PARENT_ID:
        return None
    return match["trace_id"]


def incoming_trace_id(context: grpc.ServicerContext) -> str | None:
    """The trace id of the call's one `traceparent` metadata; None if absent, repeated or bad."""
    values = [
        value
        for key, value in context.invocation_metadata() or ()
        if key == TRACEPARENT_KEY and isinstance(value, str)
    ]
    return parse_traceparent(values[0]) if len(values) == 1 else None


def trace_id(context: grpc.ServicerContext) -> str | None:
    """The trace id for the call's log lines: its span's when spans are exported, else the one
    its `traceparent` names."""
    if _span_trace_id is not None:
        return _span_trace_id()
    return incoming_trace_id(context)


def use_span_trace_ids(current: Callable[[], str | None]) -> None:
    """Take trace ids from the current span from now on (called once spans are exported)."""
    global _span_trace_id  # noqa: PLW0603
    _span_trace_id = current
