"""Identity verification (본인인증): complete it once and hand out a single-use token."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from idservice.domain.accounts import Account
from idservice.domain.age import CHILD_CONSENT_AGE, age_on, seoul_today
from idservice.domain.errors import DomainError, Reason, invalid
from idservice.domain.identity import VerifiedPerson
from idservice.domain.ids import new_id
from idservice.domain.rrn import looks_like_rrn
from idservice.service_layer import rate_limits
from idservice.service_layer.duplicates import Duplicate, duplicate_of
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    Clock,
    IdentityProvider,
    SecretsCipher,
    StoredVerification,
    TokenPurpose,
    UniqueViolation,
    UnitOfWork,
    UnitOfWorkFactory,
)
from idservice.service_layer.provider_answers import validate_provider_person
from idservice.service_layer.use_cases import Command
from idservice.service_layer.validation import normalize_phone

# Contract §2: a verification token is single use and lives 30 minutes.
VERIFICATION_TOKEN_TTL = timedelta(minutes=30)
VERIFICATION_TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 512
# A provider call gets at most this long when the caller set no deadline.
DEFAULT_UPSTREAM_TIMEOUT_SECONDS = 10.0
MAX_UPSTREAM_TIMEOUT_SECONDS = 30.0
MIN_UPSTREAM_TIMEOUT_SECONDS = 0.05
# Kept back from the caller's deadline so that a slow provider is answered with
# UPSTREAM_UNAVAILABLE before the deadline passes (not DEADLINE_EXCEEDED at the caller): a fifth
# of the budget, at least 0.25 s (the writes after the call), at most 2 s.
UPSTREAM_DEADLINE_MARGIN_SECONDS = 0.25
UPSTREAM_DEADLINE_MARGIN_SHARE = 0.2
UPSTREAM_DEADLINE_MARGIN_MAX_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class CompletedVerification:
    token: str
    expires_at: datetime
    person: VerifiedPerson
    age: int
    is_under_14: bool
    duplicate: Duplicate


@dataclass(frozen=True, slots=True, repr=False)
class CompleteVerification(Command[CompletedVerification]):
    # None: the configured provider.
    provider: str | None
    verification_id: str
    # Seconds left before the caller's deadline; None when the caller set none.
    timeout: float | None = None
    # The end-user address, when a trusted proxy names it ("" otherwise).
    client_address: str = field(default="", repr=False)


def upstream_budget(timeout: float | None) -> float:
    """How long a provider call may take inside the caller's deadline."""
    if timeout is None:
        return DEFAULT_UPSTREAM_TIMEOUT_SECONDS
    margin = min(
        max(UPSTREAM_DEADLINE_MARGIN_SECONDS, UPSTREAM_DEADLINE_MARGIN_SHARE * timeout),
        UPSTREAM_DEADLINE_MARGIN_MAX_SECONDS,
    )
    budget = min(timeout - margin, MAX_UPSTREAM_TIMEOUT_SECONDS)
    return max(budget, MIN_UPSTREAM_TIMEOUT_SECONDS)


