"""Structured logs: one JSON object per line on stderr (structlog), for every stdlib record.

Each line has `timestamp` (RFC 3339, UTC), `level`, `logger` and `event` (the formatted message),
plus `request_id` while an RPC is being handled (from `REQUEST_ID`, set by the `rpc` wrapper),
`trace_id` when the call belongs to a W3C trace (from `TRACE_ID`: see `grpc/tracing.py`), and
the access line's fields. Only the fields in `ALLOWED_EXTRA` may be added with `extra=`, so
a careless `extra={"email": ...}` never reaches the log. An exception is logged as its type and
stack (`exception_type`, `stack`), never its message: messages may quote inputs or SQL
parameters.

Lines are written by `LineWriter`: a line is rendered on the thread that logs it, and written
within `LineWriter.INTERVAL` by a writer thread, many lines per write, so that a call's access
line costs its handler no write and no wait for a lock held by another handler's write. A
warning or worse is written at once, after every line before it.
"""

from __future__ import annotations

import collections
import json
import logging
import select
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# The request id of the RPC being handled on this thread (None outside a call).
REQUEST_ID: ContextVar[str | None] = ContextVar("idservice_request_id", default=None)
# The W3C trace id (32 hex digits) of the RPC being handled, when it has one.
TRACE_ID: ContextVar[str | None] = ContextVar("idservice_trace_id", default=None)
# The number of this server process under `serve`'s supervisor (1…N), on every line it writes:
# the processes share one stderr. None in the supervisor and in a lone process.
_process: int | None = None


def name_process(index: int | None) -> None:
    """Every line from now on carries `"process": index` (a server process of the supervisor)."""
    global _process  # noqa: PLW0603
    _process = index


