"""The in-memory tables behind the storage fakes: one row type per SQL table, and `FakeState`.

Rows hold plaintext (the SQL adapters' encryption and blind indexes are not observable through
the ports) but keep exactly what the SQL rows keep, so the fakes answer the same: a consumed
verification has no person left, a session's `revoked_at` is set only by `revoke`, an outbox
event is its `Event.document()` JSON, a used signup ticket has no profile left. Rows without a
foreign key to `accounts` (consent outcomes, attempt counters, re-join holds) outlive accounts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from idservice.domain.accounts import Account
from idservice.domain.audit import ChainLink
from idservice.domain.consents import ConsentRecord
from idservice.domain.identity import VerifiedPerson
from idservice.domain.sessions import Session
from idservice.domain.sns import SnsProfile
from idservice.service_layer.ports import ConnectionEntry, NewConsentRequest, SnsLink


class FakeIntegrityError(Exception):
    """What the SQL adapters let through as sqlalchemy's IntegrityError: a primary-key clash, a
    missing parent row (foreign key), a unique index the port does not name."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint


class ReadOnlyWrite(RuntimeError):
    """A repository write inside `uow(readonly=True)` (a use-case bug the fake refuses)."""


def utc(instant: datetime) -> datetime:
    """As the `UtcDateTime` column type stores it: naive refused, aware kept in UTC."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("naive datetime")
    return instant.astimezone(UTC)


def utc_or_none(instant: datetime | None) -> datetime | None:
    return None if instant is None else utc(instant)


@dataclass
class AccountRow:
    account: Account
    email_key: str | None
    attempts_in_flight: int = 0
    attempts_expire_at: datetime | None = None
    marketing_reminded_at: datetime | None = None
    # Set on a withdrawn account's remains (only its CI/DI are kept, until `hold_until`).
    withdrawn_at: datetime | None = None
    hold_until: datetime | None = None

    @property
    def live(self) -> bool:
        return self.withdrawn_at is None


@dataclass
class SessionRow:
    session: Session
    revoked_reason: str | None = None


@dataclass
class RefreshRow:
    session_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass
class VerificationRow:
    provider: str
    source_hash: str
    token_hash: str
    # None once consumed or purged (the SQL column `person_ct` is set to NULL).
    person: VerifiedPerson | None
    created_at: datetime
    expires_at: datetime
    consumed_at: datetime | None = None


@dataclass
class HoldRow:
    ci: str | None
    di: str | None
    until: datetime


@dataclass
class ConsentRow:
    # As opened, then as changed: `replace_code` swaps the code hash, `approve` the guardian's
    # name and phone (NewConsentRequest is frozen: the field is replaced, never changed).
    request: NewConsentRequest
    status: str = "pending"
    decided_at: datetime | None = None
    failed_code_attempts: int = 0
    code_locked_until: datetime | None = None
    notifications_sent: int = 1
    last_notified_at: datetime | None = None
    method: str | None = None
    # The SQL row keeps a blind index of the approved guardian's CI; equality is all it answers.
    guardian_ci: str | None = None


@dataclass
class OutcomeRow:
    status: str
    expires_at: datetime
    decided_at: datetime


@dataclass
class CounterRow:
    window_start: datetime
    count: int
    blocked_until: datetime | None = None


@dataclass
class IdempotencyRow:
    operation: str
    fingerprint: str
    response: bytes
    created_at: datetime
    expires_at: datetime


@dataclass
class OutboxRow:
    type: str
    document: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    account_id: str | None = None
    # The event's place among those its transaction wrote (the order is created_at, position, id).
    position: int = 0
    dead_at: datetime | None = None
    last_error: str | None = None

    def order(self, event_id: str) -> tuple[datetime, int, str]:
        return (self.created_at, self.position, event_id)


@dataclass
class TicketRow:
    # None once used (the SQL column `profile_ct` is set to NULL).
    profile: SnsProfile | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    # (provider, subject), kept after use (the SQL column `subject_index`).
    subject: tuple[str, str] | None = None


@dataclass
class AuditRow:
    """An `access_audit` row (a test may change it, as a tamperer would change the SQL row)."""

    seq: int
    occurred_at: datetime
    actor: str
    guardian_ci: str | None
    client: str
    subject_account_id: str
    action: str
    prev_hash: str
    row_hash: str


@dataclass
class AuditChainRow:
    """The `audit_chain` row: the tail and the anchor."""

    last: ChainLink
    anchor: ChainLink


@dataclass
class FakeState:
    """Every table, keyed by primary key (dicts keep insertion order)."""

    accounts: dict[str, AccountRow] = field(default_factory=dict)
    sessions: dict[str, SessionRow] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshRow] = field(default_factory=dict)
    verifications: dict[str, VerificationRow] = field(default_factory=dict)
    rejoin_holds: dict[str, HoldRow] = field(default_factory=dict)
    consent_requests: dict[str, ConsentRow] = field(default_factory=dict)
    consent_outcomes: dict[str, OutcomeRow] = field(default_factory=dict)
    # Keyed by (scope, key_hash).
    attempt_counters: dict[tuple[str, str], CounterRow] = field(default_factory=dict)
    idempotency: dict[str, IdempotencyRow] = field(default_factory=dict)
    outbox: dict[str, OutboxRow] = field(default_factory=dict)
    # SnsLink is frozen and holds only immutable values: a row is replaced, never changed.
    sns_identities: dict[str, SnsLink] = field(default_factory=dict)
    signup_tickets: dict[str, TicketRow] = field(default_factory=dict)
    # The access audit by seq, and its chain row (None before the first append).
    access_audit: dict[int, AuditRow] = field(default_factory=dict)
    audit_chain: AuditChainRow | None = None
    consent_records: list[ConsentRecord] = field(default_factory=list)
    # One entry per RPC, in the order recorded (the SQL rows' ids are random).
    connection_log: list[ConnectionEntry] = field(default_factory=list)

    def sns_providers(self, account_id: str) -> tuple[str, ...]:
        """The providers linked to an account, sorted (as `Account.sns_providers` reads)."""
        return tuple(
            sorted(
                link.provider.value
                for link in self.sns_identities.values()
                if link.account_id == account_id
            )
        )

    def drop_sessions(self, session_ids: set[str]) -> None:
        """Delete sessions and their refresh tokens (ON DELETE CASCADE)."""
        for token_hash, token in list(self.refresh_tokens.items()):
            if token.session_id in session_ids:
                del self.refresh_tokens[token_hash]
        for session_id in session_ids:
            self.sessions.pop(session_id, None)

    def drop_account(self, account_id: str) -> None:
        """Delete an account with its sessions, consent requests and SNS links (ON DELETE
        CASCADE)."""
        self.drop_sessions(
            {s for s, row in self.sessions.items() if row.session.account_id == account_id}
        )
        for request_id, row in list(self.consent_requests.items()):
            if row.request.account_id == account_id:
                del self.consent_requests[request_id]
        for link_id, link in list(self.sns_identities.items()):
            if link.account_id == account_id:
                del self.sns_identities[link_id]
        del self.accounts[account_id]


class StateAccess(Protocol):
    """How a repository reaches the tables of its unit of work."""

    def read(self) -> FakeState:
        """The state this unit of work sees (its own changes included)."""

    def write(self) -> FakeState:
        """The state to change; ReadOnlyWrite in a read-only unit of work."""
