"""Identity verification (본인인증): complete it once, hand out a single-use token, check ages."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from idservice.domain.age import (
    CHILD_CONSENT_AGE,
    AgePolicy,
    age_on,
    parse_birth_date,
    parse_date,
    seoul_today,
)
from idservice.domain.age import (
    check_age as decide_age,
)
from idservice.domain.errors import (
    DomainError,
    FieldViolation,
    Reason,
    ValidationFailed,
    invalid,
)
from idservice.domain.identity import VerifiedPerson
from idservice.domain.masking import mask_email
from idservice.domain.model import Account
from idservice.domain.rrn import looks_like_rrn
from idservice.service_layer.ports import StoredVerification, UniqueViolation
from idservice.service_layer.services import Services, new_id
from idservice.service_layer.sessions import Caller, get_account
from idservice.service_layer.validation import validate_provider_person

if TYPE_CHECKING:
    from idservice.adapters.db.unit_of_work import SqlUnitOfWork

# Contract §2: a verification token is single use and lives 30 minutes.
VERIFICATION_TOKEN_TTL = timedelta(minutes=30)
VERIFICATION_TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 512
# A provider call gets at most this long when the caller set no deadline.
DEFAULT_UPSTREAM_TIMEOUT_SECONDS = 10.0
# Kept back from the caller's deadline so that a slow provider is answered with
# UPSTREAM_UNAVAILABLE before the deadline passes (not DEADLINE_EXCEEDED at the caller): a fifth
# of the budget, at least 0.25 s (the writes after the call), at most 2 s.
UPSTREAM_DEADLINE_MARGIN_SECONDS = 0.25
UPSTREAM_DEADLINE_MARGIN_SHARE = 0.2
UPSTREAM_DEADLINE_MARGIN_MAX_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Duplicate:
    exists: bool
    sign_in_methods: tuple[str, ...] = ()
    masked_email: str = ""


@dataclass(frozen=True, slots=True)
class CompletedVerification:
    token: str
    expires_at: datetime
    person: VerifiedPerson
    age: int
    is_under_14: bool
    duplicate: Duplicate


def _deadline_margin(timeout: float) -> float:
    share = UPSTREAM_DEADLINE_MARGIN_SHARE * timeout
    return min(max(UPSTREAM_DEADLINE_MARGIN_SECONDS, share), UPSTREAM_DEADLINE_MARGIN_MAX_SECONDS)


def complete_verification(
    svc: Services, *, provider: str | None, verification_id: str, timeout: float | None
) -> CompletedVerification:
    """Fetch the result server-to-server, store it encrypted, and answer with a token."""
    name = provider or svc.settings.identity_provider
    adapter = svc.identity_providers.get(name)
    if adapter is None:
        raise DomainError(
            Reason.PROVIDER_NOT_CONFIGURED,
            "that identity verification provider is not configured",
            metadata={"provider": name},
        )
    budget = (
        DEFAULT_UPSTREAM_TIMEOUT_SECONDS
        if timeout is None
        else min(timeout - _deadline_margin(timeout), 30.0)
    )
    person = adapter.fetch(verification_id, timeout=max(budget, 0.05))
    if name == "sandbox" and looks_like_rrn(verification_id):
        # korea-rules CI/DI 1: never take in a resident registration number, from anywhere.
        raise invalid("verification_id", "must not contain a resident registration number")
    now = svc.clock()
    # Checked like caller input: the sandbox's person is the caller's; a provider's bad answer
    # is UPSTREAM_UNAVAILABLE and never stored.
    person = validate_provider_person(person, today=seoul_today(now), from_caller=name == "sandbox")
    token = secrets.token_urlsafe(VERIFICATION_TOKEN_BYTES)
    expires_at = now + VERIFICATION_TOKEN_TTL
    with svc.uow() as uow:
        try:
            uow.verifications.add(
                new_id(),
                provider=name,
                source_hash=svc.cipher.token_hash(f"verification-source:{name}:{verification_id}"),
                token_hash=_token_hash(svc, token),
                person=person,
                now=now,
                expires_at=expires_at,
            )
        except UniqueViolation:
            # Contract §2: a verification_id is accepted once.
            raise DomainError(
                Reason.VERIFICATION_NOT_FOUND,
                "this verification was already used; verify again",
            ) from None
        existing = uow.accounts.find_by_identity(ci=person.ci, di=person.di)
        held = uow.accounts.rejoin_hold_until(ci=person.ci, di=person.di, now=now)
        uow.commit()
    today = seoul_today(now)
    age = age_on(person.birth_date, today)
    duplicate = Duplicate(exists=held is not None)
    if existing is not None:
        duplicate = Duplicate(
            exists=True,
            sign_in_methods=tuple(existing.sign_in_methods),
            masked_email=mask_email(existing.email) if existing.email else "",
        )
    return CompletedVerification(
        token=token,
        expires_at=expires_at,
        person=person,
        age=age,
        is_under_14=age < CHILD_CONSENT_AGE,
        duplicate=duplicate,
    )


def _token_hash(svc: Services, token: str) -> str:
    return svc.cipher.token_hash("verification-token:" + token)


def _invalid_token() -> DomainError:
    return DomainError(
        Reason.VERIFICATION_TOKEN_INVALID, "the verification token is unknown, used or expired"
    )


def load(svc: Services, token: str, *, now: datetime) -> StoredVerification:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise _invalid_token()
    with svc.uow(readonly=True) as uow:
        stored = uow.verifications.get_by_token(_token_hash(svc, token))
    if stored is None or stored.consumed_at is not None or stored.expires_at <= now:
        raise _invalid_token()
    return stored


def peek(svc: Services, token: str, *, now: datetime) -> VerifiedPerson:
    """The verified person of an unused token (not consumed)."""
    return load(svc, token, now=now).person


def consume(svc: Services, uow: SqlUnitOfWork, token: str, *, now: datetime) -> None:
    """Use the token inside the caller's transaction; a second use fails."""
    stored = uow.verifications.get_by_token(_token_hash(svc, token))
    if stored is None or not uow.verifications.consume(stored.id, now=now):
        raise _invalid_token()


