"""Guardian consent for a child under 14: open, show, approve, reject, resend.

korea-rules "Guardian consent": the guardian confirms by mobile identity verification (an adult,
not the child, reachable at the contact the child gave); a refusal or a window that ends destroys
the child's pending data and the guardian's name and contact. Consent codes are 8 digits, stored
as keyed hashes, compared in constant time, and their attempts are counted per request and per
caller so that a code cannot be guessed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from idservice.domain import events
from idservice.domain.accounts import Account
from idservice.domain.age import seoul_today
from idservice.domain.consents import ConsentChannel, legal_guardian_consent
from idservice.domain.errors import DomainError, Reason
from idservice.domain.events import EventType
from idservice.domain.guardian_consent import (
    MAX_NOTIFICATIONS,
    RESEND_INTERVAL,
    ConsentRequestStatus,
    GuardianContact,
    check_guardian,
    check_open,
    check_resend_allowed,
    new_consent_code,
    request_closed,
)
from idservice.domain.ids import new_id
from idservice.domain.masking import mask_name
from idservice.service_layer import rate_limits, verification
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    Clock,
    ConsentRequest,
    NewConsentRequest,
    SecretsCipher,
    TokenPurpose,
    UnitOfWork,
    UnitOfWorkFactory,
)
from idservice.service_layer.use_cases import Command
from idservice.service_layer.validation import normalize_phone

# Wrong codes a request takes before it refuses codes for CODE_PAUSE (≈ 26.6 bits of code against
# 5 guesses per 15 minutes over a 5-day window: about 2,400 guesses, a chance of 1 in 40,000).
MAX_CODE_ATTEMPTS = 5
CODE_PAUSE = timedelta(minutes=15)
# Per end-user address (when a trusted proxy names it), codes tried wrong or right and resends
# are limited by `policy.rate_limits` (service_layer/rate_limits.py).
# How confirmation was done (korea-rules Guardian 3: record the method and time).
METHOD_MOBILE_VERIFICATION = ConsentChannel.MOBILE_IDENTITY_VERIFICATION.value
# Longest request id or code we look at.
MAX_ID_LENGTH = 64


@dataclass(frozen=True, slots=True)
class ConsentRequestRef:
    id: str
    expires_at: datetime


def code_hash(request_id: str, code: str, *, cipher: SecretsCipher) -> str:
    """Consent codes are stored only as keyed hashes bound to their request."""
    return cipher.token_hash(f"{request_id}:{code}", purpose=TokenPurpose.CONSENT_CODE)


def open_request(
    tx: UnitOfWork,
    child: Account,
    guardian: GuardianContact,
    *,
    now: datetime,
    cipher: SecretsCipher,
    policy: Policy,
) -> ConsentRequestRef:
    """Open the child's consent request and ask the sender to reach the guardian (one event)."""
    request_id = new_id()
    code = new_consent_code()
    expires_at = now + policy.guardian_consent_window
    tx.guardian_consents.add(
        NewConsentRequest(
            id=request_id,
            account_id=child.id,
            guardian_name=guardian.name,
            guardian_phone=guardian.phone_number,
            code_hash=code_hash(request_id, code, cipher=cipher),
            created_at=now,
            expires_at=expires_at,
        )
    )
    _notify(tx, request_id, child.id, guardian, code, expires_at, now=now)
    return ConsentRequestRef(id=request_id, expires_at=expires_at)


def _notify(
    tx: UnitOfWork,
    request_id: str,
    account_id: str,
    guardian: GuardianContact,
    code: str,
    expires_at: datetime,
    *,
    now: datetime,
) -> None:
    tx.outbox.add(
        events.guardian_consent_requested(
            consent_request_id=request_id,
            account_id=account_id,
            guardian_name=guardian.name,
            guardian_phone_number=guardian.phone_number,
            consent_code=code,
            expires_at=expires_at,
            now=now,
        )
    )


def not_found() -> DomainError:
    return DomainError(Reason.CONSENT_REQUEST_NOT_FOUND, "no such consent request")


