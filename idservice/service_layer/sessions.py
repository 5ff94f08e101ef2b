"""Sign-in with a password, sessions, refresh-token rotation, logout and token introspection."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from idservice.domain.age import age_band, seoul_today
from idservice.domain.errors import DomainError, Reason
from idservice.domain.model import Account, AccountStatus, OutboxEvent, Session, SignInMethod
from idservice.service_layer.services import Services, new_id
from idservice.service_layer.validation import email_lookup_key, normalize_email

if TYPE_CHECKING:
    from idservice.adapters.db.unit_of_work import SqlUnitOfWork
    from idservice.adapters.hashing import VerifyOutcome
    from idservice.adapters.tokens import AccessClaims

log = logging.getLogger(__name__)

# Refresh tokens carry 256 bits of randomness (RFC 6749 §10.10 asks for unguessable tokens).
REFRESH_TOKEN_BYTES = 32
# How long an attempt waits for other attempts on the same account to finish (each takes one
# Argon2 hash, tens of milliseconds), and how often it looks.
ADMISSION_WAIT_SECONDS = 2.0
ADMISSION_POLL_SECONDS = 0.02
# Matches no account: unknown emails go through the same attempt-counting write.
NO_ACCOUNT_ID = "-"
# Longer than any password we accept (256 characters, up to 4 bytes each): not worth hashing.
MAX_PASSWORD_INPUT = 1024
# Longest bearer token we look at; anything larger is not ours.
MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """The tokens of a new or refreshed session."""

    account_id: str
    session_id: str
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    refresh_token_expires_at: datetime


@dataclass(frozen=True, slots=True)
class Caller:
    """The account and session of a verified bearer access token."""

    account_id: str
    session_id: str
    amr: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Introspection:
    active: bool
    account_id: str = ""
    session_id: str = ""
    expires_at: datetime | None = None
    age_band: str = ""


def invalid_credentials() -> DomainError:
    # The same error for an unknown email and a wrong password (no account enumeration).
    return DomainError(Reason.INVALID_CREDENTIALS, "the email or password is wrong")


def start_session(
    svc: Services, uow: SqlUnitOfWork, account: Account, *, amr: tuple[str, ...], now: datetime
) -> IssuedSession:
    """Create a session with its first refresh token inside the caller's transaction."""
    session = Session(
        id=new_id(),
        account_id=account.id,
        amr=amr,
        created_at=now,
        expires_at=now + svc.settings.refresh_token_ttl,
    )
    uow.sessions.add(session)
    return _issue_tokens(svc, uow, account, session, now=now)


def _issue_tokens(
    svc: Services, uow: SqlUnitOfWork, account: Account, session: Session, *, now: datetime
) -> IssuedSession:
    refresh_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    uow.sessions.add_refresh_token(
        svc.cipher.token_hash(refresh_token),
        session_id=session.id,
        now=now,
        expires_at=session.expires_at,
    )
    access = svc.tokens.issue(
        account_id=account.id,
        session_id=session.id,
        amr=session.amr,
        age_band=age_band(account.birth_date, seoul_today(now)).value,
        now=now,
    )
    return IssuedSession(
        account_id=account.id,
        session_id=session.id,
        access_token=access.token,
        access_token_expires_at=access.expires_at,
        refresh_token=refresh_token,
        refresh_token_expires_at=session.expires_at,
    )


def password_login(svc: Services, *, email: str, password: str) -> IssuedSession:
    """PasswordLogin: Argon2 runs outside any transaction; failures count toward a lock."""
    if not email or not password or len(password) > MAX_PASSWORD_INPUT:
        raise invalid_credentials()
    try:
        key = email_lookup_key(normalize_email(email))
    except DomainError:
        svc.hasher.burn(password)
        raise invalid_credentials() from None
    now = svc.clock()
    with svc.uow(readonly=True) as uow:
        account = uow.accounts.get_by_email(key)
    if account is None or account.password_hash is None:
        _counted_verify(svc, NO_ACCOUNT_ID, None, password, now=now)
        raise invalid_credentials()
    outcome = _counted_verify(svc, account.id, account.password_hash, password, now=now)
    if not outcome.ok:
        raise invalid_credentials()
    if account.status is AccountStatus.PENDING_GUARDIAN_CONSENT:
        raise DomainError(
            Reason.ACCOUNT_PENDING_GUARDIAN_CONSENT,
            "the account waits for the legal guardian's consent",
        )
    new_hash = svc.hasher.hash(password) if outcome.needs_rehash else None
    expected = account.password_hash
    for tries_left in reversed(range(MAX_HASH_SWAP_TRIES)):
        with svc.uow() as uow:
            # The session opens only if the password checked is still the account's: a
            # ChangePassword that committed meanwhile wins, and one that comes after revokes it.
            if uow.accounts.replace_password_hash(
                account.id, expected=expected, new=new_hash, now=now
            ):
                issued = start_session(
                    svc, uow, account, amr=(SignInMethod.PASSWORD.value,), now=now
                )
                uow.commit()
                return issued
        if not tries_left:
            break
        # The hash changed after the check. A concurrent login's re-hash keeps the password;
        # a password change does not.
        current = still_matching_hash(svc, account.id, password, previous=expected)
        if current is None:
            raise invalid_credentials()
        expected, new_hash = current, None
    raise too_many_at_once()  # the hash keeps changing under this login: retry shortly