def same_person(account: Account, person: VerifiedPerson) -> bool:
    """CI decides when both have one, else DI."""
    if account.ci and person.ci:
        return secrets.compare_digest(account.ci.encode(), person.ci.encode())
    if account.di and person.di:
        return secrets.compare_digest(account.di.encode(), person.di.encode())
    return False


@dataclass(frozen=True, slots=True)
class AgeAnswer:
    age: int
    allowed: bool
    identity_verified: bool
    changes_on: date | None


def check_age(
    svc: Services,
    *,
    policy: AgePolicy,
    minimum_age: int | None,
    as_of: str,
    caller: Caller | None = None,
    verification_token: str | None = None,
    birth_date: str = "",
) -> AgeAnswer:
    """CheckAge for one subject: the caller's account, a verification, or a declared birth date."""
    now = svc.clock()
    today = parse_date(as_of, field="as_of") if as_of else seoul_today(now)
    if caller is not None:
        account = get_account(svc, caller)
        birth, verified = account.birth_date, account.identity_verified
    elif verification_token is not None:
        person = peek(svc, verification_token, now=now)
        birth, verified = person.birth_date, True
    else:
        # Born after today: invalid input whatever `as_of` asks (korea-rules.md Age 7).
        birth = parse_birth_date(birth_date, today=seoul_today(now))
        if today < birth:
            # Not born yet on `as_of`: no 만 나이. Either value may be the mistake.
            raise ValidationFailed(
                [
                    FieldViolation("birth_date", "must not be after as_of"),
                    FieldViolation("as_of", "must not be before the birth date"),
                ]
            )
        verified = False
    if today < birth:
        raise invalid("as_of", "must not be before the birth date")
    decision = decide_age(birth, policy, today, minimum_age)
    return AgeAnswer(
        age=decision.age,
        allowed=decision.allowed,
        identity_verified=verified,
        changes_on=decision.changes_on,
    )
