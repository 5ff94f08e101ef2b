"""Structured logs: stdlib records as one JSON object per line, the request id of the call,
only the access line's fields as extras, exceptions without their messages."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
from typing import Any, TextIO

from idservice.entrypoints.grpc.calls import service_name
from idservice.entrypoints.grpc.servicers import (
    SERVICE_NAMES,
    AccountServicer,
    AuthServicer,
    GuardianConsentServicer,
    IdentityServicer,
)
from idservice.entrypoints.logs import REQUEST_ID, LineWriter, json_formatter, whole_line_chunks
from tests.support.json_logs import log_lines


def render(message: str, *args: object, **kwargs: Any) -> dict[str, Any]:
    level = kwargs.pop("level", logging.INFO)
    record = logging.LogRecord("idservice.test", level, __file__, 1, message, args, None)
    exc_info = kwargs.pop("exc_info", None)
    record.exc_info = exc_info
    for key, value in kwargs.pop("extra", {}).items():
        setattr(record, key, value)
    line = json_formatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_record_is_one_json_object_with_the_standard_fields() -> None:
    line = render("purge: %s=%d", "sessions", 3, level=logging.WARNING)
    assert line["event"] == "purge: sessions=3"
    assert line["level"] == "warning"
    assert line["logger"] == "idservice.test"
    assert line["timestamp"].endswith("Z")
    assert "request_id" not in line


def test_during_a_call_every_line_has_its_request_id() -> None:
    token = REQUEST_ID.set("req-12345678")
    try:
        assert render("inside")["request_id"] == "req-12345678"
    finally:
        REQUEST_ID.reset(token)
    assert "request_id" not in render("outside")


def test_only_the_access_fields_pass_as_extras() -> None:
    line = render(
        "rpc",
        extra={
            "method": "/idservice.v1.AuthService/GetJwks",
            "code": "OK",
            "duration_ms": 1.5,
            "email": "hong@example.com",
            "password": "hunter2hunter2",
        },
    )
    assert line["method"] == "/idservice.v1.AuthService/GetJwks"
    assert line["code"] == "OK" and line["duration_ms"] == 1.5
    assert "email" not in line and "password" not in line
    assert "hong@example.com" not in json.dumps(line)


def test_an_exception_is_its_type_and_stack_without_its_message() -> None:
    email = "hong@example.com"
    try:
        raise ValueError(f"{email} is not allowed")
    except ValueError as error:
        exc_info = (type(error), error, error.__traceback__)
    line = render("a component failed", level=logging.ERROR, exc_info=exc_info)
    assert line["exception_type"] == "ValueError"
    assert "test_logs.py" in line["stack"]
    assert email not in json.dumps(line, ensure_ascii=False)


def test_korean_text_stays_readable() -> None:
    assert '"event": "이름 없음"' in json_formatter().format(
        logging.LogRecord("x", logging.INFO, __file__, 1, "이름 없음", (), None)
    )


def test_each_servicer_names_its_grpc_service() -> None:
    servicers = (IdentityServicer, AccountServicer, AuthServicer, GuardianConsentServicer)
    assert tuple(service_name(servicer) for servicer in servicers) == SERVICE_NAMES


def test_plain_records_render_exactly_as_the_structlog_chain_does() -> None:
    """The fast path for plain records must be byte-for-byte the chain's line (but the time)."""
    from idservice.entrypoints.logs import (
        TRACE_ID,
        PlainRecordFormatter,
        _structlog_formatter,
        name_process,
    )

    chain = _structlog_formatter()
    fast = PlainRecordFormatter(chain)
    access = {
        "method": "/idservice.v1.AuthService/IntrospectToken",
        "code": "UNAUTHENTICATED",
        "reason": "TOKEN_INVALID",
        "duration_ms": 0.7,
        "account_id": None,
        "request_id": "req-abcdefgh",
    }
    cases: list[tuple[str, tuple[object, ...], dict[str, object]]] = [
        ("rpc", (), access),
        ("rpc", (), {**access, "email": "hong@example.com"}),
        ("purge: %s=%d", ("sessions", 3), {}),
        ("이름 없음 %s", ("홍길동",), {"duration_ms": 2}),
        ("odd %r", (object,), {"code": b"bytes"}),
    ]
    contexts = [(None, None), ("req-12345678", None), ("req-12345678", "ab" * 16)]
    for message, args, extra, process in (
        (*case, process) for case in cases for process in (None, 2)
    ):
        name_process(process)
        for request_id, trace_id in contexts:
            for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.CRITICAL):
                record = logging.LogRecord(
                    "idservice.access", level, __file__, 1, message, args, None
                )
                for key, value in extra.items():
                    setattr(record, key, value)
                tokens = (REQUEST_ID.set(request_id), TRACE_ID.set(trace_id))
                try:
                    mine, theirs = json.loads(fast.format(record)), json.loads(chain.format(record))
                finally:
                    TRACE_ID.reset(tokens[1])
                    REQUEST_ID.reset(tokens[0])
                mine.pop("timestamp"), theirs.pop("timestamp")
                assert list(mine.items()) == list(theirs.items())
                assert mine.get("process") == process
    name_process(None)


