"""One person, one account (korea-rules CI/DI 3): who already holds this email or identity.

The unique indexes on the email, CI and DI blind indexes decide races; the reads here are a
shortcut that answers before expensive work, and the way to tell the caller how the existing
account signs in — never its email, name or phone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeGuard

from idservice.domain.accounts import Account, AccountStatus
from idservice.domain.errors import DomainError, Reason
from idservice.domain.guardian_consent import ConsentRequestStatus
from idservice.domain.identity import VerifiedPerson
from idservice.domain.instants import utc_text
from idservice.domain.masking import mask_email
from idservice.service_layer.ports import UnitOfWork


@dataclass(frozen=True, slots=True)
class Duplicate:
    """What CompleteVerification tells about an account this person already has."""

    exists: bool
    sign_in_methods: tuple[str, ...] = ()
    masked_email: str = ""


def email_taken() -> DomainError:
    return DomainError(Reason.EMAIL_TAKEN, "the email is already registered")


def identity_registered(
    existing: Account | None, *, rejoin_after: datetime | None = None
) -> DomainError:
    """IDENTITY_ALREADY_REGISTERED telling how the account signs in and its masked email."""
    metadata = {
        "sign_in_methods": ",".join(existing.sign_in_methods) if existing else "",
        "masked_email": mask_email(existing.email) if existing and existing.email else "",
    }
    if rejoin_after is not None:
        metadata["rejoin_allowed_after"] = utc_text(rejoin_after)
    return DomainError(
        Reason.IDENTITY_ALREADY_REGISTERED,
        "this person already has an account",
        metadata=metadata,
    )


def refuse_rejoin_hold(tx: UnitOfWork, *, ci: str | None, di: str | None, now: datetime) -> None:
    """A withdrawn person inside the re-join cooldown is still registered (korea-rules CI/DI 3)."""
    if not ci and not di:
        return
    hold = tx.accounts.rejoin_hold_until(ci=ci, di=di, now=now)
    if hold is not None:
        raise identity_registered(None, rejoin_after=hold)


def refuse_known_conflicts(
    tx: UnitOfWork, *, email_key: str | None, ci: str | None, di: str | None, now: datetime
) -> None:
    """EMAIL_TAKEN or IDENTITY_ALREADY_REGISTERED for a conflict already committed (a child's
    account whose consent window has ended is none: the sign-up destroys it first)."""
    if email_key is not None and _standing(tx.accounts.get_by_email(email_key), tx, now):
        raise email_taken()
    if not ci and not di:
        return
    existing = tx.accounts.find_by_identity(ci=ci, di=di)
    if _standing(existing, tx, now):
        raise identity_registered(existing)
    refuse_rejoin_hold(tx, ci=ci, di=di, now=now)


def expired_child(
    tx: UnitOfWork, account: Account | None, *, now: datetime
) -> tuple[str, str] | None:
    """(request id, account id) when `account` is a child's account still waiting for a
    guardian whose consent window has ended: korea-rules Guardian 4 has it destroyed, and the
    purge would; it holds neither the person nor the email against a new sign-up."""
    if account is None or account.status is not AccountStatus.PENDING_GUARDIAN_CONSENT:
        return None
    request = tx.guardian_consents.of_account(account.id)
    if (
        request is None
        or request.status is not ConsentRequestStatus.PENDING
        or request.expires_at > now
    ):
        return None
    return request.id, account.id


def _standing(account: Account | None, tx: UnitOfWork, now: datetime) -> TypeGuard[Account]:
    """`account` exists and is not a child's account whose consent window has ended."""
    return account is not None and expired_child(tx, account, now=now) is None


def duplicate_of(tx: UnitOfWork, person: VerifiedPerson, *, now: datetime) -> Duplicate:
    """The account (or the running re-join hold) of this person, as CompleteVerification says."""
    existing = tx.accounts.find_by_identity(ci=person.ci, di=person.di)
    if _standing(existing, tx, now):
        return Duplicate(
            exists=True,
            sign_in_methods=tuple(existing.sign_in_methods),
            masked_email=mask_email(existing.email) if existing.email else "",
        )
    held = tx.accounts.rejoin_hold_until(ci=person.ci, di=person.di, now=now)
    return Duplicate(exists=held is not None)


def unique_violation_error(
    tx: UnitOfWork, column: str, *, ci: str | None, di: str | None, now: datetime
) -> DomainError:
    """The domain's answer to a unique index that refused an account's insert: a live account,
    or a withdrawn one's remains holding the re-join cooldown (a Withdraw that won the race)."""
    if column == "email_index":
        return email_taken()
    existing = tx.accounts.find_by_identity(ci=ci, di=di)
    if existing is not None:
        return identity_registered(existing)
    return identity_registered(
        None, rejoin_after=tx.accounts.rejoin_hold_until(ci=ci, di=di, now=now)
    )
