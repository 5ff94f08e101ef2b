"""PasswordLogin: a counted password check, then a session (SNS login will live beside it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial

from idservice.domain.accounts import SignInMethod
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer import rate_limits
from idservice.service_layer.passwords import (
    MAX_PASSWORD_INPUT,
    NO_ACCOUNT_ID,
    counted_verify,
    counted_verify_then,
    invalid_credentials,
    swap_password_hash,
)
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    Clock,
    PasswordHasher,
    SecretsCipher,
    TokenIssuer,
    UnitOfWork,
    UnitOfWorkFactory,
    VerifyOutcome,
)
from idservice.service_layer.sessions import IssuedSession, start_session
from idservice.service_layer.use_cases import Command
from idservice.service_layer.validation import login_email_key


@dataclass(frozen=True, slots=True, repr=False)
class PasswordLogin(Command[IssuedSession]):
    email: str
    password: str
    # The end-user address, when a trusted proxy names it ("" otherwise).
    client_address: str = ""


def pending_guardian_consent() -> DomainError:
    return DomainError(
        Reason.ACCOUNT_PENDING_GUARDIAN_CONSENT,
        "the account waits for the legal guardian's consent",
    )


def password_login(
    cmd: PasswordLogin,
    *,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    cipher: SecretsCipher,
    policy: Policy,
    clock: Clock,
) -> IssuedSession:
    """Argon2 runs outside any transaction; failures count toward a lock, and toward the limit
    of failed logins per end-user address.

    The address's call is counted before any other work (a refused login costs no Argon2) and
    taken back unless a password was checked and was wrong: concurrent guesses from one address
    cannot outrun its limit, and once past it the address is refused, right passwords too,
    until the window ends.
    """
    if not cmd.email or not cmd.password or len(cmd.password) > MAX_PASSWORD_INPUT:
        raise invalid_credentials()
    now = clock()
    counted = rate_limits.count_address(
        uow,
        rate_limits.Scope.FAILED_LOGINS,
        cmd.client_address,
        policy.rate_limits.failed_logins,
        now=now,
        cipher=cipher,
    )
    try:
        session = _login(
            cmd, now=now, uow=uow, hasher=hasher, tokens=tokens, cipher=cipher, policy=policy
        )
    except DomainError as error:
        if error.reason is not Reason.INVALID_CREDENTIALS:
            rate_limits.release(uow, counted)
        raise
    except BaseException:
        rate_limits.release(uow, counted)
        raise
    rate_limits.release(uow, counted)
    return session


def _login(
    cmd: PasswordLogin,
    *,
    now: datetime,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    cipher: SecretsCipher,
    policy: Policy,
) -> IssuedSession:
    try:
        key = login_email_key(cmd.email)
    except DomainError:
        hasher.burn(cmd.password)
        raise invalid_credentials() from None
    with uow(readonly=True) as tx:
        credentials = tx.accounts.credentials_by_email(key)
    verify = partial(counted_verify, now=now, uow=uow, hasher=hasher, lockout=policy.lockout)
    if credentials is None or credentials.password_hash is None:
        verify(NO_ACCOUNT_ID, None, cmd.password)
        raise invalid_credentials()
    found, checked = credentials.standing, credentials.password_hash

    def open_session(tx: UnitOfWork) -> IssuedSession:
        return start_session(
            tx,
            found,
            amr=(SignInMethod.PASSWORD.value,),
            now=now,
            tokens=tokens,
            cipher=cipher,
            policy=policy,
        )

    def at_once(tx: UnitOfWork, outcome: VerifyOutcome) -> IssuedSession | None:
        # The common case in the transaction that records the attempt: the hash is current
        # and still the account's (the row lock orders this against a ChangePassword).
        if outcome.needs_rehash or not found.status.may_sign_in:
            return None
        if not tx.accounts.replace_password_hash(found.id, expected=checked, new=None, now=now):
            return None
        return open_session(tx)

    outcome, session = counted_verify_then(
        found.id,
        checked,
        cmd.password,
        on_success=at_once,
        now=now,
        uow=uow,
        hasher=hasher,
        lockout=policy.lockout,
    )
    if not outcome.ok:
        raise invalid_credentials()
    if not found.status.may_sign_in:
        raise pending_guardian_consent()
    if session is not None:
        return session
    # The session opens only if the password checked is still the account's: a ChangePassword
    # that committed meanwhile wins, and one that comes after revokes it.
    return swap_password_hash(
        found.id,
        cmd.password,
        expected=checked,
        new=hasher.hash(cmd.password) if outcome.needs_rehash else None,
        replaces_password=False,
        write=open_session,
        stale=invalid_credentials,
        now=now,
        uow=uow,
        hasher=hasher,
    )
