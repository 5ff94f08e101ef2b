"""Who is calling: a bearer access token verified, and its session checked to be still live."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from idservice.domain.accounts import Account, AccountProfile
from idservice.domain.errors import DomainError, Reason
from idservice.domain.sessions import Session
from idservice.service_layer.call_context import identify
from idservice.service_layer.ports import (
    AccessClaims,
    AccountStanding,
    Clock,
    TokenIssuer,
    UnitOfWork,
    UnitOfWorkFactory,
)

T = TypeVar("T")

# Longest bearer token we look at; anything larger is not ours.
MAX_TOKEN_LENGTH = 8192
# Re-authentication is a sign-in at most this old: an SNS sign-in that stands for one (a
# Withdraw's ID token, issued or with an `auth_time` this recently: any unexpired one — Google's
# live an hour — could be kept from an old sign-in), and the session a change of the account's
# sign-in methods is made in (a privileged session: a stolen access token of an older session
# cannot add a sign-in of the thief's own, which would outlast a password change).
REAUTHENTICATION_MAX_AGE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Caller:
    """The account and session of a verified bearer access token."""

    account_id: str
    session_id: str
    amr: tuple[str, ...]


def session_ended() -> DomainError:
    return DomainError(Reason.TOKEN_INVALID, "the session has ended")


def check_live(session: Session | None, account_id: str, *, now: datetime) -> None:
    """The token's session must still be the account's and active (Logout, reuse, password)."""
    if session is None or session.account_id != account_id or not session.is_active(now):
        raise session_ended()


def verify_access(
    access_token: str, *, tokens: TokenIssuer, uow: UnitOfWorkFactory, now: datetime
) -> tuple[Caller, AccessClaims]:
    """The caller of a bearer token and its claims; TOKEN_INVALID / TOKEN_EXPIRED otherwise."""
    claims = tokens.verify(access_token, now=now)
    with uow(readonly=True) as tx:
        check_live(tx.sessions.get(claims.session_id), claims.account_id, now=now)
    caller = Caller(account_id=claims.account_id, session_id=claims.session_id, amr=claims.amr)
    return caller, claims


def authenticate(
    access_token: str, *, tokens: TokenIssuer, uow: UnitOfWorkFactory, clock: Clock
) -> Caller:
    """Every account-bound call starts here: the token verified and its session live."""
    caller = verify_access(access_token, tokens=tokens, uow=uow, now=clock())[0]
    identify(caller.account_id)
    return caller


def still_signed_in(
    tx: UnitOfWork, caller: Caller, *, now: datetime, recently: bool = False
) -> None:
    """In a write, after the account's row lock: the caller's session is still live. A call
    that waited on a provider or a lock since `authenticate` acts only if its session was not
    ended meanwhile (an unlinked sign-in, a logout, a password change, a withdrawal).

    `recently`: and signed in at most REAUTHENTICATION_MAX_AGE ago (refreshing a session does
    not renew its sign-in), else REAUTHENTICATION_REQUIRED."""
    session = tx.sessions.get(caller.session_id)
    check_live(session, caller.account_id, now=now)
    assert session is not None
    if recently and now - session.created_at > REAUTHENTICATION_MAX_AGE:
        raise DomainError(
            Reason.REAUTHENTICATION_REQUIRED,
            "sign in again: adding or removing a sign-in method needs a session signed in at "
            f"most {REAUTHENTICATION_MAX_AGE.seconds // 60} minutes ago",
        )


def recently_signed_in(caller: Caller, *, uow: UnitOfWorkFactory, now: datetime) -> None:
    """`still_signed_in(recently=True)` on its own read, before work that cannot be undone (an
    authorization code exchanged at a provider is spent)."""
    with uow(readonly=True) as tx:
        still_signed_in(tx, caller, now=now, recently=True)


def account_gone() -> DomainError:
    return DomainError(Reason.TOKEN_INVALID, "the account no longer exists")


def account_of(tx: UnitOfWork, caller: Caller) -> Account:
    """The caller's account, read in the caller's unit of work."""
    account = tx.accounts.get(caller.account_id)
    if account is None:
        raise account_gone()
    return account


def load_account(caller: Caller, *, uow: UnitOfWorkFactory) -> Account:
    with uow(readonly=True) as tx:
        return account_of(tx, caller)


def authenticated_profile(
    access_token: str, *, tokens: TokenIssuer, uow: UnitOfWorkFactory, clock: Clock
) -> AccountProfile:
    """The bearer's account as they are shown it, read with its session in one statement: the
    session is checked live on every call (nothing about it is kept between calls)."""
    return _authenticated(
        access_token,
        lambda tx, session_id: tx.sessions.get_with_profile(session_id),
        tokens=tokens,
        uow=uow,
        clock=clock,
    )


def authenticated_standing(
    access_token: str, *, tokens: TokenIssuer, uow: UnitOfWorkFactory, clock: Clock
) -> AccountStanding:
    """`authenticated_profile` for a call that needs only the account's standing (its birth
    date the one personal field read)."""
    return _authenticated(
        access_token,
        lambda tx, session_id: tx.sessions.get_with_standing(session_id),
        tokens=tokens,
        uow=uow,
        clock=clock,
    )


def _authenticated(
    access_token: str,
    read: Callable[[UnitOfWork, str], tuple[Session, T | None] | None],
    *,
    tokens: TokenIssuer,
    uow: UnitOfWorkFactory,
    clock: Clock,
) -> T:
    """The token verified, then `read` of its session and what goes with it, in one statement;
    TOKEN_INVALID unless the session is live and the account still there."""
    now = clock()
    claims = tokens.verify(access_token, now=now)
    with uow(readonly=True) as tx:
        found = read(tx, claims.session_id)
    session, what = found if found is not None else (None, None)
    check_live(session, claims.account_id, now=now)
    identify(claims.account_id)
    if what is None:
        raise account_gone()
    return what
