"""What the `rpc` wrapper keeps of each call: its request id, its connection-log entry and its
access line. Never a request or response body, a token, a password or CI/DI.

- The request id is the caller's `x-request-id` when it is a sane opaque id (8–128 characters
  of letters, digits and `._:-`, at least one letter, nothing RRN-shaped), else a new UUID. It
  is in every log line emitted on the handler's thread during the call, and goes back as
  `x-request-id` trailing metadata, errors included.
- The connection log gets the method, the time the call arrived, the account the call acted as
  (`call_context.identified_account()`: an access token's subject once its session was found
  live, or the account a session was issued to), the client's address (the end user's as a
  trusted proxy names it in `x-forwarded-for`, else the peer's) and the code and reason. The
  entry is buffered in memory (`App.connections`); a background thread writes it.
- One INFO line per call on the `idservice.access` logger: method, code, reason, duration,
  account id and request id.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import grpc

from idservice.bootstrap import App
from idservice.entrypoints.grpc import tracing
from idservice.entrypoints.grpc.addresses import client_address
from idservice.entrypoints.logs import REQUEST_ID, TRACE_ID
from idservice.service_layer.call_context import call_scope, identified_account
from idservice.service_layer.ports import ConnectionEntry
from idservice.service_layer.validation import check_no_rrn

access_log = logging.getLogger("idservice.access")

REQUEST_ID_KEY = "x-request-id"
# Opaque ids only: ASCII letters, digits and `._:-`, with a letter (so no phone number, birth
# date or other bare number), never an email or free text.
_SANE_REQUEST_ID = re.compile(r"(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")
# A Korean mobile number inside an id (`hong.01012345678`, `call:82-10-1234-5678`,
# `req_010_1234_5678`): logged with every line of the call, so such an id is replaced, as one
# with an RRN in it is. A number is digit groups joined by `.`, `_`, `:` or `-`. One group that
# reads as a mobile number counts, and so does a run of groups written as people write a phone
# number: groups of at most four digits, the last of any length (`010-1234-5678`,
# `82-10-1234-5678`, `010-12345678`). A mobile number reads 010 and eight digits, 011 and
# 016–019 and seven or eight, with 82/0082 with or without the national 0 before them, or 10
# and eight digits without either (01[16789] numbers need their 0 or country code:
# `1712345678`-like runs are Unix times). The group rule keeps times and counters
# (`job_20261205_010203_0001`, `T01:02:03.456Z`) from reading as numbers. A UUID is random,
# not a number someone wrote, and is always kept.
_NUMBER = re.compile(r"[0-9]+(?:[-._:][0-9]+)*")
_NUMBER_GROUP_SEPARATOR = re.compile(r"[-._:]")
_MOBILE_NUMBER = re.compile(r"(?:(?:0082|82)0?|0)(?:10[0-9]{8}|1[16789][0-9]{7,8})|10[0-9]{8}")
_LONGEST_MOBILE_DIGITS = 15  # 0082, the national 0, 1X and eight digits
_PHONE_GROUP_DIGITS = 4  # the longest group of a written number but its last
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def holds_mobile_number(value: str) -> bool:
    for number in _NUMBER.findall(value):
        groups = _NUMBER_GROUP_SEPARATOR.split(number)
        for first, group in enumerate(groups):
            if _MOBILE_NUMBER.fullmatch(group):
                return True
            if len(group) > _PHONE_GROUP_DIGITS:
                continue  # no written number starts with a group this long
            digits = group
            for following in groups[first + 1 :]:
                digits += following
                if len(digits) > _LONGEST_MOBILE_DIGITS:
                    break
                if _MOBILE_NUMBER.fullmatch(digits):
                    return True
                if len(following) > _PHONE_GROUP_DIGITS:
                    break  # only the last group may be longer
    return False


@dataclass(frozen=True, slots=True)
class Call:
    """One RPC being handled."""

    method: str
    request_id: str
    arrived_at: datetime
    started: float
    trace_id: str | None = None

    def seconds(self) -> float:
        return time.perf_counter() - self.started


def request_id(context: grpc.ServicerContext) -> str:
    """The caller's `x-request-id` if it is a sane opaque id, else a new UUID."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            if (
                _SANE_REQUEST_ID.fullmatch(value)
                and (_UUID.fullmatch(value) or not holds_mobile_number(value))
                and not check_no_rrn({REQUEST_ID_KEY: value})
            ):
                return value
            break
    return str(uuid.uuid4())


@functools.cache
def service_name(servicer_type: type) -> str:
    """The gRPC service a servicer class implements (`idservice.v1.AccountService`), read from
    the descriptor of the generated `…Servicer` base class it extends."""
    for base in servicer_type.__mro__:
        module = base.__module__
        if module.endswith("_pb2_grpc") and base.__name__.endswith("Servicer"):
            messages = sys.modules.get(module.removesuffix("_grpc"))
            services = getattr(getattr(messages, "DESCRIPTOR", None), "services_by_name", {})
            service = services.get(base.__name__.removesuffix("Servicer"))
            if service is not None:
                return str(service.full_name)
    return servicer_type.__name__


def begin(app: App, servicer_type: type, name: str, context: grpc.ServicerContext) -> Call:
    return Call(
        method=f"/{service_name(servicer_type)}/{name}",
        request_id=request_id(context),
        arrived_at=app.deps.clock(),
        started=time.perf_counter(),
        trace_id=tracing.trace_id(context),
    )


@contextmanager
def scope(call: Call) -> Iterator[None]:
    """The call's request id (and trace id) in every log line, and a fresh account scope."""
    token = REQUEST_ID.set(call.request_id)
    trace_token = TRACE_ID.set(call.trace_id)
    try:
        with call_scope():
            yield
    finally:
        TRACE_ID.reset(trace_token)
        REQUEST_ID.reset(token)


def finish(
    app: App, call: Call, context: grpc.ServicerContext, code: str, reason: str
) -> tuple[tuple[str, str], ...]:
    """Record the call (connection log, access line); returns the trailing metadata to send."""
    account_id = identified_account()
    app.connections.add(
        ConnectionEntry(
            occurred_at=call.arrived_at,
            method=call.method,
            code=code,
            reason=reason or None,
            account_id=account_id,
            client_ip=client_address(context, app.settings.trusted_proxies) or None,
        )
    )
    access_log.info(
        "rpc",
        extra={
            "method": call.method,
            "code": code,
            "reason": reason or None,
            "duration_ms": round(call.seconds() * 1000, 1),
            "account_id": account_id,
            "request_id": call.request_id,
        },
    )
    return ((REQUEST_ID_KEY, call.request_id),)


class AnswerStatus(grpc.Status):
    """A status with trailing metadata added (grpc's own statuses are immutable)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing_metadata: tuple[tuple[str, str | bytes], ...],
    ) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def with_metadata(status: grpc.Status, extra: tuple[tuple[str, str], ...]) -> grpc.Status:
    return AnswerStatus(
        status.code, status.details, (*tuple(status.trailing_metadata or ()), *extra)
    )
