"""Trace context: a call's W3C `traceparent` puts its trace id in the call's log lines, and with
an OTLP endpoint configured the call's span reaches the collector (a stand-in on loopback) in the
caller's trace, with the method and status code and nothing about the caller. With nothing
configured no OpenTelemetry SDK is set up and nothing is sent."""

from __future__ import annotations

import functools
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idservice.v1 import auth_pb2, identity_pb2
from tests.fakes.otlp import OtlpCollectorStandIn, ReceivedSpan
from tests.fakes.portone import PortOneStandIn
from tests.support.client import Client, failure_of
from tests.support.json_logs import log_lines
from tests.support.server_process import ServerProcess

pytestmark = pytest.mark.slow

FAST_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
}
# Whatever the developer's shell exports, these start unset (empty counts as unset).
NO_OTEL = {
    name: ""
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    )
}
AUTH = "idservice.v1.AuthService"
UNKNOWN_EMAIL = "nobody-traced@example.com"
# OTLP span kind SERVER; status codes UNSET and ERROR.
SPAN_KIND_SERVER = 2
STATUS_UNSET = 0


def traceparent() -> tuple[str, str, str]:
    """A fresh (header value, trace id, parent span id)."""
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def access_lines(stderr: Path) -> list[dict[str, Any]]:
    lines = log_lines(stderr.read_text(encoding="utf-8"))
    return [line for line in lines if line.get("logger") == "idservice.access"]


