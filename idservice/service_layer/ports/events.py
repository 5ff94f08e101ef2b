"""The event-sink port: where outbox events are delivered (a webhook, or the log)."""

from __future__ import annotations

from abc import ABC, abstractmethod


class DeliveryFailed(Exception):
    """An event sink did not accept the event; the message is safe to log (no URL, no payload)."""


class EventSink(ABC):
    """Takes one event document, or raises DeliveryFailed."""

    # The longest one delivery may take before it is given up on (a shutdown waits this long).
    max_delivery_seconds: float = 10.0

    @abstractmethod
    def deliver(self, *, event_id: str, event_type: str, body: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None: ...
