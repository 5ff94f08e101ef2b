"""Where outbox events go (contract §4): a signed webhook POST, or the log when none is set.

The webhook gets the event document as JSON (`event_id`, `type`, `occurred_at`, `data`) with
`X-Idservice-Signature: t=<unix time>,v1=<hex HMAC-SHA-256 over "t.body">` under
IDSERVICE_NOTIFY_WEBHOOK_SECRET. Any 2xx is delivery; anything else is retried later. Without
a webhook only each event's type and id are logged, never its payload (it may hold a guardian's
name and phone).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import threading
import time
from collections.abc import Callable

import httpx

from idservice.adapters.trace_context import EVENT_HOOKS
from idservice.service_layer.ports import DeliveryFailed, EventSink

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Idservice-Signature"
EVENT_ID_HEADER = "X-Idservice-Event-Id"
EVENT_TYPE_HEADER = "X-Idservice-Event-Type"
WEBHOOK_TIMEOUT_SECONDS = 10.0


class LogSink(EventSink):
    """No webhook configured: the event's type and id go to the log, and it counts as delivered."""

    max_delivery_seconds = 0.1

    def deliver(self, *, event_id: str, event_type: str, body: bytes) -> None:
        log.info(
            "outbox event %s %s delivered to the log (no webhook configured)", event_type, event_id
        )

    def close(self) -> None:
        """Nothing to release."""


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Idservice-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class WebhookSink(EventSink):
    """POSTs each event to the webhook, signed when a secret is configured.

    A call has `timeout` seconds in all: httpx's timeouts bound each network step, not the
    whole exchange, so the POST runs on its own thread and a receiver that trickles its answer
    is given up on (and its connection closed) when the time is up. The response body is never
    read.
    """

    def __init__(
        self,
        url: str,
        secret: str | None,
        *,
        timeout: float = WEBHOOK_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secret = secret
        self._clock = clock
        self._timeout = timeout
        self.max_delivery_seconds = timeout
        self._lock = threading.Lock()
        self._client = self._new_client()

    def _new_client(self) -> httpx.Client:
        # Redirects are not followed: a signed event goes only where it was configured to go.
        return httpx.Client(
            timeout=self._timeout / 2, follow_redirects=False, event_hooks=EVENT_HOOKS
        )

    def __repr__(self) -> str:
        return "WebhookSink()"  # the URL may carry a token in its query

    def deliver(self, *, event_id: str, event_type: str, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: event_type,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body, int(self._clock()))
        with self._lock:
            client = self._client
        answers: queue.Queue[int | BaseException] = queue.Queue(maxsize=1)

        def post() -> None:
            try:
                with client.stream("POST", self._url, content=body, headers=headers) as response:
                    answers.put(response.status_code)
            except BaseException as exc:  # handed to the waiting thread
                answers.put(exc)

        threading.Thread(target=post, name="webhook", daemon=True).start()
        try:
            answer = answers.get(timeout=self._timeout)
        except queue.Empty:
            self._abandon(client)
            raise DeliveryFailed(f"webhook took longer than {self._timeout:g} s") from None
        if isinstance(answer, httpx.HTTPError):
            raise DeliveryFailed(f"webhook unreachable ({type(answer).__name__})")
        if isinstance(answer, BaseException):
            raise DeliveryFailed(f"webhook call failed ({type(answer).__name__})")
        if not 200 <= answer < 300:
            raise DeliveryFailed(f"webhook answered HTTP {answer}")

    def _abandon(self, client: httpx.Client) -> None:
        """Close `client` (ending the stuck call's connection) and use a fresh one."""
        with self._lock:
            if self._client is client:
                self._client = self._new_client()
        client.close()

    def close(self) -> None:
        with self._lock:
            self._client.close()
