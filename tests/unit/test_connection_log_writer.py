"""`serve`'s connection-log writer: every round writes the buffer, a failing database keeps the
entries (logged once per outage), and stopping writes once more."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from idservice.domain.errors import database_unavailable
from idservice.entrypoints import worker
from idservice.service_layer.connection_log import ConnectionRecorder
from idservice.service_layer.ports import ConnectionEntry

WAIT_SECONDS = 10.0


def entry(method: str) -> ConnectionEntry:
    return ConnectionEntry(occurred_at=datetime.now(UTC), method=method, code="OK")


class Database:
    def __init__(self) -> None:
        self.up = threading.Event()
        self.written: list[str] = []

    def write(self, batch: tuple[ConnectionEntry, ...]) -> None:
        if not self.up.is_set():
            raise database_unavailable()
        self.written += [e.method for e in batch]


def wait_for(condition: Any) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_entries_wait_out_an_outage_and_the_last_round_runs_on_stop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(worker, "CONNECTION_LOG_FLUSH_SECONDS", 0.01)
    database = Database()
    recorder = ConnectionRecorder(database.write)
    app: Any = SimpleNamespace(connections=recorder)
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger=worker.__name__)
    thread = worker.start_thread("connection-log", lambda: worker.write_connection_log(app, stop))
    try:
        recorder.add(entry("/s/DuringOutage"))
        time.sleep(0.2)  # many failed rounds
        assert database.written == [] and recorder.pending() == 1
        database.up.set()
        wait_for(lambda: database.written == ["/s/DuringOutage"])
        monkeypatch.setattr(worker, "CONNECTION_LOG_FLUSH_SECONDS", 60.0)
        time.sleep(0.05)  # the thread now sleeps a minute between rounds
        recorder.add(entry("/s/BeforeStop"))
    finally:
        stop.set()
        thread.join(WAIT_SECONDS)
    assert not thread.is_alive()
    assert database.written == ["/s/DuringOutage", "/s/BeforeStop"]
    failures = [r for r in caplog.records if "connection log write failed" in r.getMessage()]
    assert len(failures) == 1
    assert "DomainError" in failures[0].getMessage()
    assert any("written again" in r.getMessage() for r in caplog.records)