# A write is tried at most this often when the hash changed under the password check (a concurrent
# re-hash); more would mean the hash keeps changing, and the caller should try again.
MAX_HASH_SWAP_TRIES = 3


def still_matching_hash(
    svc: Services, account_id: str, password: str, *, previous: str
) -> str | None:
    """The account's hash if it changed from `previous` but `password` still matches it.

    Only called after a lost compare-and-swap, so the extra Argon2 work is rare; it is part of
    the attempt already counted, not a new one.
    """
    with svc.uow(readonly=True) as uow:
        current = uow.accounts.get(account_id)
    if current is None or current.password_hash in (None, previous):
        return None
    assert current.password_hash is not None
    if not svc.hasher.verify(current.password_hash, password).ok:
        return None
    return current.password_hash


def _counted_verify(
    svc: Services, account_id: str, encoded: str | None, password: str, *, now: datetime
) -> VerifyOutcome:
    """Check a password as one admitted attempt (AccountRepository.begin_login_attempt).

    The Argon2 job is queued first, so an attempt refused with SERVER_BUSY never counts. The
    attempt is admitted before its outcome is read, so concurrent guesses cannot outrun the
    lock. Unknown accounts (encoded None) go through the same queue, writes and Argon2 work.
    """
    pending = (
        svc.hasher.verify_later(encoded, password) if encoded else svc.hasher.burn_later(password)
    )
    try:
        _admit(svc, account_id, known=encoded is not None, now=now)
    except BaseException:
        pending.cancel()
        raise
    outcome = pending.result()
    with svc.uow() as uow:
        uow.accounts.end_login_attempt(
            account_id, succeeded=outcome.ok, now=now, policy=svc.lockout
        )
        uow.commit()
    return outcome


def _admit(svc: Services, account_id: str, *, known: bool, now: datetime) -> None:
    """Admit the attempt, waiting briefly while other attempts on the account are in flight.

    Concurrent logins with the right password (several devices, a retry) wait their turn for a
    moment instead of failing; guesses stay bounded because each waits for a free place.
    """
    give_up_at = time.monotonic() + ADMISSION_WAIT_SECONDS
    while True:
        with svc.uow() as uow:
            gate = uow.accounts.begin_login_attempt(account_id, now=now, policy=svc.lockout)
            uow.commit()
        if gate.admitted or not known:
            return
        if gate.locked_until is not None:
            raise _locked(gate.locked_until)
        if time.monotonic() >= give_up_at:
            raise too_many_at_once()
        time.sleep(ADMISSION_POLL_SECONDS)


def too_many_at_once() -> DomainError:
    return DomainError(
        Reason.RATE_LIMITED,
        "too many password attempts at once for this account; retry shortly",
        retry_after_seconds=1.0,
    )


def _locked(until: datetime | None) -> DomainError:
    metadata = {"locked_until": until.isoformat()} if until else {}
    return DomainError(
        Reason.ACCOUNT_LOCKED,
        "password login is locked after repeated failures; try again later",
        metadata=metadata,
    )


def check_password(svc: Services, account: Account, password: str, *, now: datetime) -> None:
    """Re-check the password of a signed-in account (counts toward the lock like a login)."""
    if account.password_hash is None:
        svc.hasher.burn(password or secrets.token_urlsafe(8))
        raise invalid_credentials()
    usable = bool(password) and len(password) <= MAX_PASSWORD_INPUT
    # An empty or absurd password still costs a counted attempt and the same Argon2 work.
    candidate = password if usable else secrets.token_urlsafe(8)
    if not _counted_verify(svc, account.id, account.password_hash, candidate, now=now).ok:
        raise invalid_credentials()


