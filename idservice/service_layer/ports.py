"""What the use cases expect from storage: the records and errors that cross the boundary."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from idservice.domain.identity import VerifiedPerson
from idservice.domain.model import Session


class UniqueViolation(Exception):
    """An insert hit a unique index; `column` names the index's column."""

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """A stored refresh token and its session."""

    session: Session
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredVerification:
    """A completed identity verification waiting to be used once."""

    id: str
    provider: str
    person: VerifiedPerson
    expires_at: datetime
    consumed_at: datetime | None


@dataclass(frozen=True, slots=True)
class IdempotentResult:
    fingerprint: str
    response: bytes


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An outbox event due for delivery; `body` is its JSON document, None if undecryptable."""

    id: str
    type: str
    attempts: int
    body: bytes | None


class DeliveryFailed(Exception):
    """An event sink did not accept the event; the message is safe to log (no URL, no payload)."""


class EventSink(ABC):
    """Where outbox events go: takes one event document, or raises DeliveryFailed."""

    @abstractmethod
    def deliver(self, *, event_id: str, event_type: str, body: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None: ...
