"""A webhook receiver on 127.0.0.1 for outbox delivery tests: records every POST it gets.

with WebhookStandIn() as hook:
    hook.fail_next(2, status=500)   # the next two POSTs answer 500, then 204 again
    ... IDSERVICE_NOTIFY_WEBHOOK_URL=hook.url ...
    hook.wait_for(1)                # the received requests, once there is one
    hook.hold(after=2)              # answer two more POSTs, then leave later ones hanging
    hook.wait_for_held(1)           # ... until one hangs (its sender is mid-delivery)
    hook.release()                  # answer the hanging ones 503 (their senders may be gone)

`received` lists answered POSTs only, in the order they were answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any

from tests.fakes.http_stand_in import WAIT_SECONDS, HttpStandIn


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int  # what the stand-in answered


class WebhookStandIn(HttpStandIn):
    """Answers 204 to every POST unless told to fail; thread-served, start with `with`."""

    def __init__(self) -> None:
        super().__init__(_make_handler(self))
        self._received: list[Delivery] = []
        self._failures: list[int] = []
        # While holding: POSTs after the `_hold_from`-th arrival hang until `release()`.
        self._arrivals = 0
        self._hold_from: int | None = None
        self._held = 0

    @property
    def url(self) -> str:
        return f"{self._base_url}/hooks/idservice"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()  # hanging requests are answered first, so the server can stop
        super().__exit__(exc_type, exc, tb)

    def fail_next(self, times: int, *, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def hold(self, *, after: int = 0) -> None:
        """Answer the next `after` POSTs as usual, then leave every later one hanging (no
        status, connection open) until `release()`."""
        with self._lock:
            self._hold_from = self._arrivals + after

    def release(self) -> None:
        """Stop holding: hanging POSTs are answered 503 (their senders may be gone)."""
        with self._lock:
            self._hold_from = None
            self._lock.notify_all()

    def wait_for_held(self, count: int, timeout: float = WAIT_SECONDS) -> None:
        """Return once `count` POSTs hang (AssertionError on timeout)."""
        self._wait(lambda: self._held >= count, timeout, lambda: f"{self._held} of {count} held")

    def wait_until(
        self, done: Callable[[list[Delivery]], bool], timeout: float = WAIT_SECONDS
    ) -> list[Delivery]:
        """The answered requests, once `done(received)` holds (AssertionError on timeout)."""
        self._wait(lambda: done(self._received), timeout, lambda: f"{len(self._received)} answered")
        with self._lock:
            return list(self._received)

    @property
    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = WAIT_SECONDS) -> list[Delivery]:
        """The requests so far, once there are at least `count` (AssertionError on timeout)."""
        self._wait(
            lambda: len(self._received) >= count,
            timeout,
            lambda: f"{len(self._received)} of {count} webhook calls came",
        )
        return self.received

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self._arrivals += 1
            if self._hold_from is not None and self._arrivals > self._hold_from:
                self._held += 1
                self._lock.notify_all()
                while self._hold_from is not None:
                    self._lock.wait()
                self._held -= 1
                status = 503
            else:
                status = self._failures.pop(0) if self._failures else 204
            self._received.append(Delivery(path, headers, body, status))
            self._lock.notify_all()
            return status


def _make_handler(stand_in: WebhookStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            status = stand_in._record(self.path, headers, body)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # a released request whose sender is gone
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
