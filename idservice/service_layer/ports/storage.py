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

from idservice.domain.accounts import Account, AccountProfile, AccountStatus, Consents
from idservice.domain.identity import VerifiedPerson
from idservice.domain.lockout import LockoutPolicy, LoginGate
from idservice.domain.sessions import RevokeReason, Session
from idservice.domain.sns import SnsProfile, SnsProvider
from idservice.service_layer.ports.audit import AccessAuditRepository
from idservice.service_layer.ports.connection_log import ConnectionLog
from idservice.service_layer.ports.consents import (
    AttemptCounterRepository,
    ConsentRecordRepository,
    GuardianConsentRepository,
)
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
class AccountStanding:
    """An account's standing without its personal data: who it is, whether it may sign in, its
    birth date (an access token's age band, an age check) and whether it was verified. Only the
    birth date is decrypted to read it."""

    id: str
    status: AccountStatus
    birth_date: date
    identity_verified: bool


@dataclass(frozen=True, slots=True)
class PasswordCredentials:
    """What a password login reads of an account: its standing and its password hash (None
    for an account without a password). No personal field but the birth date is decrypted."""

    standing: AccountStanding
    password_hash: str | None


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


class AccountRepository(Protocol):
    """Accounts; unique indexes on the email, CI and DI blind indexes decide duplicates."""

    def add(self, account: Account, *, email_key: str | None) -> None:
        """Insert; UniqueViolation('email_index'|'ci_index'|'di_index') on a duplicate."""

    def get(self, account_id: str, *, for_update: bool = False) -> Account | None:
        """The account; `for_update` locks its row until the transaction ends."""

    def get_by_email(self, email_key: str) -> Account | None: ...

    def credentials_by_email(self, email_key: str) -> PasswordCredentials | None:
        """The live account with this email key as a password login needs it."""

    def find_by_identity(self, *, ci: str | None, di: str | None) -> Account | None: ...

    def save_profile(
        self,
        account_id: str,
        *,
        name: str | None = None,
        phone_number: str | None = None,
        birth_date: date | None = None,
        now: datetime,
    ) -> bool:
        """Write only the given fields, so concurrent corrections of other fields survive; False
        (nothing written) when the account is gone or withdrawn (a withdrawal that committed
        after the account was read)."""

    def adopt_ci(self, account_id: str, ci: str, *, now: datetime) -> bool:
        """Store `ci` on an account that holds none (a Kakao CI linked to an unverified account),
        so one person's other signups find it. False when the account already holds one or is
        gone; raises UniqueViolation('ci_index') when another account holds it."""

    def delete_pending(self, account_id: str) -> bool:
        """Destroy an account still waiting for guardian consent (never any other account)."""

    def activate(self, account_id: str, *, now: datetime) -> bool:
        """PENDING_GUARDIAN_CONSENT -> ACTIVE; False if the account was not pending."""

    def delete(self, account_id: str) -> bool:
        """Destroy the account row; its sessions, links and consent requests go with it."""

    def withdraw(self, account_id: str, *, now: datetime, hold_until: datetime) -> bool:
        """탈퇴: every personal field, session, link and request goes; an account with a CI or
        DI leaves only their blind indexes (still under the unique indexes, so no signup of the
        same person can slip in) until `hold_until`."""

    def release_expired_hold(self, *, ci: str | None, di: str | None, now: datetime) -> None:
        """Drop a withdrawn person's remains whose cooldown is over (before a new signup)."""

    def save_consents(self, account_id: str, consents: Consents, *, now: datetime) -> None:
        """Write marketing, third-party provision and processing-suspension choices."""

    def marketing_reconfirmation_due(
        self, *, now: datetime, opted_in_before: datetime, limit: int
    ) -> list[tuple[str, datetime, datetime | None]]:
        """(account id, opt-in time, anniversary last reminded) of live opt-ins given (or
        re-confirmed) before `opted_in_before`, last reminded before it or never."""

    def mark_reminded(self, account_id: str, *, opted_in_at: datetime, due: datetime) -> bool:
        """Record that the anniversary `due` of the opt-in given at `opted_in_at` was reminded;
        False when it (or a later one) already was (by a purge running at the same time in
        another process), or that opt-in is no longer the account's (withdrawn, re-confirmed)."""

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

    def get_with_profile(self, session_id: str) -> tuple[Session, AccountProfile | None] | None:
        """The session and, in the same read, its account (None once the account is gone)."""

    def get_with_standing(self, session_id: str) -> tuple[Session, AccountStanding | None] | None:
        """The session and, in the same read, its account's standing (None once the account is
        gone)."""

    def get_with_consents(self, session_id: str) -> tuple[Session, Consents | None] | None:
        """The session and, in the same read, its account's choices (None once the account is
        gone), without reading any personal data (introspection)."""

    def of_account(self, account_id: str) -> list[Session]:
        """The account's sessions, newest first."""

    def find_refresh(self, token_hash: str) -> RefreshRecord | None: ...

    def find_refresh_with_standing(
        self, token_hash: str
    ) -> tuple[RefreshRecord, AccountStanding | None] | None:
        """`find_refresh` and, in the same read, the standing of the session's account (None
        once the account is gone): what its next tokens need."""

    def mark_refresh_used(self, token_hash: str, *, now: datetime) -> bool:
        """Use a refresh token once while its session is live (not revoked, not expired);
        False when another call used it first or the session has ended."""

    def rotate_refresh(
        self, token_hash: str, *, successor: str, now: datetime
    ) -> tuple[Session, AccountStanding] | None:
        """Use a refresh token that may give tokens now (unused and unexpired, its session
        live, its account live and `may_sign_in`) and add `successor` to its session in its
        place, expiring with the session, as one atomic step: both or neither, even in a
        `single_write` unit of work. Returns the session and its account's standing (what the
        next access token needs); None, with nothing written, for any other token (used by
        another call first, ended, unknown)."""

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

    def consume(self, token_hash: str, *, now: datetime) -> bool:
        """Use the token once and drop the stored person; False if unknown, already used or
        expired."""

    def purge_expired(self, *, now: datetime) -> int: ...


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

    def touch(self, link_id: str, *, nickname: str, picture_url: str, now: datetime) -> bool:
        """Refresh the kept nickname and picture at a login; False when the link is gone."""

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

    @property
    def access_audit(self) -> AccessAuditRepository: ...

    @property
    def connection_log(self) -> ConnectionLog: ...

    @property
    def consent_records(self) -> ConsentRecordRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    """Opens units of work; `readonly=True` for reads (no write lock, may run in autocommit).

    `single_write=True`: the unit of work makes one write, through one repository call that
    is atomic on its own (`sessions.rotate_refresh`), then commits. A store may run it without
    a transaction around it (PostgreSQL: no BEGIN and COMMIT round trips), so nothing else may
    be written in it, and `commit()` may find the write already committed.
    """

    def __call__(self, *, readonly: bool = False, single_write: bool = False) -> UnitOfWork: ...

    def make_deletions_final(self) -> None:
        """Leave no copy of deleted rows in the storage's own files (SQLite's write-ahead log)."""
