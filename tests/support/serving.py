"""An app on non-default settings (or a hand-moved clock) served in-process, with a client."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import grpc

from idservice.bootstrap import App, build_app
from idservice.config import Settings
from idservice.entrypoints.grpc.server import create_server
from tests.support.client import Client


class FakeClock:
    """A clock the test moves by hand; starts at the real time unless told otherwise."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC).replace(microsecond=0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta


@contextmanager
def serving(
    settings: Settings, *, clock: Callable[[], datetime] | None = None
) -> Iterator[tuple[App, Client]]:
    """Build the app, serve it on a free loopback port, and hand out a client."""
    app = build_app(settings) if clock is None else build_app(settings, clock=clock)
    try:
        running = create_server(app, "127.0.0.1:0")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                yield app, Client(channel, terms_version=settings.terms_version)
        finally:
            running.halt()
    finally:
        app.close()
