"""In-memory outside parties: an identity provider with registered people, a recording sink.

provider = FakeIdentityProvider()
person = verified_person(birth_date=date(2014, 3, 1))
verification_id = provider.verify(person)       # fetch(verification_id) answers `person`
sink = RecordingSink(); sink.fail_next(2)       # two DeliveryFailed, then accepted again
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import phonenumbers

from idservice.domain.errors import DomainError, Reason
from idservice.domain.identity import VerifiedPerson, check_verification_id
from idservice.service_layer.ports import DeliveryFailed, EventSink, IdentityProvider

_phone_counter = itertools.count()


def new_phone_number() -> str:
    """A valid Korean mobile number in digits, as providers give it ("01023456789")."""
    while True:
        candidate = f"010{2000 + next(_phone_counter) % 8000:04d}{uuid.uuid4().int % 10000:04d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate, "KR")):
            return candidate


def verified_person(
    *,
    name: str = "홍길동",
    birth_date: date = date(1990, 1, 15),
    phone_number: str | None = None,
    seed: str | None = None,
    ci: bool = True,
    di: bool = True,
) -> VerifiedPerson:
    """A person as a provider verifies them; CI and DI are derived from `seed` (one per person)."""
    seed = seed or uuid.uuid4().hex
    return VerifiedPerson(
        name=name,
        phone_number=phone_number or new_phone_number(),
        birth_date=birth_date,
        gender=None,
        is_foreigner=False,
        ci=base64.b64encode(hashlib.sha512(f"ci:{seed}".encode()).digest()).decode()
        if ci
        else None,
        di=hashlib.sha256(f"di:{seed}".encode()).hexdigest() if di else None,
    )


class FakeIdentityProvider(IdentityProvider):
    """Answers the people registered under verification ids; anything else is not found."""

    def __init__(self, name: str = "sandbox") -> None:
        self.name = name
        self.fetches: list[tuple[str, float]] = []
        self.closed = False
        self._people: dict[str, VerifiedPerson] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def register(self, verification_id: str, person: VerifiedPerson) -> str:
        check_verification_id(verification_id)
        with self._lock:
            self._people[verification_id] = person
        return verification_id

    def verify(self, person: VerifiedPerson) -> str:
        """Register `person` under a new verification id and return the id."""
        return self.register(f"fake-verification-{next(self._ids)}", person)

    def fetch(self, verification_id: str, *, timeout: float) -> VerifiedPerson:
        check_verification_id(verification_id)
        with self._lock:
            self.fetches.append((verification_id, timeout))
            person = self._people.get(verification_id)
        if person is None:
            raise DomainError(Reason.VERIFICATION_NOT_FOUND, "no such identity verification")
        return person

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True, slots=True)
class DeliveredEvent:
    event_id: str
    event_type: str
    body: bytes

    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class RecordingSink(EventSink):
    """Records every event it accepts; `fail_next(n)` or `failing = True` refuses deliveries."""

    max_delivery_seconds = 0.1

    def __init__(self) -> None:
        self.delivered: list[DeliveredEvent] = []
        self.attempts = 0
        self.failing = False
        self.closed = False
        self._failures_left = 0
        self._lock = threading.Lock()

    def fail_next(self, count: int = 1) -> None:
        with self._lock:
            self._failures_left = count

    def deliver(self, *, event_id: str, event_type: str, body: bytes) -> None:
        with self._lock:
            self.attempts += 1
            if self.failing or self._failures_left > 0:
                self._failures_left = max(self._failures_left - 1, 0)
                raise DeliveryFailed("the recording sink was told to refuse this delivery")
            self.delivered.append(DeliveredEvent(event_id, event_type, body))

    def documents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [event.document() for event in self.delivered]

    def close(self) -> None:
        self.closed = True