def refresh_session(svc: Services, *, refresh_token: str) -> IssuedSession:
    """Rotate a refresh token; reuse of a rotated one revokes the whole session."""
    token_hash = _refresh_hash(svc, refresh_token)
    now = svc.clock()
    reuse_detected = False
    with svc.uow() as uow:
        record = uow.sessions.find_refresh(token_hash)
        if record is None or record.session.revoked_at is not None:
            raise DomainError(Reason.TOKEN_INVALID, "the refresh token is not valid")
        if record.expires_at <= now or not record.session.is_active(now):
            raise DomainError(Reason.TOKEN_EXPIRED, "the refresh token has expired")
        if record.used_at is not None or not uow.sessions.mark_refresh_used(token_hash, now=now):
            _revoke_for_reuse(uow, record.session, now=now)
            uow.commit()
            reuse_detected = True
        else:
            account = uow.accounts.get(record.session.account_id)
            if account is None or account.status is not AccountStatus.ACTIVE:
                raise DomainError(Reason.TOKEN_INVALID, "the refresh token is not valid")
            issued = _issue_tokens(svc, uow, account, record.session, now=now)
            uow.commit()
    if reuse_detected:
        log.warning("refresh token reuse detected; session revoked")
        raise DomainError(Reason.TOKEN_INVALID, "the refresh token is not valid")
    return issued


def _revoke_for_reuse(uow: SqlUnitOfWork, session: Session, *, now: datetime) -> None:
    if uow.sessions.revoke(session.id, now=now, reason="refresh_reuse"):
        uow.outbox.add(
            OutboxEvent(
                id=new_id(),
                type="session.reuse_detected",
                payload={"account_id": session.account_id, "session_id": session.id},
                created_at=now,
            )
        )


def logout(svc: Services, *, refresh_token: str) -> None:
    """End the session of a refresh token (idempotent for a session already ended)."""
    token_hash = _refresh_hash(svc, refresh_token)
    now = svc.clock()
    with svc.uow() as uow:
        record = uow.sessions.find_refresh(token_hash)
        if record is None:
            raise DomainError(Reason.TOKEN_INVALID, "the refresh token is not valid")
        uow.sessions.revoke(record.session.id, now=now, reason="logout")
        uow.commit()


def _refresh_hash(svc: Services, refresh_token: str) -> str:
    if not refresh_token or len(refresh_token) > MAX_TOKEN_LENGTH:
        raise DomainError(Reason.TOKEN_INVALID, "the refresh token is not valid")
    return svc.cipher.token_hash(refresh_token)


def authenticate(svc: Services, access_token: str) -> Caller:
    """Verify a bearer access token and that its session is still active."""
    return _verified(svc, access_token)[0]


def _verified(svc: Services, access_token: str) -> tuple[Caller, AccessClaims]:
    now = svc.clock()
    claims = svc.tokens.verify(access_token, now=now)
    with svc.uow(readonly=True) as uow:
        _check_live(uow.sessions.get(claims.session_id), claims, now=now)
    caller = Caller(account_id=claims.account_id, session_id=claims.session_id, amr=claims.amr)
    return caller, claims


def _check_live(session: Session | None, claims: AccessClaims, *, now: datetime) -> None:
    """The token's session must still be the account's and active (Logout, reuse, password)."""
    if session is None or session.account_id != claims.account_id or not session.is_active(now):
        raise DomainError(Reason.TOKEN_INVALID, "the session has ended")


def current_account(svc: Services, access_token: str) -> Account:
    """GetAccount: the bearer's account, its session checked in the same unit of work."""
    now = svc.clock()
    claims = svc.tokens.verify(access_token, now=now)
    with svc.uow(readonly=True) as uow:
        _check_live(uow.sessions.get(claims.session_id), claims, now=now)
        account = uow.accounts.get(claims.account_id)
    if account is None:
        raise DomainError(Reason.TOKEN_INVALID, "the account no longer exists")
    return account


def get_account(svc: Services, caller: Caller) -> Account:
    """The caller's account (GetAccount, and every use case acting on it)."""
    with svc.uow(readonly=True) as uow:
        account = uow.accounts.get(caller.account_id)
    if account is None:
        raise DomainError(Reason.TOKEN_INVALID, "the account no longer exists")
    return account


def introspect(svc: Services, *, access_token: str) -> Introspection:
    """RFC 7662 style: an unusable token is simply inactive."""
    if not access_token or len(access_token) > MAX_TOKEN_LENGTH:
        return Introspection(active=False)
    try:
        caller, claims = _verified(svc, access_token)
    except DomainError:
        return Introspection(active=False)
    return Introspection(
        active=True,
        account_id=caller.account_id,
        session_id=caller.session_id,
        expires_at=claims.expires_at,
        age_band=claims.age_band,
    )
