"""A PortOne V2 API stand-in: a real HTTP server on loopback serving identity verifications.

It speaks the documented wire format of `GET /identity-verifications/{identityVerificationId}`
(developers.portone.io, "본인인증 단건 조회"): the `Authorization: PortOne <secret>` header,
the optional `storeId` query parameter, the VERIFIED / READY / FAILED bodies and the error body
`{"type": ..., "message": ...}`. Tests register what each id should answer::

    with PortOneStandIn(secret="test-secret") as portone:
        portone.add_verified("iv-1", name="홍길동", phone="01012345678",
                             birth_date="1990-01-15", ci="...", di="...")
        portone.add_status("iv-2", "READY")
        portone.add_failure("iv-3", 500, times=2)   # two 500s, then what else is registered
        portone.add_slow("iv-4", 5.0)               # delay, then what else is registered
        # point the service at portone.base_url (IDSERVICE_PORTONE_API_BASE)
        ...
        assert portone.requests[0].headers["authorization"] == "PortOne test-secret"

An unregistered id answers 404 IDENTITY_VERIFICATION_NOT_FOUND. It uses only the standard
library, so the e2e suite can run it in the test process beside a server subprocess.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PATH_PREFIX = "/identity-verifications/"
_TIMESTAMP = "2026-01-05T09:00:00.000Z"
_POLL_INTERVAL = 0.02

# The error `type` PortOne sends with each HTTP status the stand-in can answer.
ERROR_TYPES: Mapping[int, str] = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "IDENTITY_VERIFICATION_NOT_FOUND",
    409: "IDENTITY_VERIFICATION_ALREADY_VERIFIED",
    429: "MAX_TRANSACTION_COUNT_REACHED",
    500: "INTERNAL_SERVER_ERROR",
    502: "PG_PROVIDER",
    503: "SERVICE_UNAVAILABLE",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stand-in received (headers keyed in lower case)."""

    method: str
    path: str
    verification_id: str | None
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class _Failure:
    http_status: int
    remaining: int | None  # None: fail forever


@dataclass
class _Scenarios:
    bodies: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    failures: dict[str, _Failure] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)


def error_body(error_type: str, message: str) -> dict[str, str]:
    """PortOne's error body shape."""
    return {"type": error_type, "message": message}


def verified_body(
    verification_id: str,
    *,
    name: str,
    phone: str,
    birth_date: str,
    ci: str | None,
    di: str | None,
    gender: str | None = "MALE",
    is_foreigner: bool = False,
) -> dict[str, Any]:
    """A VerifiedIdentityVerification; ci/di/gender set to None are left out, as PortOne does."""
    customer: dict[str, Any] = {
        "id": "customer-1",
        "name": name,
        "operator": "SKT",
        "phoneNumber": phone,
        "birthDate": birth_date,
        "isForeigner": is_foreigner,
    }
    if gender is not None:
        customer["gender"] = gender
    if ci is not None:
        customer["ci"] = ci
    if di is not None:
        customer["di"] = di
    return {
        "status": "VERIFIED",
        "id": verification_id,
        "channel": {
            "type": "LIVE",
            "id": "channel-1",
            "key": "channel-key-1",
            "name": "danal",
            "pgProvider": "DANAL",
            "pgMerchantId": "merchant-1",
        },
        "verifiedCustomer": customer,
        "requestedAt": _TIMESTAMP,
        "updatedAt": _TIMESTAMP,
        "statusChangedAt": _TIMESTAMP,
        "verifiedAt": _TIMESTAMP,
        "pgTxId": f"pg-{verification_id}",
        "pgRawResponse": "{}",
        "version": "V2",
    }


