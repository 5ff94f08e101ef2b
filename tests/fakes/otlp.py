"""An OTLP/HTTP trace receiver on 127.0.0.1, standing in for an OpenTelemetry collector: accepts
`POST /v1/traces` with a protobuf `ExportTraceServiceRequest` and keeps every span it got.

with OtlpCollectorStandIn() as collector:
    ... OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint ...
    collector.wait_for_spans(1)     # the spans received, once there is one
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.fakes.http_stand_in import WAIT_SECONDS, HttpStandIn

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector got it: ids in lowercase hex, attributes as plain values."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]


class OtlpCollectorStandIn(HttpStandIn):
    """Answers 200 with an empty ExportTraceServiceResponse; thread-served, start with `with`."""

    def __init__(self) -> None:
        super().__init__(_make_handler(self))
        self._spans: list[ReceivedSpan] = []
        self.requests = 0

    @property
    def endpoint(self) -> str:
        """For OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces)."""
        return self._base_url

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for_spans(self, count: int, timeout: float = WAIT_SECONDS) -> list[ReceivedSpan]:
        self._wait(
            lambda: len(self._spans) >= count,
            timeout,
            lambda: f"{len(self._spans)} spans received, expected {count}",
        )
        return self.spans

    def _received(self, request: ExportTraceServiceRequest) -> None:
        spans = [
            ReceivedSpan(
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex(),
                name=span.name,
                kind=span.kind,
                attributes={a.key: _plain(a.value) for a in span.attributes},
                status_code=span.status.code,
                status_message=span.status.message,
                events=[
                    (event.name, {a.key: _plain(a.value) for a in event.attributes})
                    for event in span.events
                ],
                resource={a.key: _plain(a.value) for a in resource_spans.resource.attributes},
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.requests += 1
            self._spans.extend(spans)
            self._lock.notify_all()


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def _make_handler(stand_in: OtlpCollectorStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if self.path != TRACES_PATH:
                self._answer(404, b"")
                return
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except DecodeError:
                self._answer(400, b"")
                return
            stand_in._received(request)
            self._answer(200, ExportTraceServiceResponse().SerializeToString())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