def _load(tx: UnitOfWork, request_id: str) -> ConsentRequest:
    if not request_id or len(request_id) > MAX_ID_LENGTH:
        raise not_found()
    request = tx.guardian_consents.get(request_id)
    if request is not None:
        return request
    outcome = tx.guardian_consents.outcome(request_id)
    if outcome is None:
        raise not_found()
    raise request_closed(outcome.status)


# -- GetConsentRequest ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConsentRequestView:
    id: str
    status: ConsentRequestStatus
    expires_at: datetime
    masked_child_name: str


@dataclass(frozen=True, slots=True, repr=False)
class GetConsentRequest(Command[ConsentRequestView]):
    id: str


def get_consent_request(
    cmd: GetConsentRequest, *, uow: UnitOfWorkFactory, clock: Clock
) -> ConsentRequestView:
    """Status, expiry and the child's masked name; nothing else about the child or guardian."""
    now = clock()
    with uow(readonly=True) as tx:
        request = tx.guardian_consents.get(cmd.id) if len(cmd.id) <= MAX_ID_LENGTH else None
        if request is None:
            outcome = tx.guardian_consents.outcome(cmd.id) if cmd.id else None
            if outcome is None or len(cmd.id) > MAX_ID_LENGTH:
                raise not_found()
            return ConsentRequestView(cmd.id, outcome.status, outcome.expires_at, "")
        child = tx.accounts.get(request.account_id)
    status = request.status
    if status is ConsentRequestStatus.PENDING and request.expires_at <= now:
        status = ConsentRequestStatus.EXPIRED  # the purge has not destroyed it yet
    name = mask_name(child.name) if child is not None else ""
    return ConsentRequestView(request.id, status, request.expires_at, name)


# -- consent codes -------------------------------------------------------------------------------
def _check_code(
    request: ConsentRequest,
    code: str,
    client_address: str,
    *,
    now: datetime,
    uow: UnitOfWorkFactory,
    cipher: SecretsCipher,
    policy: Policy,
) -> None:
    """The request's code, or PERMISSION_DENIED CONSENT_CODE_INVALID.

    One write transaction admits the attempt (counted, the request's row locked), compares the
    code and records the outcome: concurrent guesses queue on the row and cannot outrun the
    bound, and an attempt whose transaction fails leaves no count behind (nor an answer). The
    code is compared with the request as it is under the lock: one a resend replaced after
    `request` was read no longer passes.
    """
    given = code_hash(request.id, code, cipher=cipher) if _looks_like_code(code) else ""
    client_key = rate_limits.address_key(client_address, cipher=cipher)
    with uow() as tx:
        if client_key:
            refusal = rate_limits.hit(
                tx,
                rate_limits.Scope.CONSENT_CODES,
                client_key,
                policy.rate_limits.consent_codes,
                now=now,
            )
            if refusal is not None:
                tx.commit()
                raise refusal
        gate = tx.guardian_consents.admit_code_attempt(
            request.id, now=now, max_attempts=MAX_CODE_ATTEMPTS
        )
        if not gate.admitted:
            # Decided (or destroyed) since it was read: that is the answer, not a rate limit.
            _open_request(tx, request.id, now=now)
            tx.commit()
            raise _rate_limited(gate.blocked_until, now)
        current = _open_request(tx, request.id, now=now)
        right = hmac.compare_digest(given.encode(), current.code_hash.encode())
        tx.guardian_consents.end_code_attempt(
            request.id, right=right, now=now, max_attempts=MAX_CODE_ATTEMPTS, pause=CODE_PAUSE
        )
        tx.commit()
    if not right:
        raise DomainError(Reason.CONSENT_CODE_INVALID, "the consent code is wrong")


def _looks_like_code(code: str) -> bool:
    return 0 < len(code) <= MAX_ID_LENGTH and code.isascii() and code.isdigit()