def add_process(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    if _process is not None:
        event.setdefault("process", _process)
    return event


# What a log call may add with `extra=`: the access line's fields (never personal data).
ALLOWED_EXTRA = ("method", "code", "reason", "duration_ms", "account_id", "request_id")
# Libraries whose INFO lines are noise, or (httpx) would log upstream URLs with ids.
QUIET_LOGGERS = ("alembic", "httpx", "httpcore")


def add_request_id(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    trace_id = TRACE_ID.get()
    if trace_id is not None:
        event.setdefault("trace_id", trace_id)
    return event


def exception_without_message(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """`exc_info` as the exception's type and stack only."""
    exc_info = event.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        event["exception_type"] = exc_info[0].__name__
        event["stack"] = "".join(traceback.format_tb(exc_info[2]))
    return event


FIRST_KEYS = ("timestamp", "level", "logger", "event", "request_id", "trace_id", "process")


def standard_keys_first(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """timestamp, level, logger, event, request_id, trace_id and process lead each line; the
    rest follow."""
    ordered = {key: event.pop(key) for key in FIRST_KEYS if key in event}
    ordered.update(event)
    return ordered


def _shared_processors() -> list[Processor]:
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_request_id,
        add_process,
    ]


def json_formatter() -> logging.Formatter:
    """Renders stdlib records (and structlog events) as one JSON object per line."""
    return PlainRecordFormatter(_structlog_formatter())


class PlainRecordFormatter(logging.Formatter):
    """The structlog chain's output for a plain record, without running the chain.

    Most lines (one access line per RPC) are stdlib records with no exception, no stack and no
    structlog event. For those this renders the very line the chain would: the same keys in
    the same order (`timestamp`, `level`, `logger`, `event`, `request_id`, `trace_id`,
    `process`, then the allowed extras in `ALLOWED_EXTRA` order) and the same JSON, at a
    fraction of the cost. Anything else goes through the structlog chain (`chain`).
    """

    def __init__(self, chain: logging.Formatter) -> None:
        super().__init__()
        self._chain = chain

    def format(self, record: logging.LogRecord) -> str:
        if (
            record.exc_info
            or record.exc_text
            or record.stack_info
            or not isinstance(record.msg, str)
        ):
            return self._chain.format(record)
        line: dict[str, Any] = {
            "timestamp": datetime.now(tz=UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = record.__dict__
        if "request_id" in fields:  # an access line names its call's id itself
            line["request_id"] = fields["request_id"]
        else:
            request_id = REQUEST_ID.get()
            if request_id is not None:
                line["request_id"] = request_id
        trace_id = TRACE_ID.get()
        if trace_id is not None:
            line["trace_id"] = trace_id
        if _process is not None:
            line["process"] = _process
        for key in ALLOWED_EXTRA:
            if key in fields and key != "request_id":
                line[key] = fields[key]
        return json.dumps(line, ensure_ascii=False, default=repr)


def _structlog_formatter() -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder(ALLOWED_EXTRA)],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exception_without_message,
            standard_keys_first,
            # Korean text stays readable (and greppable) in the log.
            structlog.processors.JSONRenderer(ensure_ascii=False, sort_keys=False),
        ],
    )


# At most this many bytes per write(2): POSIX makes a pipe write of up to PIPE_BUF bytes atomic,
# so the lines of the server processes, which share the supervisor's stderr, never interleave.
WRITE_LIMIT_BYTES = select.PIPE_BUF


def whole_line_chunks(lines: Iterable[str], limit: int = WRITE_LIMIT_BYTES) -> Iterator[str]:
    """`lines` joined, each with its newline, into chunks of at most `limit` UTF-8 bytes that
    end at a line's end; a longer line is a chunk of its own."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        # As stderr writes them: a lone surrogate becomes a backslash escape.
        length = len(line.encode("utf-8", "backslashreplace")) + 1
        if chunk and size + length > limit:
            yield "".join(chunk)
            chunk, size = [], 0
        chunk.append(line + "\n")
        size += length
    if chunk:
        yield "".join(chunk)


class LineWriter(logging.Handler):
    """One line per record on `stream`, written by a thread of its own.

    `handle` renders the record on the calling thread (the request id and trace id of its call
    are read there) and queues the line; the writer thread writes what is queued every
    `INTERVAL` seconds, in whole-line chunks of at most PIPE_BUF bytes. A record at WARNING or
    above, `flush()` and `close()` (which `logging.shutdown` calls at exit) write everything
    queued at once, in order. A stream that fails loses its lines, never the caller's call.
    With `MAX_PENDING` lines queued, the logging thread writes them itself.
    """

    INTERVAL = 0.05
    MAX_PENDING = 10_000

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._pending: collections.deque[str] = collections.deque()
        self._writing = threading.Lock()
        # The thread writing now: a signal handler that logs while its thread writes must not
        # wait for itself (the line waits for the next round instead).
        self._writer_ident: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and render on this thread, without the handler's lock: only the queue is
        shared (a deque's append is atomic)."""
        rv = self.filter(record)
        if not rv:
            return False
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return True
        self._pending.append(line)
        urgent = (
            record.levelno >= logging.WARNING
            or len(self._pending) >= self.MAX_PENDING
            or self._stop.is_set()  # closed: no writer thread will come
        )
        if urgent and self._writer_ident != threading.get_ident():
            self.flush()
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def flush(self) -> None:
        """Write every queued line now."""
        with self._writing:
            self._writer_ident = threading.get_ident()
            try:
                self._write_pending()
            finally:
                self._writer_ident = None

    def _write_pending(self) -> None:
        pending = self._pending
        lines = []
        while pending:
            lines.append(pending.popleft())
        if not lines:
            return
        try:
            for chunk in whole_line_chunks(lines):
                self.stream.write(chunk)
                self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: the lines are lost
            pass

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        self.flush()
        super().close()

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self.flush()


def configure_logging(level: str) -> None:
    """Send every log record to stderr as JSON at `level` (IDSERVICE_LOG_LEVEL)."""
    handler = LineWriter(sys.stderr)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
        if isinstance(existing, LineWriter):
            existing.close()  # its thread ends
    root.addHandler(handler)
    root.setLevel(level)
    # No line names its source file, thread or process, so records need not find them: the
    # logging HOWTO's "Optimization" settings (every API call writes an access line). Without
    # the caller lookup, `stack_info=True` and `stacklevel` do nothing; no code uses them.
    logging._srcfile = None  # skips findCaller's stack walk
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # structlog's own loggers, if any module uses them, go through the same handler.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Warnings and uncaught exceptions would otherwise print plain text on stderr.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], error: BaseException, stack: TracebackType | None
) -> None:
    logging.getLogger("idservice").critical(
        "uncaught %s", kind.__name__, exc_info=(kind, error, stack)
    )


def _log_uncaught_in_thread(args: Any) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("idservice").error(
        "uncaught %s in thread %s",
        args.exc_type.__name__,
        getattr(args.thread, "name", "?"),
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
