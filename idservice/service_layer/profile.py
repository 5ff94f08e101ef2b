"""The caller's own account: view it (GetAccount), correct it (정정), change the password."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from idservice.domain.accounts import Account, AccountProfile
from idservice.domain.age import parse_birth_date, seoul_today
from idservice.domain.errors import DomainError, Reason, invalid
from idservice.domain.guardian_consent import needs_guardian_consent
from idservice.domain.sessions import RevokeReason
from idservice.service_layer import verification
from idservice.service_layer.auth import (
    Caller,
    account_gone,
    authenticate,
    authenticated_profile,
    load_account,
    session_ended,
)
from idservice.service_layer.passwords import check_password, swap_password_hash
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    Clock,
    PasswordHasher,
    SecretsCipher,
    TokenIssuer,
    UnitOfWork,
    UnitOfWorkFactory,
)
from idservice.service_layer.use_cases import Command
from idservice.service_layer.validation import (
    Violations,
    normalize_phone,
    validate_name,
    validate_password,
)


@dataclass(frozen=True, slots=True, repr=False)
class GetAccount(Command[AccountProfile]):
    access_token: str


def get_account(
    cmd: GetAccount, *, uow: UnitOfWorkFactory, tokens: TokenIssuer, clock: Clock
) -> AccountProfile:
    """The bearer's account as they are shown it, its session checked in the same read."""
    return authenticated_profile(cmd.access_token, tokens=tokens, uow=uow, clock=clock)


@dataclass(frozen=True, slots=True, repr=False)
class UpdateProfile(Command[Account]):
    """None leaves a field as it is."""

    access_token: str
    name: str | None = None
    phone_number: str | None = None
    birth_date: str | None = None
    verification_token: str = ""


def update_profile(
    cmd: UpdateProfile,
    *,
    uow: UnitOfWorkFactory,
    tokens: TokenIssuer,
    cipher: SecretsCipher,
    clock: Clock,
) -> Account:
    """정정: correct name, phone or birth date; verified values need a new verification."""
    caller = authenticate(cmd.access_token, tokens=tokens, uow=uow, clock=clock)
    now = clock()
    today = seoul_today(now)
    name, phone, birth = cmd.name, cmd.phone_number, cmd.birth_date
    with Violations() as v:
        new_name = v.check(lambda: validate_name(name)) if name is not None else None
        new_phone = v.check(lambda: normalize_phone(phone)) if phone is not None else None
        new_birth = (
            v.check(lambda: parse_birth_date(birth, today=today)) if birth is not None else None
        )
    account = load_account(caller, uow=uow)
    token = cmd.verification_token
    if token and not account.identity_verified:
        raise invalid("verification_token", "the account has no verified identity to renew")
    person = verification.peek(token, now=now, uow=uow, cipher=cipher) if token else None
    if account.identity_verified:
        changes = (
            (new_name is not None and new_name != account.name)
            or (new_phone is not None and new_phone != account.phone_number)
            or (new_birth is not None and new_birth != account.birth_date)
        )
        if changes and person is None:
            raise DomainError(
                Reason.IDENTITY_VERIFICATION_REQUIRED,
                "verified details change only with a new identity verification",
            )
        if person is not None:
            if not verification.same_person(account, person):
                raise DomainError(
                    Reason.VERIFICATION_MISMATCH, "the verification is of another person"
                )
            new_name, new_phone, new_birth = verification.merge_verified(
                person, name=new_name or "", phone=new_phone or "", birth=new_birth
            )
    if (
        new_birth is not None
        and new_birth != account.birth_date
        and not account.identity_verified
        and needs_guardian_consent(account.birth_date, today)
    ):
        # A child's age is what the guardian's rights rest on (korea-rules Guardian 5): an
        # unverified child under 14 cannot type itself older (a verified one needs a new
        # verification above, which states the birth date).
        raise DomainError(
            Reason.IDENTITY_VERIFICATION_REQUIRED,
            "the birth date of a child under 14 changes only with identity verification",
        )
    if new_birth is not None and needs_guardian_consent(new_birth, today):
        # An active account cannot turn into a child's without the guardian-consent path
        # (korea-rules Guardian 2); pending accounts never hold an access token.
        raise DomainError(
            Reason.IDENTITY_VERIFICATION_REQUIRED,
            "an age under 14 needs identity verification and the guardian's consent",
        )
    with uow() as tx:
        if person is not None:
            verification.consume(tx, token, now=now, cipher=cipher)
        if not tx.accounts.save_profile(
            account.id, name=new_name, phone_number=new_phone, birth_date=new_birth, now=now
        ):
            raise account_gone()  # withdrawn since it was read: as a call after it is answered
        tx.commit()
    account.name = new_name if new_name is not None else account.name
    account.phone_number = new_phone if new_phone is not None else account.phone_number
    account.birth_date = new_birth if new_birth is not None else account.birth_date
    return account


@dataclass(frozen=True, slots=True, repr=False)
class ChangePassword(Command[None]):
    access_token: str
    current_password: str
    new_password: str


def _changed_since(caller: Caller, *, uow: UnitOfWorkFactory, now: datetime) -> DomainError:
    """Why the current password did not open the account, as a call now is answered: the
    account withdrawn, or this session ended (another change that won ends every other
    session): TOKEN_INVALID; else the password is wrong."""
    with uow(readonly=True) as tx:
        if tx.accounts.get(caller.account_id) is None:
            return account_gone()
        session = tx.sessions.get(caller.session_id)
    if session is None or not session.is_active(now):
        return session_ended()
    return wrong_current_password()


def wrong_current_password() -> DomainError:
    return DomainError(Reason.INVALID_CREDENTIALS, "the current password is wrong")


def change_password(
    cmd: ChangePassword,
    *,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    policy: Policy,
    clock: Clock,
) -> None:
    """Needs the current password; every other session of the account is revoked."""
    caller = authenticate(cmd.access_token, tokens=tokens, uow=uow, clock=clock)
    now = clock()
    account = load_account(caller, uow=uow)
    with Violations() as v:
        if not cmd.current_password:
            v.add("current_password", "is required")
        if not cmd.new_password:
            v.add("new_password", "is required")
        else:
            v.check(
                lambda: validate_password(
                    cmd.new_password,
                    user_inputs=[account.email or "", account.name],
                    field="new_password",
                )
            )
    try:
        check_password(
            account, cmd.current_password, now=now, uow=uow, hasher=hasher, lockout=policy.lockout
        )
    except DomainError as error:
        if error.reason is Reason.INVALID_CREDENTIALS:
            raise _changed_since(caller, uow=uow, now=now) from None
        raise
    if account.password_hash is None:
        raise wrong_current_password()

    def revoke_other_sessions(tx: UnitOfWork) -> None:
        tx.sessions.revoke_others(
            account.id, keep=caller.session_id, now=now, reason=RevokeReason.PASSWORD_CHANGED
        )

    swap_password_hash(
        account.id,
        cmd.current_password,
        expected=account.password_hash,
        new=hasher.hash(cmd.new_password),
        replaces_password=True,
        write=revoke_other_sessions,
        # The hash changed to one the current password does not open: another change won, or
        # a withdrawal did (answered as a call after it: the token is no longer valid).
        stale=lambda: _changed_since(caller, uow=uow, now=now),
        now=now,
        uow=uow,
        hasher=hasher,
    )
