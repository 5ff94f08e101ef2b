"""Sessions: opening one, refresh-token rotation with reuse detection, logout, introspection."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from idservice.domain import events
from idservice.domain.age import age_band, seoul_today
from idservice.domain.errors import DomainError, Reason
from idservice.domain.ids import new_id
from idservice.domain.sessions import RevokeReason, Session
from idservice.service_layer.auth import MAX_TOKEN_LENGTH, check_live
from idservice.service_layer.call_context import identify
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    Clock,
    RefreshRecord,
    SecretsCipher,
    TokenIssuer,
    TokenPurpose,
    UnitOfWork,
    UnitOfWorkFactory,
)
from idservice.service_layer.use_cases import Command

log = logging.getLogger(__name__)

# Refresh tokens carry 256 bits of randomness (RFC 6749 §10.10 asks for unguessable tokens).
REFRESH_TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """The tokens of a new or refreshed session."""

    account_id: str
    session_id: str
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    refresh_token_expires_at: datetime


class _TokenHolder(Protocol):
    """What tokens are made for: an `Account`, or the `AccountStanding` that a
    refresh or a password login reads."""

    @property
    def id(self) -> str: ...

    @property
    def birth_date(self) -> date: ...


def start_session(
    tx: UnitOfWork,
    account: _TokenHolder,
    *,
    amr: tuple[str, ...],
    now: datetime,
    tokens: TokenIssuer,
    cipher: SecretsCipher,
    policy: Policy,
) -> IssuedSession:
    """Create a session with its first refresh token inside the caller's transaction."""
    session = Session(
        id=new_id(),
        account_id=account.id,
        amr=amr,
        created_at=now,
        expires_at=now + policy.refresh_token_ttl,
    )
    tx.sessions.add(session)
    return _issue_tokens(tx, account, session, now=now, tokens=tokens, cipher=cipher)


def _issue_tokens(
    tx: UnitOfWork,
    account: _TokenHolder,
    session: Session,
    *,
    now: datetime,
    tokens: TokenIssuer,
    cipher: SecretsCipher,
) -> IssuedSession:
    refresh_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    issued = _issued(account, session, refresh_token, now=now, tokens=tokens)
    tx.sessions.add_refresh_token(
        cipher.token_hash(refresh_token, purpose=TokenPurpose.REFRESH_TOKEN),
        session_id=session.id,
        now=now,
        expires_at=issued.refresh_token_expires_at,
    )
    identify(account.id)  # the call signs this account in (connection log)
    return issued


