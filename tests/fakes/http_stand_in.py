"""What the HTTP stand-ins share: a threaded HTTP server on 127.0.0.1 (an ephemeral port), run
for the length of a `with` block, and waiting on what it received under one condition."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

WAIT_SECONDS = 30.0


class HttpStandIn:
    """Serves `handler` on its own thread between `__enter__` and `__exit__`.

    Subclasses keep what they receive under `self._lock` (a Condition) and notify it, so
    `_wait` can return as soon as a condition holds.
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def _base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def _wait(self, ready: Callable[[], bool], timeout: float, state: Callable[[], str]) -> None:
        """Return once `ready()` holds (checked under the lock); AssertionError naming
        `state()` on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{type(self).__name__} timed out: {state()}")
                self._lock.wait(left)