def status_body(verification_id: str, status: str) -> dict[str, Any]:
    """A ReadyIdentityVerification or FailedIdentityVerification."""
    body: dict[str, Any] = {
        "status": status,
        "id": verification_id,
        "requestedCustomer": {},
        "requestedAt": _TIMESTAMP,
        "updatedAt": _TIMESTAMP,
        "statusChangedAt": _TIMESTAMP,
        "version": "V2",
    }
    if status == "FAILED":
        body["failure"] = {"reason": "사용자가 본인인증을 취소했습니다", "pgCode": "CANCELLED"}
    return body


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, pool shutdown) are normal here, not worth a traceback;
        # a bug in the stand-in still prints one.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class PortOneStandIn:
    """A thread-served PortOne API on 127.0.0.1; start with `with` or start()/stop()."""

    def __init__(self, *, secret: str, store_id: str | None = None) -> None:
        # With `store_id`, a request naming another store is refused 403 like PortOne does;
        # a request without storeId is served (PortOne then uses the secret's own store).
        self.secret = secret
        self.store_id = store_id
        self._lock = threading.Lock()
        self._scenarios = _Scenarios()
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`, the value for IDSERVICE_PORTONE_API_BASE."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> PortOneStandIn:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                # shutdown() waits up to one poll interval; the default 0.5 s slows every test.
                kwargs={"poll_interval": _POLL_INTERVAL},
                name="portone-stand-in",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        # Wakes handlers sleeping in a slow scenario so shutdown does not wait for them.
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> PortOneStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scenarios ------------------------------------------------------------------------------

    def add_verified(
        self,
        verification_id: str,
        *,
        name: str,
        phone: str,
        birth_date: str,
        ci: str | None,
        di: str | None,
        gender: str | None = "MALE",
        is_foreigner: bool = False,
    ) -> None:
        """Answer 200 VERIFIED with a full verifiedCustomer (ci/di None = left out)."""
        body = verified_body(
            verification_id,
            name=name,
            phone=phone,
            birth_date=birth_date,
            ci=ci,
            di=di,
            gender=gender,
            is_foreigner=is_foreigner,
        )
        self.add_response(verification_id, 200, body)

    def add_status(self, verification_id: str, status: str) -> None:
        """Answer 200 with a READY or FAILED verification."""
        self.add_response(verification_id, 200, status_body(verification_id, status))

    def add_not_found(self, verification_id: str) -> None:
        """Answer 404 IDENTITY_VERIFICATION_NOT_FOUND (also what unregistered ids get)."""
        with self._lock:
            self._scenarios.bodies.pop(verification_id, None)

    def add_response(self, verification_id: str, http_status: int, body: Any) -> None:
        """Answer exactly this: `body` as JSON, or as-is if it is `bytes` (for malformed bodies)."""
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        with self._lock:
            self._scenarios.bodies[verification_id] = (http_status, raw)

    def add_failure(self, verification_id: str, http_status: int, times: int | None = None) -> None:
        """Answer `http_status` with PortOne's error body, `times` times (None: always).

        After the failures, the id answers whatever else is registered for it.
        """
        with self._lock:
            self._scenarios.failures[verification_id] = _Failure(http_status, times)

    def add_slow(self, verification_id: str, seconds: float) -> None:
        """Wait `seconds` before answering (what else is registered) — beyond a client timeout."""
        with self._lock:
            self._scenarios.delays[verification_id] = seconds

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, verification_id: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.verification_id == verification_id]

    # -- serving --------------------------------------------------------------------------------

    def _respond(self, request: RecordedRequest) -> tuple[int, bytes]:
        with self._lock:
            self._requests.append(request)
        if request.headers.get("authorization") != f"PortOne {self.secret}":
            return _error(401, "올바르지 않은 API Secret 입니다.")
        if request.method != "GET" or request.verification_id is None:
            return _error(404, "요청한 리소스를 찾을 수 없습니다.", error_type="NOT_FOUND")
        store_ids = request.query.get("storeId")
        if self.store_id is not None and store_ids is not None and store_ids != [self.store_id]:
            return _error(403, "상점에 접근할 권한이 없습니다.")
        verification_id = request.verification_id
        with self._lock:
            delay = self._scenarios.delays.get(verification_id)
        if delay is not None:
            self._stopping.wait(delay)
        with self._lock:
            failure = self._scenarios.failures.get(verification_id)
            if failure is not None and failure.remaining is not None:
                if failure.remaining > 0:
                    failure.remaining -= 1
                else:
                    failure = None
            found = self._scenarios.bodies.get(verification_id)
        if failure is not None:
            return _error(failure.http_status, "일시적인 오류입니다.")
        if found is None:
            return _error(404, "요청된 본인인증 건이 존재하지 않습니다.")
        return found


def _error(http_status: int, message: str, *, error_type: str | None = None) -> tuple[int, bytes]:
    kind = error_type or ERROR_TYPES.get(http_status, "UNKNOWN")
    return http_status, json.dumps(error_body(kind, message), ensure_ascii=False).encode()


def _make_handler(stand_in: PortOneStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps connections alive, so the client's connection pooling is exercised.
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, the body waits for a delayed ACK.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            split = urlsplit(self.path)
            verification_id = None
            if split.path.startswith(PATH_PREFIX):
                segment = split.path[len(PATH_PREFIX) :]
                if segment and "/" not in segment:
                    verification_id = unquote(segment)
            request = RecordedRequest(
                method=self.command,
                path=split.path,
                verification_id=verification_id,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={key.lower(): value for key, value in self.headers.items()},
            )
            status, body = stand_in._respond(request)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (its timeout in the slow scenario); nothing to answer.
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: request lines would clutter test output (and carry sandbox-like ids).
            return

    return Handler