def line_of(lines: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    (line,) = [line for line in lines if line.get("request_id") == request_id]
    return line


def calls(client: Client, channel: grpc.Channel) -> dict[str, tuple[str | None, str | None]]:
    """Makes the test's calls; by request id, the (traceparent, trace id) each was sent with."""
    sent: dict[str, tuple[str | None, str | None]] = {}
    jwks_header, jwks_trace, _ = traceparent()
    login_header, login_trace, _ = traceparent()
    cases: list[tuple[str, str | None, str | None]] = [
        ("traced-jwks-call", jwks_header, jwks_trace),
        ("traced-login-call", login_header, login_trace),
        ("untraced-jwks-call", None, None),
        ("malformed-trace-call", "00-not-a-trace-01", None),
        ("zero-trace-call", f"00-{'0' * 32}-{secrets.token_hex(8)}-01", None),
    ]
    for request_id, header, trace_id in cases:
        metadata: list[tuple[str, str]] = [("x-request-id", request_id)]
        if header is not None:
            metadata.append(("traceparent", header))
        if request_id == "traced-login-call":
            login = auth_pb2.PasswordLoginRequest(email=UNKNOWN_EMAIL, password="wrong password")
            failure = failure_of(
                functools.partial(client.auth.PasswordLogin, login, metadata=tuple(metadata))
            )
            assert failure.code == grpc.StatusCode.UNAUTHENTICATED
        else:
            client.auth.GetJwks(auth_pb2.GetJwksRequest(), metadata=tuple(metadata))
        sent[request_id] = (header, trace_id)
    # Health checks are not traced.
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    return sent


def test_spans_reach_the_collector_in_the_callers_trace(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    with OtlpCollectorStandIn() as collector:
        env = {
            **FAST_ARGON2,
            **NO_OTEL,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        with ServerProcess(env, workdir, log_dir=tmp_path) as server:
            with server.channel() as channel:
                sent = calls(Client(channel), channel)
            spans = collector.wait_for_spans(len(sent))
            assert server.terminate() == 0, server.logs()
        spans = collector.spans
    assert len(spans) == len(sent), spans  # one per API call, none for the health check

    jwks_header, jwks_trace = sent["traced-jwks-call"]
    assert jwks_header is not None
    (jwks,) = [span for span in spans if span.trace_id == jwks_trace]
    assert jwks.parent_span_id == jwks_header.split("-")[2]
    assert jwks.name == f"/{AUTH}/GetJwks"
    assert jwks.kind == SPAN_KIND_SERVER
    assert jwks.attributes["rpc.system"] == "grpc"
    assert jwks.attributes["rpc.service"] == AUTH
    assert jwks.attributes["rpc.method"] == "GetJwks"
    assert jwks.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert jwks.resource["service.name"] == "idservice"

    _, login_trace = sent["traced-login-call"]
    (login,) = [span for span in spans if span.trace_id == login_trace]
    assert login.attributes["rpc.method"] == "PasswordLogin"
    assert login.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    # A client's error, not the server's (OpenTelemetry's gRPC conventions).
    assert login.status_code == STATUS_UNSET

    # Invalid or absent trace context: a new trace, not the zero one.
    others = [span for span in spans if span not in (jwks, login)]
    assert len(others) == 3
    assert all(span.parent_span_id == "" and span.trace_id.strip("0") for span in others)
    for span in spans:
        assert_nothing_personal(span)

    lines = access_lines(server.stderr_path)
    assert line_of(lines, "traced-jwks-call")["trace_id"] == jwks_trace
    assert line_of(lines, "traced-login-call")["trace_id"] == login_trace
    # With spans exported, a call without a valid traceparent logs its new trace's id.
    for request_id in ("untraced-jwks-call", "malformed-trace-call", "zero-trace-call"):
        assert line_of(lines, request_id)["trace_id"] in {span.trace_id for span in others}


def portone_call(channel: grpc.Channel, header: str | None) -> None:
    """CompleteVerification of an id PortOne does not know (the stand-in answers 404)."""
    metadata: tuple[tuple[str, str | bytes], ...] = (("x-request-id", "traced-portone-call"),)
    if header is not None:
        # A caller's tracestate and baggage are its own free text: they go no further.
        metadata += (
            ("traceparent", header),
            ("tracestate", "vendor=hong01012345678"),
            ("baggage", "phone=010-1234-5678"),
        )
    request = identity_pb2.CompleteVerificationRequest(
        provider=identity_pb2.VERIFICATION_PROVIDER_PORTONE, verification_id="iv-unknown"
    )
    with pytest.raises(grpc.RpcError):
        channel.unary_unary(
            "/idservice.v1.IdentityService/CompleteVerification",
            request_serializer=identity_pb2.CompleteVerificationRequest.SerializeToString,
            response_deserializer=identity_pb2.CompleteVerificationResponse.FromString,
        )(request, metadata=metadata, timeout=30)


@pytest.mark.parametrize("traced", [True, False], ids=["tracing-on", "tracing-off"])
def test_calls_to_portone_carry_the_api_calls_trace(tmp_path: Path, traced: bool) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    header, trace_id, _ = traceparent()
    with OtlpCollectorStandIn() as collector, PortOneStandIn(secret="s3cret") as portone:
        env = {
            **FAST_ARGON2,
            **NO_OTEL,
            "IDSERVICE_IDENTITY_PROVIDER": "portone",
            "IDSERVICE_PORTONE_API_SECRET": "s3cret",
            "IDSERVICE_PORTONE_API_BASE": portone.base_url,
        }
        if traced:
            env |= {
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }
        with ServerProcess(env, workdir, log_dir=tmp_path) as server:
            with server.channel() as channel:
                portone_call(channel, header)
            if traced:
                (span,) = collector.wait_for_spans(1)
            assert server.terminate() == 0, server.logs()
        (request,) = portone.requests
    if not traced:
        assert "traceparent" not in request.headers
        return
    # The call to PortOne is a child of the API call's span, in the caller's trace.
    assert span.trace_id == trace_id
    assert request.headers["traceparent"] == f"00-{trace_id}-{span.span_id}-01"
    assert "tracestate" not in request.headers and "baggage" not in request.headers


def assert_nothing_personal(span: ReceivedSpan) -> None:
    keys = set(span.attributes)
    assert not keys & {"net.peer.ip", "net.peer.port", "net.peer.name", "rpc.user_agent"}, keys
    assert not any(key.startswith(("client.", "network.peer.")) for key in keys), keys
    text = json.dumps([span.attributes, span.events, span.status_message], default=str)
    assert UNKNOWN_EMAIL not in text and "127.0.0.1" not in text, text
    assert span.status_message == ""


def test_without_configuration_nothing_is_sent_and_logs_carry_the_trace_id(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    with OtlpCollectorStandIn() as collector:
        # The collector listens where a configured exporter would send, but nothing names it.
        env = {**FAST_ARGON2, **NO_OTEL}
        with ServerProcess(env, workdir, log_dir=tmp_path) as server:
            with server.channel() as channel:
                sent = calls(Client(channel), channel)
            assert server.terminate() == 0, server.logs()
        assert collector.requests == 0

    lines = access_lines(server.stderr_path)
    for request_id, (_header, trace_id) in sent.items():
        line = line_of(lines, request_id)
        if trace_id is None:
            assert "trace_id" not in line, line  # absent or malformed: no field, no error
        else:
            assert line["trace_id"] == trace_id
            assert list(line).index("trace_id") == list(line).index("request_id") + 1


def test_no_opentelemetry_sdk_is_loaded_when_off() -> None:
    """Building the server's interceptors with nothing configured imports no OpenTelemetry."""
    script = (
        "import sys\n"
        "from idservice.entrypoints.grpc import server, telemetry\n"
        "assert telemetry.server_interceptors(('/idservice.v1.AuthService/',)) == ()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
