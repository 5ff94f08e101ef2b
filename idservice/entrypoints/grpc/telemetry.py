"""OpenTelemetry traces of the API's calls, exported over OTLP/HTTP (protobuf) only when the
standard OpenTelemetry variables ask for it; otherwise no SDK is set up and nothing is sent.

On when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set, or
`OTEL_TRACES_EXPORTER=otlp` (the exporter's default endpoint, http://localhost:4318/v1/traces);
off with `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The exporter, the batch
processor and the sampler read their own standard variables (`OTEL_EXPORTER_OTLP_*HEADERS`,
`OTEL_BSP_*`, `OTEL_TRACES_SAMPLER`, …); `OTEL_SERVICE_NAME` defaults to `idservice`. Another
exporter or protocol (grpc) is refused at start-up, naming the variable.

Each call of the API gets one SERVER span (opentelemetry-instrumentation-grpc) that continues the
caller's trace (W3C `traceparent`), named after the method, with `rpc.system`, `rpc.service`,
`rpc.method` and `rpc.grpc.status_code`, and an error status for the codes the semantic
conventions call server errors. Nothing personal: the spans leave without the peer's address
and port (`net.peer.*`), the user agent, status descriptions and exception messages, and no
request field is ever recorded. Health checks and reflection are not traced.

The OpenTelemetry packages are imported only when tracing is on.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import grpc

from idservice.bootstrap import propagate_traces
from idservice.config import ConfigError
from idservice.entrypoints.grpc import tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    _ServerInterceptor = grpc.ServerInterceptor[Any, Any]
    MethodHandler = grpc.RpcMethodHandler[Any, Any]
else:
    _ServerInterceptor = grpc.ServerInterceptor
    MethodHandler = grpc.RpcMethodHandler

SERVICE_NAME = "idservice"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
SUPPORTED_PROTOCOL = "http/protobuf"
# Attributes the gRPC instrumentation records that say who the caller is: never exported.
DROPPED_ATTRIBUTES = frozenset({"net.peer.ip", "net.peer.port", "net.peer.name", "rpc.user_agent"})
# Of an exception event, only its type leaves (a message may quote input).
KEPT_EVENT_ATTRIBUTES = frozenset({"exception.type"})
STATUS_CODE_ATTRIBUTE = "rpc.grpc.status_code"
# OpenTelemetry semantic conventions for gRPC: the codes that mark a SERVER span as an error.
SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """True when the standard variables ask for OTLP traces (see the module doc)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    if exporter not in {"", "otlp"}:
        raise ConfigError("OTEL_TRACES_EXPORTER", "only otlp (or none) is supported")
    endpoint = any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)
    enabled = exporter == "otlp" or endpoint
    if enabled:
        for name in PROTOCOL_VARIABLES:
            protocol = environ.get(name, "").strip().lower()
            if protocol and protocol != SUPPORTED_PROTOCOL:
                raise ConfigError(name, f"only {SUPPORTED_PROTOCOL} is supported")
            if protocol:
                break
    return enabled


@functools.cache
def server_interceptors(api_prefixes: tuple[str, ...]) -> tuple[_ServerInterceptor, ...]:
    """The interceptors that trace the calls whose method starts with one of `api_prefixes`
    (to go before the others); none when tracing is off. Sets tracing up once per process."""
    if not tracing_enabled():
        return ()
    from opentelemetry import trace
    from opentelemetry.instrumentation.grpc import server_interceptor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, str] = {"service.version": _version()}
    if not os.environ.get("OTEL_SERVICE_NAME", "").strip():
        attributes["service.name"] = SERVICE_NAME
    # Shut down (the last spans flushed) when the process exits.
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(_without_personal_data(_otlp_exporter())))

    def current_trace_id() -> str | None:
        context = trace.get_current_span().get_span_context()
        return trace.format_trace_id(context.trace_id) if context.is_valid else None

    tracing.use_span_trace_ids(current_trace_id)
    propagate_traces()  # outgoing HTTP calls carry the call's trace

    def is_api_call(details: grpc.HandlerCallDetails) -> bool:
        return str(getattr(details, "method", "") or "").startswith(api_prefixes)

    return (
        server_interceptor(tracer_provider=provider, filter_=is_api_call),  # type: ignore[no-untyped-call]
        _StatusOnSpan(api_prefixes),
    )


def _version() -> str:
    try:
        return version("idservice")
    except PackageNotFoundError:
        return "unknown"


def _otlp_exporter() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _without_personal_data(exporter: SpanExporter) -> SpanExporter:
    """`exporter`, handed copies of the spans without DROPPED_ATTRIBUTES, status descriptions
    and exception messages."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Status

    def scrubbed(span: ReadableSpan) -> ReadableSpan:
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes={
                key: value
                for key, value in (span.attributes or {}).items()
                if key not in DROPPED_ATTRIBUTES
            },
            events=[
                Event(
                    event.name,
                    {
                        key: value
                        for key, value in (event.attributes or {}).items()
                        if key in KEPT_EVENT_ATTRIBUTES
                    },
                    event.timestamp,
                )
                for event in span.events
            ],
            links=span.links,
            kind=span.kind,
            status=Status(span.status.status_code),
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    class Scrubbing(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return exporter.export([scrubbed(span) for span in spans])

        def shutdown(self) -> None:
            exporter.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return exporter.force_flush(timeout_millis)

    return Scrubbing()


class _StatusOnSpan(_ServerInterceptor):
    """Puts the code a call was answered with on its span. The instrumentation sees the codes
    set through `abort` and `set_code`, but not `abort_with_status`, which every answer of the
    `rpc` wrapper and the gate uses. Goes right after the tracing interceptor, inside its span."""

    def __init__(self, api_prefixes: tuple[str, ...]) -> None:
        self._prefixes = api_prefixes

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], MethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> MethodHandler | None:
        handler = continuation(handler_call_details)
        method = str(getattr(handler_call_details, "method", "") or "")
        if handler is None or not method.startswith(self._prefixes):
            return handler
        # Only single answers: the API streams none (a stream would need its iterator wrapped).
        for arity in ("unary_unary", "stream_unary"):
            behavior = getattr(handler, arity, None)
            if behavior is not None:
                replaced: MethodHandler = handler._replace(  # type: ignore[attr-defined]
                    **{arity: _recording_status(behavior)}
                )
                return replaced
        return handler


def _recording_status(behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    @functools.wraps(behavior)
    def recorded(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except BaseException:
            code = _answered_code(context) or grpc.StatusCode.UNKNOWN
            span = trace.get_current_span()
            span.set_attribute(STATUS_CODE_ATTRIBUTE, code.value[0])
            if code in SERVER_ERROR_CODES:
                span.set_status(Status(StatusCode.ERROR))
            raise

    return recorded


def _answered_code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The code the handler aborted with (grpc's `ServicerContext.code()`, untyped in the stubs)."""
    code = getattr(context, "code", lambda: None)()
    return code if isinstance(code, grpc.StatusCode) else None
