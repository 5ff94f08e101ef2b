"""Storage ports: the unit of work and one repository per aggregate, with the records they return.

The SQL adapters (`idservice.adapters.db`) implement these; the service-layer tests use in-memory
fakes of the same Protocols. The database decides uniqueness: an insert that hits a unique index
raises UniqueViolation naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Protocol, Self

from idservice.domain.accounts import Account
from idservice.domain.guardian_consent import ConsentRequestStatus
from idservice.domain.identity import VerifiedPerson
from idservice.domain.lockout import LockoutPolicy, LoginGate
from idservice.domain.sessions import RevokeReason, Session
from idservice.domain.sns import SnsProfile, SnsProvider
from idservice.service_layer.ports.outbox import OutboxRepository


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
class NewConsentRequest:
    """A guardian consent request as it is opened."""

    id: str
    account_id: str
    guardian_name: str
    guardian_phone: str
    code_hash: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SnsLink:
    """An SNS identity linked to an account, with the nickname and picture kept with it."""

    id: str
    account_id: str
    provider: SnsProvider
    subject: str
    nickname: str
    picture_url: str
    created_at: datetime
    last_login_at: datetime


@dataclass(frozen=True, slots=True)
class StoredTicket:
    """A signup ticket of an SNS login that found no account."""

    profile: SnsProfile
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """A guardian consent request as stored (the guardian's name and contact decrypted)."""

    id: str
    account_id: str
    status: ConsentRequestStatus
    code_hash: str
    guardian_name: str
    guardian_phone: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    notifications_sent: int
    last_notified_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConsentOutcome:
    """What is left of a request whose child account was destroyed."""

    status: ConsentRequestStatus
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptGate:
    """Whether an attempt may be checked now; if not, until when it may not."""

    admitted: bool
    blocked_until: datetime | None = None


class AccountRepository(Protocol):
    """Accounts; unique indexes on the email, CI and DI blind indexes decide duplicates."""

    def add(self, account: Account, *, email_key: str | None) -> None:
        """Insert; UniqueViolation('email_index'|'ci_index'|'di_index') on a duplicate."""

    def get(self, account_id: str, *, for_update: bool = False) -> Account | None:
        """The account; `for_update` locks its row until the transaction ends."""

    def get_by_email(self, email_key: str) -> Account | None: ...

    def find_by_identity(self, *, ci: str | None, di: str | None) -> Account | None: ...

    def save_profile(
        self,
        account_id: str,
        *,
        name: str | None = None,
        phone_number: str | None = None,
        birth_date: date | None = None,
        now: datetime,
    ) -> None:
        """Write only the given fields, so concurrent corrections of other fields survive."""

    def delete_pending(self, account_id: str) -> bool:
        """Destroy an account still waiting for guardian consent (never any other account)."""

    def activate(self, account_id: str, *, now: datetime) -> bool:
        """PENDING_GUARDIAN_CONSENT -> ACTIVE; False if the account was not pending."""

    def delete(self, account_id: str) -> bool:
        """Destroy the account row; its sessions, links and consent requests go with it."""

    def replace_password_hash(
        self, account_id: str, *, expected: str, new: str | None, now: datetime
    ) -> bool:
        """Swap the hash only if it is still `expected` (None: keep it, just lock the row)."""

    def begin_login_attempt(
        self, account_id: str, *, now: datetime, policy: LockoutPolicy
    ) -> LoginGate:
        """Admit a password attempt before its outcome is known, or say why not."""

    def end_login_attempt(
        self, account_id: str, *, succeeded: bool, now: datetime, policy: LockoutPolicy
    ) -> None:
        """Record an admitted attempt's outcome; the failure that reaches the threshold locks."""

    def rejoin_hold_until(
        self, *, ci: str | None, di: str | None, now: datetime
    ) -> datetime | None:
        """End of the re-join cooldown of a withdrawn person with this CI or DI, if running."""

    def add_rejoin_hold(
        self, hold_id: str, *, ci: str | None, di: str | None, until: datetime
    ) -> None: ...

    def purge_rejoin_holds(self, *, now: datetime) -> int: ...


class SessionRepository(Protocol):
    """Sessions and their rotating refresh tokens (stored as keyed hashes only)."""

    def add(self, session: Session) -> None: ...

    def add_refresh_token(
        self, token_hash: str, *, session_id: str, now: datetime, expires_at: datetime
    ) -> None: ...

    def get(self, session_id: str) -> Session | None: ...

    def of_account(self, account_id: str) -> list[Session]:
        """The account's sessions, newest first."""

    def find_refresh(self, token_hash: str) -> RefreshRecord | None: ...

    def mark_refresh_used(self, token_hash: str, *, now: datetime) -> bool:
        """Use a refresh token once; False when another call used it first."""

    def revoke(self, session_id: str, *, now: datetime, reason: RevokeReason) -> bool: ...

    def revoke_others(
        self, account_id: str, *, keep: str | None, now: datetime, reason: RevokeReason
    ) -> int: ...

    def purge_ended(self, *, now: datetime, revoked_before: datetime) -> int: ...


class VerificationRepository(Protocol):
    """Completed verifications: the person encrypted, referenced by a hashed single-use token."""

    def add(
        self,
        verification_id: str,
        *,
        provider: str,
        source_hash: str,
        token_hash: str,
        person: VerifiedPerson,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        """Insert; UniqueViolation('source_hash') when the verification was used before."""

    def get_by_token(self, token_hash: str) -> StoredVerification | None: ...

    def consume(self, verification_id: str, *, now: datetime) -> bool:
        """Use the token once and drop the stored person; False if already used or expired."""

    def purge_expired(self, *, now: datetime) -> int: ...


class GuardianConsentRepository(Protocol):
    """Consent requests of children under 14; the guardian's name and contact are encrypted."""

    def add(self, request: NewConsentRequest) -> None: ...

    def get(self, request_id: str) -> ConsentRequest | None: ...

    def expired_pending(self, *, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(request id, child account id) of pending requests whose window has ended."""

    def admit_code_attempt(
        self, request_id: str, *, now: datetime, max_attempts: int
    ) -> AttemptGate:
        """Count a consent-code attempt before its outcome is known (like the login gate):
        wrong codes so far plus attempts in flight stay under `max_attempts`, else the gate
        says until when the request refuses codes."""

    def end_code_attempt(
        self, request_id: str, *, right: bool, now: datetime, max_attempts: int, pause: timedelta
    ) -> None:
        """A right code clears the count; the wrong one that reaches the bound pauses codes."""

    def replace_code(self, request_id: str, *, code_hash: str, now: datetime) -> bool:
        """A fresh code for a pending request (the old one stops working); counts the send."""

    def approve(
        self,
        request_id: str,
        *,
        guardian_name: str,
        guardian_phone: str,
        guardian_ci: str,
        method: str,
        now: datetime,
    ) -> bool:
        """PENDING -> APPROVED with the verified guardian stored; False if no longer pending."""

    def of_account(self, account_id: str) -> ConsentRequest | None:
        """The account's consent request (the latest), if it has one."""

    def approved_wards(self, guardian_ci: str) -> list[str]:
        """Account ids of the children this guardian (by CI) approved."""

    def approved_guardian_is(self, account_id: str, guardian_ci: str) -> bool:
        """Whether `guardian_ci` is the approved guardian of the account."""

    def add_outcome(
        self, request_id: str, *, status: ConsentRequestStatus, expires_at: datetime, now: datetime
    ) -> None:
        """Record what became of a request whose account is destroyed (ids and times only)."""

    def outcome(self, request_id: str) -> ConsentOutcome | None: ...

    def purge_outcomes(self, *, before: datetime) -> int: ...


class AttemptCounterRepository(Protocol):
    """Attempts per caller in fixed windows (e.g. consent codes per end-user address)."""

    def hit(
        self,
        scope: str,
        key_hash: str,
        *,
        now: datetime,
        window: timedelta,
        limit: int,
        block_for: timedelta,
    ) -> AttemptGate:
        """Count one attempt; past `limit` in the window the caller is blocked for a while."""

    def purge_expired(self, *, before: datetime) -> int: ...


class IdempotencyRepository(Protocol):
    """Responses of idempotent calls, encrypted, by keyed hash of the caller's key."""

    def get(self, key_hash: str, *, operation: str, now: datetime) -> IdempotentResult | None: ...

    def put(
        self,
        key_hash: str,
        *,
        operation: str,
        fingerprint: str,
        response: bytes,
        now: datetime,
        ttl: timedelta,
    ) -> None:
        """Store; UniqueViolation('key_hash') when a concurrent call stored first."""

    def purge_expired(self, *, now: datetime) -> int: ...


class SnsIdentityRepository(Protocol):
    """(provider, subject) links; unique across accounts, and one per provider per account."""

    def add(self, link: SnsLink) -> None:
        """Insert; UniqueViolation('subject_index') when the identity is linked anywhere,
        UniqueViolation('account_provider') when the account already has this provider."""

    def find(self, provider: SnsProvider, subject: str) -> SnsLink | None: ...

    def of_account(self, account_id: str) -> list[SnsLink]: ...

    def touch(self, link_id: str, *, nickname: str, picture_url: str, now: datetime) -> None:
        """Refresh the kept nickname and picture at a login."""

    def remove(self, account_id: str, provider: SnsProvider) -> bool: ...


class SignupTicketRepository(Protocol):
    """Single-use tickets from an SNS login to a SignUp, stored as keyed hashes."""

    def add(
        self, ticket_hash: str, profile: SnsProfile, *, now: datetime, expires_at: datetime
    ) -> None:
        """Store a ticket; an unused earlier ticket of the same (provider, subject) goes."""

    def get(self, ticket_hash: str, *, now: datetime) -> StoredTicket | None:
        """The ticket's profile while unused and unexpired."""

    def consume(self, ticket_hash: str, *, now: datetime) -> bool:
        """Use the ticket once and drop its profile; False if used or expired."""

    def purge_expired(self, *, now: datetime) -> int: ...


class UnitOfWork(Protocol):
    """`with uow: ...; uow.commit()` — one transaction; leaving without commit rolls back."""

    @property
    def accounts(self) -> AccountRepository: ...

    @property
    def sessions(self) -> SessionRepository: ...

    @property
    def verifications(self) -> VerificationRepository: ...

    @property
    def guardian_consents(self) -> GuardianConsentRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def sns_identities(self) -> SnsIdentityRepository: ...

    @property
    def signup_tickets(self) -> SignupTicketRepository: ...

    @property
    def attempt_counters(self) -> AttemptCounterRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    """Opens units of work; `readonly=True` for reads (no write lock, may run in autocommit)."""

    def __call__(self, *, readonly: bool = False) -> UnitOfWork: ...

    def make_deletions_final(self) -> None:
        """Leave no copy of deleted rows in the storage's own files (SQLite's write-ahead log)."""