def test_records_with_an_exception_go_through_the_structlog_chain() -> None:
    message = "a message that must not be logged"
    try:
        raise ValueError(message)
    except ValueError:
        line = render("failed", exc_info=sys.exc_info())
    assert line["exception_type"] == "ValueError"
    assert "stack" in line
    assert all(message not in str(value) for key, value in line.items() if key != "stack")


class RecordingStream(io.StringIO):
    """A text stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def _record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("idservice.test", level, __file__, 1, message, (), None)


def _writer(stream: TextIO) -> LineWriter:
    writer = LineWriter(stream)
    writer.setFormatter(json_formatter())
    return writer


def test_chunks_end_at_line_ends_and_stay_within_the_atomic_pipe_write() -> None:
    lines = [f"line {n} " + "가" * (n % 50) for n in range(400)] + ["x" * 9000, "last"]
    chunks = list(whole_line_chunks(lines, limit=4096))
    assert "".join(chunks) == "".join(line + "\n" for line in lines)
    assert all(chunk.endswith("\n") for chunk in chunks)
    for chunk in chunks:
        # Bytes, not characters (가 is three); only a line longer than the limit stands alone.
        assert len(chunk.encode()) <= 4096 or chunk.count("\n") == 1
    assert "x" * 9000 + "\n" in chunks
    assert list(whole_line_chunks([])) == []


def test_lines_are_written_by_the_writer_thread_in_few_writes() -> None:
    stream = RecordingStream()
    writer = _writer(stream)
    try:
        for n in range(50):
            writer.handle(_record(f"line {n}"))
        deadline = time.monotonic() + 5
        while stream.getvalue().count("\n") < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [line["event"] for line in log_lines(stream.getvalue())] == [
            f"line {n}" for n in range(50)
        ]
        assert len(stream.writes) < 50  # several lines per write
    finally:
        writer.close()


def test_a_warning_is_written_at_once_after_the_lines_before_it() -> None:
    stream = RecordingStream()
    writer = _writer(stream)
    writer.INTERVAL = 3600.0  # the writer thread would not write during the test
    try:
        writer.handle(_record("first"))
        writer.handle(_record("it broke", level=logging.WARNING))
        assert [line["event"] for line in log_lines(stream.getvalue())] == ["first", "it broke"]
    finally:
        writer.close()


def test_every_line_of_many_threads_is_written_whole_by_close() -> None:
    stream = RecordingStream()
    writer = _writer(stream)

    def log_from(thread: int) -> None:
        for n in range(300):
            writer.handle(_record(f"{thread}:{n}"))

    threads = [threading.Thread(target=log_from, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    events = [line["event"] for line in log_lines(stream.getvalue())]
    assert len(events) == 8 * 300
    for t in range(8):
        assert [e for e in events if e.startswith(f"{t}:")] == [f"{t}:{n}" for n in range(300)]


def test_a_broken_stream_loses_lines_not_the_call() -> None:
    stream = RecordingStream()
    stream.close()
    writer = _writer(stream)
    writer.handle(_record("lost"))
    writer.handle(_record("lost too", level=logging.ERROR))  # written at once, and fails
    writer.close()


def test_lines_queued_at_exit_are_written() -> None:
    """`logging.shutdown` at interpreter exit writes what the writer thread has not."""
    script = (
        "import logging, threading\n"
        "from idservice.entrypoints.logs import configure_logging\n"
        "configure_logging('INFO')\n"
        "log = logging.getLogger('idservice.test')\n"
        "def run(t):\n"
        "    for n in range(500):\n"
        "        log.info('%d:%d', t, n)\n"
        "threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert len(log_lines(done.stderr)) == 4 * 500


def test_a_line_that_is_not_valid_unicode_costs_no_other_line() -> None:
    stream = RecordingStream()
    writer = _writer(stream)
    for n in range(5):
        writer.handle(_record(f"before {n}"))
    writer.handle(_record("bad \udc80 surrogate"))
    writer.handle(_record("after"))
    writer.close()
    events = [line["event"] for line in log_lines(stream.getvalue())]
    assert events == [*(f"before {n}" for n in range(5)), "bad \udc80 surrogate", "after"]


def test_a_line_logged_after_close_is_written_at_once() -> None:
    stream = RecordingStream()
    writer = _writer(stream)
    writer.close()
    writer.handle(_record("late"))
    assert [line["event"] for line in log_lines(stream.getvalue())] == ["late"]


class InterruptingStream(RecordingStream):
    """Logs a warning in the middle of a write, as a signal handler on the writing thread
    would."""

    def __init__(self) -> None:
        super().__init__()
        self.writer: LineWriter | None = None

    def write(self, text: str) -> int:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.handle(_record("from the signal handler", level=logging.WARNING))
        return super().write(text)


def test_a_warning_logged_while_its_own_thread_writes_does_not_wait_for_itself() -> None:
    stream = InterruptingStream()
    writer = _writer(stream)
    writer.INTERVAL = 3600.0
    stream.writer = writer
    done = threading.Event()

    def log_a_warning() -> None:
        writer.handle(_record("first", level=logging.WARNING))
        done.set()

    threading.Thread(target=log_a_warning, daemon=True).start()
    assert done.wait(10), "the writing thread waited for its own lock"
    writer.close()
    events = [line["event"] for line in log_lines(stream.getvalue())]
    assert events == ["first", "from the signal handler"]