def _rate_limited(until: datetime | None, now: datetime) -> DomainError:
    return rate_limits.rate_limited(
        until, now, "too many consent codes were tried; wait before trying again"
    )


def _no_longer_open(uow: UnitOfWorkFactory, request_id: str, *, now: datetime) -> DomainError:
    """What a request that could not be decided answers, read again now: CLOSED once decided,
    EXPIRED once expired, NOT_FOUND once even its outcome is gone (as GetConsentRequest)."""
    try:
        with uow(readonly=True) as tx:
            _open_request(tx, request_id, now=now)
    except DomainError as answer:
        return answer
    return DomainError(Reason.CONSENT_REQUEST_CLOSED, "the consent request was decided")


def _open_request(tx: UnitOfWork, request_id: str, *, now: datetime) -> ConsentRequest:
    """The request, if it may still be decided. One destroyed (rejected, or expired and purged)
    answers from its kept outcome, as GetConsentRequest reports it: CONSENT_REQUEST_EXPIRED when
    it expired, CONSENT_REQUEST_CLOSED when it was decided; NOT_FOUND once that is gone too."""
    request = _load(tx, request_id)
    check_open(request.status, request.expires_at, now)
    return request


# -- ApproveConsentRequest -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, repr=False)
class ApproveConsentRequest(Command[str]):
    """Answers the ward's account id."""

    id: str
    consent_code: str
    guardian_verification_token: str
    # The end-user address, when a trusted proxy names it ("" otherwise).
    client_address: str = ""


def approve_consent_request(
    cmd: ApproveConsentRequest,
    *,
    uow: UnitOfWorkFactory,
    cipher: SecretsCipher,
    policy: Policy,
    clock: Clock,
) -> str:
    now = clock()
    with uow(readonly=True) as tx:
        request = _open_request(tx, cmd.id, now=now)
        child = tx.accounts.get(request.account_id)
    if child is None:  # rejected (the account went with it) between the two reads
        raise _no_longer_open(uow, request.id, now=now)
    _check_code(
        request,
        cmd.consent_code,
        cmd.client_address,
        now=now,
        uow=uow,
        cipher=cipher,
        policy=policy,
    )
    guardian = verification.peek(cmd.guardian_verification_token, now=now, uow=uow, cipher=cipher)
    verified_phone = normalize_phone(guardian.phone_number, require_valid=False)
    check_guardian(
        guardian,
        guardian_phone=verified_phone,
        child_ci=child.ci,
        child_di=child.di,
        contact_phone=request.guardian_phone,
        today=seoul_today(now),
    )
    if not guardian.ci:
        # The ward's rights are authorised by the guardian's CI: one without a CI cannot act.
        raise DomainError(
            Reason.IDENTITY_VERIFICATION_REQUIRED, "the guardian's verification carries no CI"
        )
    with uow() as tx:
        verification.consume(tx, cmd.guardian_verification_token, now=now, cipher=cipher)
        # The account's row first, then the request's, then its messages: the order a rejection
        # takes them in too (deleting the account takes the request with it), so an approval
        # and a rejection at once queue instead of deadlocking.
        approved = tx.accounts.activate(child.id, now=now) and tx.guardian_consents.approve(
            request.id,
            guardian_name=guardian.name,
            guardian_phone=verified_phone,
            guardian_ci=guardian.ci,
            method=METHOD_MOBILE_VERIFICATION,
            now=now,
        )
        if approved:
            tx.consent_records.add(legal_guardian_consent(child.id, now=now))  # outlives request
            tx.outbox.add(
                events.guardian_consent_approved(
                    consent_request_id=request.id, account_id=child.id, now=now
                )
            )
            tx.outbox.add(events.account_activated(account_id=child.id, now=now))
            _forget_code_messages(tx, request.id)
            tx.commit()
    if not approved:  # decided or expired since it was read; nothing was written
        raise _no_longer_open(uow, request.id, now=now)
    return child.id


