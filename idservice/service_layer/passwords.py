"""Password checks: one counted verification against the lock, and one hash-swap loop.

Every password a person types (login, the current password of ChangePassword, a replayed
SignUp) is checked by `counted_verify`, so each counts toward the lock the same way. A write
that depends on a checked password goes through `swap_password_hash`, which commits only if the
stored hash is still the one checked.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from idservice.domain.accounts import Account
from idservice.domain.errors import DomainError, Reason
from idservice.domain.instants import utc_text
from idservice.domain.lockout import LockoutPolicy
from idservice.service_layer.ports import (
    PasswordHasher,
    UnitOfWork,
    UnitOfWorkFactory,
    VerifyOutcome,
)

T = TypeVar("T")

# How long an attempt waits for other attempts on the same account to finish (each takes one
# Argon2 hash, tens of milliseconds), and how often it looks.
ADMISSION_WAIT_SECONDS = 2.0
ADMISSION_POLL_SECONDS = 0.02
# Matches no account: unknown emails go through the same attempt-counting write.
NO_ACCOUNT_ID = "-"
# Longer than any password we accept (256 characters, up to 4 bytes each): not worth hashing.
MAX_PASSWORD_INPUT = 1024
# A write is tried at most this often when the hash changed under the password check (a
# concurrent re-hash); more would mean the hash keeps changing, and the caller should retry.
MAX_HASH_SWAP_TRIES = 3


def invalid_credentials() -> DomainError:
    # The same error for an unknown email and a wrong password (no account enumeration).
    return DomainError(Reason.INVALID_CREDENTIALS, "the email or password is wrong")


def too_many_at_once() -> DomainError:
    return DomainError(
        Reason.RATE_LIMITED,
        "too many password attempts at once for this account; retry shortly",
        retry_after_seconds=1.0,
    )


def locked(until: datetime | None) -> DomainError:
    metadata = {"locked_until": utc_text(until)} if until else {}
    return DomainError(
        Reason.ACCOUNT_LOCKED,
        "password login is locked after repeated failures; try again later",
        metadata=metadata,
    )


def counted_verify(
    account_id: str,
    encoded: str | None,
    password: str,
    *,
    now: datetime,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    lockout: LockoutPolicy,
) -> VerifyOutcome:
    """Check a password as one admitted attempt.

    The Argon2 job is queued first, so an attempt refused with SERVER_BUSY never counts. The
    attempt is admitted before its outcome is read, so concurrent guesses cannot outrun the
    lock. Unknown accounts (encoded None) go through the same queue, writes and Argon2 work.
    """
    outcome, _ = counted_verify_then(
        account_id,
        encoded,
        password,
        on_success=_nothing,
        now=now,
        uow=uow,
        hasher=hasher,
        lockout=lockout,
    )
    return outcome


def _nothing(_tx: UnitOfWork, _outcome: VerifyOutcome) -> None:
    return None


def counted_verify_then(
    account_id: str,
    encoded: str | None,
    password: str,
    *,
    on_success: Callable[[UnitOfWork, VerifyOutcome], T | None],
    now: datetime,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    lockout: LockoutPolicy,
) -> tuple[VerifyOutcome, T | None]:
    """`counted_verify`, and when the password is right, `on_success` in the transaction that
    records the attempt's outcome (a login opens its session there: one write, not two).

    `on_success` returns None when it wrote nothing (its own check failed); the outcome is
    recorded either way. If it raises, the outcome is recorded in a transaction of its own and
    the error goes on.
    """
    pending = hasher.verify_later(encoded, password) if encoded else hasher.burn_later(password)
    try:
        _admit(account_id, known=encoded is not None, now=now, uow=uow, lockout=lockout)
    except BaseException:
        pending.cancel()
        raise
    outcome = pending.result()
    try:
        with uow() as tx:
            tx.accounts.end_login_attempt(account_id, succeeded=outcome.ok, now=now, policy=lockout)
            written = on_success(tx, outcome) if outcome.ok else None
            tx.commit()
    except BaseException:
        if not outcome.ok:
            raise
        with uow() as tx:
            tx.accounts.end_login_attempt(account_id, succeeded=True, now=now, policy=lockout)
            tx.commit()
        raise
    return outcome, written


def _admit(
    account_id: str, *, known: bool, now: datetime, uow: UnitOfWorkFactory, lockout: LockoutPolicy
) -> None:
    """Admit the attempt, waiting briefly while other attempts on the account are in flight.

    Concurrent logins with the right password (several devices, a retry) wait their turn for a
    moment instead of failing; guesses stay bounded because each waits for a free place.
    """
    give_up_at = time.monotonic() + ADMISSION_WAIT_SECONDS
    while True:
        with uow() as tx:
            gate = tx.accounts.begin_login_attempt(account_id, now=now, policy=lockout)
            tx.commit()
        if gate.admitted or not known:
            return
        if gate.locked_until is not None:
            raise locked(gate.locked_until)
        if time.monotonic() >= give_up_at:
            raise too_many_at_once()
        time.sleep(ADMISSION_POLL_SECONDS)


def check_password(
    account: Account,
    password: str,
    *,
    now: datetime,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    lockout: LockoutPolicy,
) -> None:
    """Re-check the password of a known account (counts toward the lock like a login)."""
    if account.password_hash is None:
        hasher.burn(password or secrets.token_urlsafe(8))
        raise invalid_credentials()
    usable = bool(password) and len(password) <= MAX_PASSWORD_INPUT
    # An empty or absurd password still costs a counted attempt and the same Argon2 work.
    candidate = password if usable else secrets.token_urlsafe(8)
    outcome = counted_verify(
        account.id,
        account.password_hash,
        candidate,
        now=now,
        uow=uow,
        hasher=hasher,
        lockout=lockout,
    )
    if not outcome.ok:
        raise invalid_credentials()


def swap_password_hash(
    account_id: str,
    password: str,
    *,
    expected: str,
    new: str | None,
    replaces_password: bool,
    write: Callable[[UnitOfWork], T],
    stale: Callable[[], DomainError],
    now: datetime,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
) -> T:
    """Commit `write` only while the stored hash is still `expected`, then set it to `new`.

    `new` None keeps the hash (and just locks the row, ordering this write against a
    concurrent ChangePassword). When the hash changed after the check, a concurrent login's
    re-hash keeps `password` valid and the write is tried again against the new hash (a
    re-hash of our own is then dropped, a replacement password kept); a password change does
    not, and `stale()` is raised. A hash that keeps changing answers RATE_LIMITED.
    """
    for tries_left in reversed(range(MAX_HASH_SWAP_TRIES)):
        with uow() as tx:
            if tx.accounts.replace_password_hash(account_id, expected=expected, new=new, now=now):
                result = write(tx)
                tx.commit()
                return result
        if not tries_left:
            break
        current = _still_matching_hash(
            account_id, password, previous=expected, uow=uow, hasher=hasher
        )
        if current is None:
            raise stale()
        expected = current
        if not replaces_password:
            new = None
    raise too_many_at_once()


def _still_matching_hash(
    account_id: str, password: str, *, previous: str, uow: UnitOfWorkFactory, hasher: PasswordHasher
) -> str | None:
    """The account's hash if it changed from `previous` but `password` still matches it.

    Only called after a lost compare-and-swap, so the extra Argon2 work is rare; it is part of
    the attempt already counted, not a new one.
    """
    with uow(readonly=True) as tx:
        current = tx.accounts.get(account_id)
    if current is None or current.password_hash is None or current.password_hash == previous:
        return None
    if not hasher.verify(current.password_hash, password).ok:
        return None
    return current.password_hash