def complete_verification(
    cmd: CompleteVerification,
    *,
    uow: UnitOfWorkFactory,
    providers: Mapping[str, IdentityProvider],
    cipher: SecretsCipher,
    policy: Policy,
    clock: Clock,
) -> CompletedVerification:
    """Fetch the result server-to-server, store it encrypted, and answer with a token.

    Each call counts toward the limit of its end-user address before the provider is asked.
    """
    rate_limits.count_address(
        uow,
        rate_limits.Scope.VERIFICATIONS,
        cmd.client_address,
        policy.rate_limits.verifications,
        now=clock(),
        cipher=cipher,
    )
    name = cmd.provider or policy.identity_provider
    adapter = providers.get(name)
    if adapter is None:
        raise DomainError(
            Reason.PROVIDER_NOT_CONFIGURED,
            "that identity verification provider is not configured",
            metadata={"provider": name},
        )
    person = adapter.fetch(cmd.verification_id, timeout=upstream_budget(cmd.timeout))
    if name == "sandbox" and looks_like_rrn(cmd.verification_id):
        # korea-rules CI/DI 1: never take in a resident registration number, from anywhere.
        raise invalid("verification_id", "must not contain a resident registration number")
    now = clock()
    # Checked like caller input: the sandbox's person is the caller's; a provider's bad answer
    # is UPSTREAM_UNAVAILABLE and never stored.
    person = validate_provider_person(
        person, today=seoul_today(now), from_caller=name == "sandbox", provider=name
    )
    token = secrets.token_urlsafe(VERIFICATION_TOKEN_BYTES)
    expires_at = now + VERIFICATION_TOKEN_TTL
    with uow() as tx:
        try:
            tx.verifications.add(
                new_id(),
                provider=name,
                source_hash=cipher.token_hash(
                    f"{name}:{cmd.verification_id}", purpose=TokenPurpose.VERIFICATION_SOURCE
                ),
                token_hash=_token_hash(token, cipher),
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
        duplicate = duplicate_of(tx, person, now=now)
        tx.commit()
    age = age_on(person.birth_date, seoul_today(now))
    return CompletedVerification(
        token=token,
        expires_at=expires_at,
        person=person,
        age=age,
        is_under_14=age < CHILD_CONSENT_AGE,
        duplicate=duplicate,
    )


def _token_hash(token: str, cipher: SecretsCipher) -> str:
    return cipher.token_hash(token, purpose=TokenPurpose.VERIFICATION_TOKEN)


def invalid_token() -> DomainError:
    return DomainError(
        Reason.VERIFICATION_TOKEN_INVALID, "the verification token is unknown, used or expired"
    )


def load(
    token: str, *, now: datetime, uow: UnitOfWorkFactory, cipher: SecretsCipher
) -> StoredVerification:
    """The stored verification of an unused, unexpired token."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token()
    with uow(readonly=True) as tx:
        stored = tx.verifications.get_by_token(_token_hash(token, cipher))
    if stored is None or stored.consumed_at is not None or stored.expires_at <= now:
        raise invalid_token()
    return stored


def peek(
    token: str, *, now: datetime, uow: UnitOfWorkFactory, cipher: SecretsCipher
) -> VerifiedPerson:
    """The verified person of an unused token (not consumed)."""
    return load(token, now=now, uow=uow, cipher=cipher).person


def consume(tx: UnitOfWork, token: str, *, now: datetime, cipher: SecretsCipher) -> None:
    """Use the token inside the caller's transaction; a second use fails. One conditional
    UPDATE: the caller read the person with `peek` already."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token()
    if not tx.verifications.consume(_token_hash(token, cipher), now=now):
        raise invalid_token()


def merge_verified(
    person: VerifiedPerson, *, name: str, phone: str, birth: date | None
) -> tuple[str, str, date]:
    """Verified values win; a given value that differs is VERIFICATION_MISMATCH."""
    verified_phone = normalize_phone(person.phone_number, require_valid=False)
    mismatched = []
    if name and name != person.name:
        mismatched.append("name")
    if phone and phone != verified_phone:
        mismatched.append("phone_number")
    if birth and birth != person.birth_date:
        mismatched.append("birth_date")
    if mismatched:
        raise DomainError(
            Reason.VERIFICATION_MISMATCH,
            "the given values differ from the identity verification",
            metadata={"fields": ",".join(mismatched)},
        )
    return person.name, verified_phone, person.birth_date


def same_person(account: Account, person: VerifiedPerson) -> bool:
    """CI decides when both have one, else DI."""
    if account.ci and person.ci:
        return hmac.compare_digest(account.ci.encode(), person.ci.encode())
    if account.di and person.di:
        return hmac.compare_digest(account.di.encode(), person.di.encode())
    return False
