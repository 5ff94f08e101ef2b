"""Sign-in with Google and Kakao: SnsLogin, LinkSnsIdentity, UnlinkSnsIdentity.

No account takeover: an SNS identity is never attached to an account because its email (or CI)
matches. A known (provider, subject) signs in; an unknown one gets a single-use signup ticket,
unless its email or CI already belongs to an account — then the person is told how that account
signs in, so the app can ask them to log in and link.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from idservice.domain import events
from idservice.domain.accounts import Account
from idservice.domain.age import seoul_today
from idservice.domain.errors import DomainError, Reason, invalid
from idservice.domain.ids import new_id
from idservice.domain.sessions import RevokeReason
from idservice.domain.sns import SIGNUP_TICKET_MINUTES, SnsProfile, SnsProvider
from idservice.service_layer import duplicates
from idservice.service_layer.auth import (
    account_gone,
    authenticate,
    load_account,
    recently_signed_in,
    still_signed_in,
)
from idservice.service_layer.login import pending_guardian_consent
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    Clock,
    SecretsCipher,
    SnsCredential,
    SnsIdentityProvider,
    SnsLink,
    TokenIssuer,
    TokenPurpose,
    UniqueViolation,
    UnitOfWork,
    UnitOfWorkFactory,
)
from idservice.service_layer.provider_answers import validate_sns_profile
from idservice.service_layer.sessions import IssuedSession, start_session
from idservice.service_layer.sns_credentials import check_credential
from idservice.service_layer.use_cases import Command
from idservice.service_layer.validation import Violations, email_lookup_key
from idservice.service_layer.verification import upstream_budget

SIGNUP_TICKET_TTL = timedelta(minutes=SIGNUP_TICKET_MINUTES)
SIGNUP_TICKET_BYTES = 32
# Longer than any ticket we hand out (43 characters); anything larger is not ours.
MAX_TICKET_LENGTH = 512


@dataclass(frozen=True, slots=True)
class SignupRequired:
    """An SNS login of a person with no account: the ticket for SignUp, and a prefill."""

    sns_signup_ticket: str
    email: str
    name: str
    birth_date: date | None


@dataclass(frozen=True, slots=True)
class SnsLoginResult:
    session: IssuedSession | None = None
    signup_required: SignupRequired | None = None


@dataclass(frozen=True, slots=True, repr=False)
class SnsLogin(Command[SnsLoginResult]):
    # None: a provider the API does not know.
    provider: SnsProvider | None
    credential: SnsCredential
    timeout: float | None = None


def sns_authenticate(
    provider: SnsProvider | None,
    credential: SnsCredential,
    *,
    timeout: float | None,
    now: datetime,
    sns: Mapping[SnsProvider, SnsIdentityProvider],
) -> SnsProfile:
    """The person a provider vouches for, validated like caller input."""
    adapter = sns.get(provider) if provider is not None else None
    if adapter is None:
        raise DomainError(
            Reason.PROVIDER_NOT_CONFIGURED,
            "that SNS provider is not configured",
            metadata={"provider": provider.value if provider else ""},
        )
    check_credential(credential, provider=adapter.provider)
    profile = adapter.authenticate(credential, timeout=upstream_budget(timeout))
    return validate_sns_profile(profile, today=seoul_today(now))


def sns_login(
    cmd: SnsLogin,
    *,
    uow: UnitOfWorkFactory,
    sns: Mapping[SnsProvider, SnsIdentityProvider],
    tokens: TokenIssuer,
    cipher: SecretsCipher,
    policy: Policy,
    clock: Clock,
) -> SnsLoginResult:
    now = clock()
    profile = sns_authenticate(cmd.provider, cmd.credential, timeout=cmd.timeout, now=now, sns=sns)
    with uow(readonly=True) as tx:
        link = tx.sns_identities.find(profile.provider, profile.subject)
        account = tx.accounts.get(link.account_id) if link is not None else None
        if link is None or account is None:
            refuse_existing_person(tx, profile, now=now)
    if link is not None and account is not None:
        issued = _sign_in(
            link, account, profile, now=now, uow=uow, tokens=tokens, cipher=cipher, policy=policy
        )
        if issued is not None:
            return SnsLoginResult(session=issued)
        # Withdrawn or unlinked since it was read: answered as a login after that would be.
        with uow(readonly=True) as tx:
            refuse_existing_person(tx, profile, now=now)
    ticket = secrets.token_urlsafe(SIGNUP_TICKET_BYTES)
    with uow() as tx:
        tx.signup_tickets.add(
            ticket_hash(ticket, cipher=cipher),
            profile,
            now=now,
            expires_at=now + SIGNUP_TICKET_TTL,
        )
        tx.commit()
    return SnsLoginResult(
        signup_required=SignupRequired(
            sns_signup_ticket=ticket,
            email=profile.email,
            name=profile.name,
            birth_date=profile.birth_date,
        )
    )


def ticket_profile(
    ticket: str, *, now: datetime, uow: UnitOfWorkFactory, cipher: SecretsCipher
) -> SnsProfile | None:
    """The SNS identity of a signup ticket (not used yet: SignUp consumes it in its write)."""
    if not ticket:
        return None
    if len(ticket) > MAX_TICKET_LENGTH:
        raise ticket_invalid()
    with uow(readonly=True) as tx:
        stored = tx.signup_tickets.get(ticket_hash(ticket, cipher=cipher), now=now)
    if stored is None:
        raise ticket_invalid()
    return stored.profile


def ticket_invalid() -> DomainError:
    return DomainError(
        Reason.SNS_TOKEN_INVALID, "the SNS signup ticket is unknown, used or expired; log in again"
    )


def filled_from(
    sns: SnsProfile, *, name: str, phone: str, birth: date | None
) -> tuple[str, str, date]:
    """Without identity verification, what the provider says wins over the caller: a given value
    that differs is VERIFICATION_MISMATCH (a child's Kakao birth date cannot be typed away);
    what neither gave is VALIDATION_FAILED."""
    differing = [
        field
        for field, given, said in (
            ("name", name, sns.name),
            ("phone_number", phone, sns.phone_number),
            ("birth_date", birth, sns.birth_date),
        )
        if given and said and given != said
    ]
    if differing:
        raise DomainError(
            Reason.VERIFICATION_MISMATCH,
            "the given values differ from what the SNS provider says",
            metadata={"fields": ",".join(differing)},
        )
    name, phone, birth = sns.name or name, sns.phone_number or phone, sns.birth_date or birth
    with Violations() as v:
        for field, value in (("name", name), ("phone_number", phone), ("birth_date", birth)):
            if not value:
                v.add(field, "is required (the SNS provider did not share it)")
    assert birth is not None
    return name, phone, birth


def ticket_hash(ticket: str, *, cipher: SecretsCipher) -> str:
    return cipher.token_hash(ticket, purpose=TokenPurpose.SNS_SIGNUP_TICKET)


def _sign_in(
    link: SnsLink,
    account: Account,
    profile: SnsProfile,
    *,
    now: datetime,
    uow: UnitOfWorkFactory,
    tokens: TokenIssuer,
    cipher: SecretsCipher,
    policy: Policy,
) -> IssuedSession | None:
    """A session for the linked account; the kept nickname and picture are refreshed. None,
    writing nothing, when the account was withdrawn or the identity unlinked since they were
    read.

    The account's row is locked first, as a withdrawal locks it before it deletes the links: a
    login touching the link first and the account after (the session's foreign key) would
    deadlock with a withdrawal on PostgreSQL."""
    if not account.status.may_sign_in:
        raise pending_guardian_consent()
    with uow() as tx:
        if tx.accounts.get(account.id, for_update=True) is None or not tx.sns_identities.touch(
            link.id, nickname=profile.nickname, picture_url=profile.picture_url, now=now
        ):
            return None
        issued = start_session(
            tx,
            account,
            amr=(profile.provider.value,),
            now=now,
            tokens=tokens,
            cipher=cipher,
            policy=policy,
        )
        tx.commit()
    return issued


def refuse_existing_person(tx: UnitOfWork, profile: SnsProfile, *, now: datetime) -> None:
    """IDENTITY_ALREADY_REGISTERED when the profile's email or CI is an account's already.

    Never a sign-in: the person logs in the way that account does and links the identity.
    """
    if profile.email:
        existing = tx.accounts.get_by_email(email_lookup_key(profile.email))
        if existing is not None:
            raise duplicates.identity_registered(existing)
    if profile.ci:
        existing = tx.accounts.find_by_identity(ci=profile.ci, di=None)
        if existing is not None:
            raise duplicates.identity_registered(existing)
        hold = tx.accounts.rejoin_hold_until(ci=profile.ci, di=None, now=now)
        if hold is not None:
            raise duplicates.identity_registered(None, rejoin_after=hold)


def new_link(account_id: str, profile: SnsProfile, *, now: datetime) -> SnsLink:
    return SnsLink(
        id=new_id(),
        account_id=account_id,
        provider=profile.provider,
        subject=profile.subject,
        nickname=profile.nickname,
        picture_url=profile.picture_url,
        created_at=now,
        last_login_at=now,
    )


def already_linked() -> DomainError:
    return DomainError(
        Reason.SNS_IDENTITY_ALREADY_LINKED, "this SNS identity or provider is already linked"
    )


@dataclass(frozen=True, slots=True, repr=False)
class LinkSnsIdentity(Command[list[str]]):
    access_token: str
    provider: SnsProvider | None
    credential: SnsCredential
    timeout: float | None = None


def link_sns_identity(
    cmd: LinkSnsIdentity,
    *,
    uow: UnitOfWorkFactory,
    sns: Mapping[SnsProvider, SnsIdentityProvider],
    tokens: TokenIssuer,
    clock: Clock,
) -> list[str]:
    """Add a Google or Kakao sign-in to the caller's account; answers its sign-in methods.

    Only in a session signed in recently (auth.REAUTHENTICATION_MAX_AGE): a sign-in added is a
    way into the account that a password change does not close, and a Withdraw accepts it."""
    caller = authenticate(cmd.access_token, tokens=tokens, uow=uow, clock=clock)
    now = clock()
    recently_signed_in(caller, uow=uow, now=now)  # before a provider spends a code
    profile = sns_authenticate(cmd.provider, cmd.credential, timeout=cmd.timeout, now=now, sns=sns)
    account = load_account(caller, uow=uow)
    if profile.ci and account.ci and profile.ci != account.ci:
        # The provider vouches for another person than the account's verified one.
        raise DomainError(Reason.VERIFICATION_MISMATCH, "the SNS identity is of another person")
    # A Kakao CI becomes the account's only when the account knows no person yet. One verified
    # by its DI alone is that person's; a CI cannot be checked against a DI, so it is not
    # taken (it might be a relative's), and a second account of the person is found by the DI.
    adopts_ci = bool(profile.ci) and not account.ci and not account.di
    if profile.ci and not account.ci:
        with uow(readonly=True) as tx:
            # One person, one account: a Kakao CI that is another account's (or held for a
            # withdrawn person) cannot be linked here.
            other = tx.accounts.find_by_identity(ci=profile.ci, di=None)
            if other is not None and other.id != account.id:
                raise duplicates.identity_registered(other)
            duplicates.refuse_rejoin_hold(tx, ci=profile.ci, di=None, now=now)
    with uow() as tx:
        # The live account's row first (as a withdrawal takes it): a link must never be added
        # to what a withdrawal that committed since the account was read left behind, nor by
        # a session ended while the provider answered (an unlink ends the sessions it opened).
        if tx.accounts.get(account.id, for_update=True) is None:
            raise account_gone()
        # The time under the lock, not before the provider answered: the sign-in's age has grown
        # meanwhile, and what is written (the link, its event) is ordered after an unlink that
        # committed while the provider answered.
        now = clock()
        still_signed_in(tx, caller, now=now, recently=True)
        if adopts_ci:
            # The account now holds the person's CI, as an SNS signup with it would: a later
            # signup of the same person finds it (one person, one account).
            assert profile.ci is not None
            try:
                tx.accounts.adopt_ci(account.id, profile.ci, now=now)
            except UniqueViolation:
                other = tx.accounts.find_by_identity(ci=profile.ci, di=None)
                if other is None:
                    raise
                raise duplicates.identity_registered(other) from None
        try:
            tx.sns_identities.add(new_link(account.id, profile, now=now))
        except UniqueViolation:
            raise already_linked() from None
        provider = profile.provider.value
        tx.outbox.add(events.sns_identity_linked(account_id=account.id, provider=provider, now=now))
        tx.commit()
    return _sign_in_methods(account.id, uow=uow)


@dataclass(frozen=True, slots=True, repr=False)
class UnlinkSnsIdentity(Command[list[str]]):
    access_token: str
    provider: SnsProvider | None


def unlink_sns_identity(
    cmd: UnlinkSnsIdentity, *, uow: UnitOfWorkFactory, tokens: TokenIssuer, clock: Clock
) -> list[str]:
    """Remove a Google or Kakao sign-in; never the account's last way to sign in.

    The account's other sessions opened with that sign-in end with it (the caller's own stays,
    as ChangePassword keeps it): an account that signs in only with Google and Kakao has no
    password to change, and unlinking is how its owner shuts out whoever signed in that way.
    Like a link, only in a session signed in recently.
    """
    caller = authenticate(cmd.access_token, tokens=tokens, uow=uow, clock=clock)
    if cmd.provider is None:
        raise invalid("provider", "choose GOOGLE or KAKAO")
    with uow() as tx:
        # Locked, so two unlinks at once cannot both see a second way to sign in.
        account = tx.accounts.get(caller.account_id, for_update=True)
        if account is None:
            raise DomainError(Reason.TOKEN_INVALID, "the account no longer exists")
        now = clock()
        still_signed_in(tx, caller, now=now, recently=True)
        if cmd.provider.value not in account.sns_providers:
            raise invalid("provider", "is not linked to this account")
        if len(account.sign_in_methods) <= 1:
            raise DomainError(
                Reason.LAST_SIGN_IN_METHOD, "an account keeps at least one way to sign in"
            )
        tx.sns_identities.remove(account.id, cmd.provider)
        for session in tx.sessions.of_account(account.id):
            if (
                session.id != caller.session_id
                and session.revoked_at is None
                and cmd.provider.value in session.amr
            ):
                tx.sessions.revoke(session.id, now=now, reason=RevokeReason.SIGN_IN_UNLINKED)
        tx.outbox.add(
            events.sns_identity_unlinked(
                account_id=account.id, provider=cmd.provider.value, now=now
            )
        )
        tx.commit()
    return _sign_in_methods(caller.account_id, uow=uow)


def _sign_in_methods(account_id: str, *, uow: UnitOfWorkFactory) -> list[str]:
    with uow(readonly=True) as tx:
        account = tx.accounts.get(account_id)
    return account.sign_in_methods if account is not None else []
