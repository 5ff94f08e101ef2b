"""Structured logs: one JSON object per line on stderr (structlog), for every stdlib record.

Each line has `timestamp` (RFC 3339, UTC), `level`, `logger` and `event` (the formatted message),
plus `request_id` while an RPC is being handled (from `REQUEST_ID`, set by the `rpc` wrapper),
`trace_id` when the call belongs to a W3C trace (from `TRACE_ID`: see `grpc/tracing.py`), and
the access line's fields. Only the fields in `ALLOWED_EXTRA` may be added with `extra=`, so
a careless `extra={"email": ...}` never reaches the log. An exception is logged as its type and
stack (`exception_type`, `stack`), never its message: messages may quote inputs or SQL
parameters.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# The request id of the RPC being handled on this thread (None outside a call).
REQUEST_ID: ContextVar[str | None] = ContextVar("idservice_request_id", default=None)
# The W3C trace id (32 hex digits) of the RPC being handled, when it has one.
TRACE_ID: ContextVar[str | None] = ContextVar("idservice_trace_id", default=None)
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


FIRST_KEYS = ("timestamp", "level", "logger", "event", "request_id", "trace_id")


def standard_keys_first(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """timestamp, level, logger, event, request_id and trace_id lead each line; the rest
    follow."""
    ordered = {key: event.pop(key) for key in FIRST_KEYS if key in event}
    ordered.update(event)
    return ordered


def _shared_processors() -> list[Processor]:
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_request_id,
    ]


def json_formatter() -> logging.Formatter:
    """Renders stdlib records (and structlog events) as one JSON object per line."""
    return PlainRecordFormatter(_structlog_formatter())


class PlainRecordFormatter(logging.Formatter):
    """The structlog chain's output for a plain record, without running the chain.

    Most lines (one access line per RPC) are stdlib records with no exception, no stack and no
    structlog event. For those this renders the very line the chain would: the same keys in
    the same order (`timestamp`, `level`, `logger`, `event`, `request_id`, `trace_id`, then the
    allowed extras in `ALLOWED_EXTRA` order) and the same JSON, at a fraction of the cost.
    Anything else goes through the structlog chain (`chain`).
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


def configure_logging(level: str) -> None:
    """Send every log record to stderr as JSON at `level` (IDSERVICE_LOG_LEVEL)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
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
