"""HTTP for SNS providers: bounded JSON reads inside the caller's deadline, cache lifetimes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from idservice.domain.errors import DomainError, Reason
from idservice.domain.sns import SnsProvider

log = logging.getLogger(__name__)

# Cache lifetimes when the provider sends no usable Cache-Control max-age, and the bounds kept.
DEFAULT_CACHE_SECONDS = 3600.0
MIN_CACHE_SECONDS = 60.0
MAX_CACHE_SECONDS = 24 * 3600.0
# Bound on what we read from a provider.
MAX_RESPONSE_BYTES = 256 * 1024


def token_invalid(why: str) -> DomainError:
    """SNS_TOKEN_INVALID; `why` is logged at DEBUG (never the token), not sent to the caller."""
    log.debug("SNS token refused: %s", why)
    return DomainError(Reason.SNS_TOKEN_INVALID, "the SNS token or code is not valid")


def unavailable(provider: SnsProvider, why: str) -> DomainError:
    log.warning("%s unavailable: %s", provider.value, why)
    return DomainError(
        Reason.UPSTREAM_UNAVAILABLE,
        "the SNS provider is unavailable; retry",
        metadata={"provider": provider.value},
    )


@dataclass
class Deadline:
    """The caller's budget for every provider request of one call."""

    ends_at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        return self.ends_at - time.monotonic()


def cache_seconds(headers: httpx.Headers) -> float:
    """The max-age of a Cache-Control header, bounded; the default when there is none."""
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.isascii() and value.isdigit():
            return min(max(float(value), MIN_CACHE_SECONDS), MAX_CACHE_SECONDS)
        if name.lower() in ("no-store", "no-cache"):
            return MIN_CACHE_SECONDS
    return DEFAULT_CACHE_SECONDS


def get_json(
    client: httpx.Client,
    url: str,
    deadline: Deadline,
    *,
    provider: SnsProvider,
    bearer: str = "",
) -> tuple[dict[str, Any], float]:
    """GET a JSON object within the deadline: (document, cache lifetime in seconds).

    A 401 raises SNS_TOKEN_INVALID (only bearer calls get one); anything else that is not
    a 2xx JSON object is UPSTREAM_UNAVAILABLE.
    """
    left = deadline.left()
    if left <= 0:
        raise unavailable(provider, "no time left in the caller's deadline")
    headers = {"Accept": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    try:
        with client.stream("GET", url, headers=headers, timeout=left) as response:
            if bearer and response.status_code in (400, 401, 403):
                raise token_invalid(f"provider refused the access token ({response.status_code})")
            if response.status_code != 200:
                raise unavailable(provider, f"answered {response.status_code}")
            # httpx's timeouts bound each read, not the whole answer: a trickling provider is
            # cut off here.
            content = b"".join(_bounded(response.iter_bytes(), deadline))
            max_age = cache_seconds(response.headers)
    except httpx.HTTPError as exc:
        raise unavailable(provider, f"request failed ({type(exc).__name__})") from None
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        raise unavailable(provider, "answer is not JSON") from None
    if not isinstance(document, dict):
        raise unavailable(provider, "answer is not a JSON object")
    return document, max_age


def _bounded(chunks: Iterable[bytes], deadline: Deadline) -> Iterator[bytes]:
    """An answer's body that ends in httpx.ReadError past MAX_RESPONSE_BYTES, and in
    httpx.ReadTimeout at the caller's deadline."""
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise httpx.ReadError("answer too large")
        if deadline.left() <= 0:
            raise httpx.ReadTimeout("answer still arriving at the caller's deadline")
        yield chunk


class _BoundedStream(httpx.SyncByteStream):
    """A response body read through `_bounded`."""

    def __init__(self, inner: httpx.SyncByteStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        return _bounded(self._inner, self._deadline)

    def close(self) -> None:
        self._inner.close()


class BoundedTransport(httpx.BaseTransport):
    """`_bounded` for a client whose reads a library drives (authlib's token request):
    every answer's body is cut off past MAX_RESPONSE_BYTES or at the caller's deadline."""

    def __init__(self, deadline: Deadline, inner: httpx.BaseTransport | None = None) -> None:
        self._deadline = deadline
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_BoundedStream(response.stream, self._deadline),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()
