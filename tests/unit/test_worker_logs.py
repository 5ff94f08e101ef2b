"""The outbox dispatcher's loop logs a database outage once, by its reason, and its end."""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

import pytest

from idservice.bootstrap import App
from idservice.domain.errors import database_unavailable
from idservice.entrypoints import worker
from idservice.service_layer.dispatch import DispatchReport


class Impatient(threading.Event):
    """A stop event whose waits return at once: the loop's rounds without its pauses."""

    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set()


class Outage:
    """Stands for the App: its DispatchDue fails `rounds` times, then finds nothing due."""

    def __init__(self, rounds: int, stop: threading.Event) -> None:
        self.left, self.calls, self._stop = rounds, 0, stop

    def handle(self, _command: Any) -> DispatchReport:
        self.calls += 1
        if self.calls > self.left + 2:
            self._stop.set()
        if self.calls <= self.left:
            raise database_unavailable()
        return DispatchReport()


def test_an_outage_is_logged_once_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    stop = Impatient()
    app = Outage(rounds=5, stop=stop)
    with caplog.at_level(logging.INFO, logger=worker.__name__):
        worker.dispatch_until(cast(App, app), stop)
    lines = [r.getMessage() for r in caplog.records if r.name == worker.__name__]
    assert lines == [
        "outbox dispatch failed: DATABASE_UNAVAILABLE (retried every round)",
        "outbox dispatch works again",
    ]
    assert app.calls == 8