def _issued(
    account: _TokenHolder,
    session: Session,
    refresh_token: str,
    *,
    now: datetime,
    tokens: TokenIssuer,
) -> IssuedSession:
    """The session's tokens: `refresh_token` and a freshly signed access token."""
    access = tokens.issue(
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


def refresh_token_invalid() -> DomainError:
    return DomainError(Reason.TOKEN_INVALID, "the refresh token is not valid")


def _refresh_hash(refresh_token: str, cipher: SecretsCipher) -> str:
    if not refresh_token or len(refresh_token) > MAX_TOKEN_LENGTH:
        raise refresh_token_invalid()
    return cipher.token_hash(refresh_token, purpose=TokenPurpose.REFRESH_TOKEN)


@dataclass(frozen=True, slots=True, repr=False)
class RefreshSession(Command[IssuedSession]):
    refresh_token: str


def refresh_session(
    cmd: RefreshSession,
    *,
    uow: UnitOfWorkFactory,
    tokens: TokenIssuer,
    cipher: SecretsCipher,
    clock: Clock,
) -> IssuedSession:
    """Rotate a refresh token; reuse of a rotated one revokes the whole session.

    The common case is one atomic write: the token's use (once, while it, its session and its
    account may give tokens), its successor, and the session and account standing the next
    access token is signed with (on PostgreSQL one statement, without BEGIN and COMMIT). Any
    other token (used, a race lost, expired, an ended session or account) is decided again in
    one write transaction, where a reuse revokes the session.
    """
    token_hash = _refresh_hash(cmd.refresh_token, cipher)
    now = clock()
    successor = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    with uow(single_write=True) as tx:
        rotated = tx.sessions.rotate_refresh(
            token_hash,
            successor=cipher.token_hash(successor, purpose=TokenPurpose.REFRESH_TOKEN),
            now=now,
        )
        tx.commit()
    if rotated is not None:
        session, standing = rotated
        identify(standing.id)  # the call signs this account in (connection log)
        return _issued(standing, session, successor, now=now, tokens=tokens)
    with uow() as tx:
        # The account's standing comes with the token and its session, in the same statement.
        found = tx.sessions.find_refresh_with_standing(token_hash)
        if found is None:
            raise refresh_token_invalid()
        record, account = found
        _check_usable(record, now=now)
        if record.used_at is None and tx.sessions.mark_refresh_used(token_hash, now=now):
            if account is None or not account.status.may_sign_in:
                raise refresh_token_invalid()
            issued = _issue_tokens(
                tx, account, record.session, now=now, tokens=tokens, cipher=cipher
            )
            tx.commit()
            return issued
        _revoke_for_reuse(tx, record.session, now=now)
        tx.commit()
    log.warning("refresh token reuse detected; session revoked")
    raise refresh_token_invalid()


def _check_usable(record: RefreshRecord, *, now: datetime) -> None:
    """TOKEN_INVALID for a revoked session, TOKEN_EXPIRED for an expired token or session."""
    if record.session.revoked_at is not None:
        raise refresh_token_invalid()
    if record.expires_at <= now or not record.session.is_active(now):
        raise DomainError(Reason.TOKEN_EXPIRED, "the refresh token has expired")


def _revoke_for_reuse(tx: UnitOfWork, session: Session, *, now: datetime) -> None:
    if tx.sessions.revoke(session.id, now=now, reason=RevokeReason.REFRESH_REUSE):
        tx.outbox.add(
            events.session_reuse_detected(
                account_id=session.account_id, session_id=session.id, now=now
            )
        )


@dataclass(frozen=True, slots=True, repr=False)
class Logout(Command[None]):
    refresh_token: str


def logout(cmd: Logout, *, uow: UnitOfWorkFactory, cipher: SecretsCipher, clock: Clock) -> None:
    """End the session of a refresh token (idempotent for a session already ended)."""
    token_hash = _refresh_hash(cmd.refresh_token, cipher)
    now = clock()
    with uow() as tx:
        record = tx.sessions.find_refresh(token_hash)
        if record is None:
            raise refresh_token_invalid()
        tx.sessions.revoke(record.session.id, now=now, reason=RevokeReason.LOGOUT)
        tx.commit()


@dataclass(frozen=True, slots=True)
class Introspection:
    active: bool
    account_id: str = ""
    session_id: str = ""
    expires_at: datetime | None = None
    age_band: str = ""
    # The account's choices now (UpdateConsents takes effect at once).
    marketing_opt_in: bool = False
    processing_suspended: bool = False
    third_party_opt_in: bool = False


@dataclass(frozen=True, slots=True, repr=False)
class IntrospectToken(Command[Introspection]):
    access_token: str


def introspect(
    cmd: IntrospectToken, *, uow: UnitOfWorkFactory, tokens: TokenIssuer, clock: Clock
) -> Introspection:
    """RFC 7662 style: an unusable token is simply inactive."""
    if not cmd.access_token or len(cmd.access_token) > MAX_TOKEN_LENGTH:
        return Introspection(active=False)
    now = clock()
    try:
        claims = tokens.verify(cmd.access_token, now=now)
    except DomainError:
        return Introspection(active=False)
    # The session and the account's choices only: introspection reads no personal data.
    with uow(readonly=True) as tx:
        found = tx.sessions.get_with_consents(claims.session_id)
    session, c = found if found is not None else (None, None)
    try:
        check_live(session, claims.account_id, now=now)
    except DomainError:
        return Introspection(active=False)
    if c is None:
        return Introspection(active=False)
    return Introspection(
        active=True,
        account_id=claims.account_id,
        session_id=claims.session_id,
        expires_at=claims.expires_at,
        age_band=claims.age_band,
        marketing_opt_in=c.marketing_opt_in,
        processing_suspended=c.processing_suspended,
        third_party_opt_in=c.third_party_opt_in,
    )


@dataclass(frozen=True, slots=True, repr=False)
class GetJwks(Command[str]):
    pass


def get_jwks(cmd: GetJwks, *, tokens: TokenIssuer) -> str:
    """The public keys of access tokens as a JWKS JSON document."""
    return tokens.jwks_json()
