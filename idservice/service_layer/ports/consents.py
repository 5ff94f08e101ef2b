"""Storage ports of consent: guardian consent requests, consent records, attempt counters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from idservice.domain.consents import ConsentRecord
from idservice.domain.guardian_consent import ConsentRequestStatus


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
    # How the guardian confirmed (korea-rules Guardian 3), once approved.
    method: str | None = None


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

    def replace_code(
        self,
        request_id: str,
        *,
        code_hash: str,
        now: datetime,
        sent_before: datetime | None = None,
        max_sent: int | None = None,
    ) -> bool:
        """A fresh code for a pending request (the old one stops working); counts the send.
        False, nothing written, if it is not pending, or (when given) its last message (or its
        creation) is not before `sent_before`, or `max_sent` messages went out already."""

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


class ConsentRecordRepository(Protocol):
    """Each grant and withdrawal of a consent, kept as records (korea-rules Rights 3)."""

    def add(self, record: ConsentRecord) -> None: ...

    def of_account(self, account_id: str) -> list[ConsentRecord]:
        """Oldest first."""

    def purge(self, *, before: datetime) -> int: ...


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
        block_for: timedelta | None,
    ) -> AttemptGate:
        """Count one attempt; past `limit` in the window the caller is blocked for `block_for`.
        With `block_for` None the window is fixed: an attempt is refused (not counted, nothing
        blocked) while the window's count is at `limit`, so a `release` admits one again, and
        `blocked_until` says when the window ends. Concurrent hits never admit more than
        `limit` a window."""

    def release(self, scope: str, key_hash: str, *, counted_at: datetime) -> None:
        """Take back one attempt counted at `counted_at`, if its window is still the current one
        (an attempt that turned out not to count, such as a successful login)."""

    def purge_expired(self, *, before: datetime) -> int: ...