def _forget_code_messages(tx: UnitOfWork, request_id: str) -> None:
    """The request is closed: its messages (guardian's name, phone, code) are not needed."""
    tx.outbox.delete_matching(
        EventType.GUARDIAN_CONSENT_REQUESTED.value, key="consent_request_id", values={request_id}
    )


# -- RejectConsentRequest ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, repr=False)
class RejectConsentRequest(Command[ConsentRequestStatus]):
    id: str
    consent_code: str
    client_address: str = ""


def reject_consent_request(
    cmd: RejectConsentRequest,
    *,
    uow: UnitOfWorkFactory,
    cipher: SecretsCipher,
    policy: Policy,
    clock: Clock,
) -> ConsentRequestStatus:
    """The guardian refuses: the child's pending account, its verification data and the
    guardian's name and contact are deleted at once (korea-rules Guardian 4)."""
    now = clock()
    with uow(readonly=True) as tx:
        request = _open_request(tx, cmd.id, now=now)
    _check_code(
        request,
        cmd.consent_code,
        cmd.client_address,
        now=now,
        uow=uow,
        cipher=cipher,
        policy=policy,
    )
    with uow() as tx:
        # The account's row (and with it the request's) first: see approve_consent_request.
        rejected = tx.accounts.delete_pending(request.account_id)
        if rejected:
            _forget_code_messages(tx, request.id)
            tx.guardian_consents.add_outcome(
                request.id,
                status=ConsentRequestStatus.REJECTED,
                expires_at=request.expires_at,
                now=now,
            )
            tx.outbox.add(
                events.guardian_consent_rejected(
                    consent_request_id=request.id, account_id=request.account_id, now=now
                )
            )
            tx.commit()
    if not rejected:  # decided since it was read; nothing was written
        raise _no_longer_open(uow, request.id, now=now)
    return ConsentRequestStatus.REJECTED


# -- ResendConsentNotification -------------------------------------------------------------------
@dataclass(frozen=True, slots=True, repr=False)
class ResendConsentNotification(Command[datetime]):
    """Answers the request's expiry."""

    id: str
    # The end-user address, when a trusted proxy names it ("" otherwise).
    client_address: str = field(default="", repr=False)


def resend_consent_notification(
    cmd: ResendConsentNotification,
    *,
    uow: UnitOfWorkFactory,
    cipher: SecretsCipher,
    policy: Policy,
    clock: Clock,
) -> datetime:
    """The request event again, with a fresh code (the old one stops working).

    Each call counts toward the limit of its end-user address first; the request itself allows
    one message a minute and MAX_NOTIFICATIONS in all.
    """
    now = clock()
    rate_limits.count_address(
        uow,
        rate_limits.Scope.CONSENT_RESENDS,
        cmd.client_address,
        policy.rate_limits.consent_resends,
        now=now,
        cipher=cipher,
    )
    code = new_consent_code()
    with uow() as tx:
        request = _open_request(tx, cmd.id, now=now)
        _check_resend(request, now=now)
        # The same bounds again in the write: resends at once must not all pass the read.
        replaced = tx.guardian_consents.replace_code(
            request.id,
            code_hash=code_hash(request.id, code, cipher=cipher),
            now=now,
            sent_before=now - RESEND_INTERVAL,
            max_sent=MAX_NOTIFICATIONS,
        )
        if replaced:
            _forget_code_messages(tx, request.id)
            guardian = GuardianContact(request.guardian_name, request.guardian_phone)
            _notify(tx, request.id, request.account_id, guardian, code, request.expires_at, now=now)
            tx.commit()
    if not replaced:
        # Decided, expired or gone since it was read, or another resend first: as a call now.
        with uow(readonly=True) as tx:
            _check_resend(_open_request(tx, request.id, now=now), now=now)
        raise _no_longer_open(uow, request.id, now=now)
    return request.expires_at


def _check_resend(request: ConsentRequest, *, now: datetime) -> None:
    last = request.last_notified_at or request.created_at
    check_resend_allowed(request.notifications_sent, last, expires_at=request.expires_at, now=now)
