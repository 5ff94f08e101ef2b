"""Ports: what the use cases need from the world, as Protocols and ABCs.

Adapters implement them and `idservice.bootstrap` wires them in; the service-layer tests use
in-memory fakes of the same types.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from idservice.service_layer.ports.connection_log import ConnectionEntry, ConnectionLog
from idservice.service_layer.ports.consents import (
    AttemptCounterRepository,
    AttemptGate,
    ConsentOutcome,
    ConsentRecordRepository,
    ConsentRequest,
    GuardianConsentRepository,
    NewConsentRequest,
)
from idservice.service_layer.ports.events import DeliveryFailed, EventSink
from idservice.service_layer.ports.outbox import (
    DueEvent,
    OutboxEntry,
    OutboxRepository,
    PendingEvent,
)
from idservice.service_layer.ports.providers import (
    IdentityProvider,
    SnsCredential,
    SnsIdentityProvider,
)
from idservice.service_layer.ports.security import (
    AccessClaims,
    IssuedToken,
    PasswordHasher,
    PendingCheck,
    SecretsCipher,
    TokenIssuer,
    TokenPurpose,
    VerifyOutcome,
)
from idservice.service_layer.ports.storage import (
    AccountRepository,
    AccountStanding,
    IdempotencyRepository,
    IdempotentResult,
    PasswordCredentials,
    RefreshRecord,
    SessionRepository,
    SignupTicketRepository,
    SnsIdentityRepository,
    SnsLink,
    StoredTicket,
    StoredVerification,
    UniqueViolation,
    UnitOfWork,
    UnitOfWorkFactory,
    VerificationRepository,
)

# The time source of every use case: an aware UTC datetime (tests pass a controllable clock).
Clock = Callable[[], datetime]

__all__ = [
    "AccessClaims",
    "AccountRepository",
    "AccountStanding",
    "AttemptCounterRepository",
    "AttemptGate",
    "Clock",
    "ConnectionEntry",
    "ConnectionLog",
    "ConsentOutcome",
    "ConsentRecordRepository",
    "ConsentRequest",
    "DeliveryFailed",
    "DueEvent",
    "EventSink",
    "GuardianConsentRepository",
    "IdempotencyRepository",
    "IdempotentResult",
    "IdentityProvider",
    "IssuedToken",
    "NewConsentRequest",
    "OutboxEntry",
    "OutboxRepository",
    "PasswordCredentials",
    "PasswordHasher",
    "PendingCheck",
    "PendingEvent",
    "RefreshRecord",
    "SecretsCipher",
    "SessionRepository",
    "SignupTicketRepository",
    "SnsCredential",
    "SnsIdentityProvider",
    "SnsIdentityRepository",
    "SnsLink",
    "StoredTicket",
    "StoredVerification",
    "TokenIssuer",
    "TokenPurpose",
    "UniqueViolation",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "VerificationRepository",
    "VerifyOutcome",
]
