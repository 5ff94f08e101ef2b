"""The legal guardian's rights over a ward under 14 (개인정보 보호법 제38조②; privacy policy 제6조).

Every call is authorised by a guardian verification token (CompleteVerification of the guardian,
not consumed, usable for its 30 minutes) whose CI is the ward's approved guardian; otherwise, and
once the child turns 14, the answer is PERMISSION_DENIED NOT_GUARDIAN.

Each access to a ward's data is recorded in the access audit, in the transaction of the access:
the calling service (`actor`), the guardian (by CI), the client's address, the ward and the
action; ListWards records one access per ward listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from idservice.domain.accounts import Account
from idservice.domain.age import seoul_today
from idservice.domain.audit import AuditAction
from idservice.domain.errors import DomainError, Reason
from idservice.domain.guardian_consent import needs_guardian_consent
from idservice.service_layer import privacy, verification
from idservice.service_layer.audit import UNKNOWN_ACTOR, record_access
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import Clock, SecretsCipher, UnitOfWork, UnitOfWorkFactory
from idservice.service_layer.use_cases import Command
from idservice.service_layer.validation import Violations, normalize_phone, validate_name

MAX_ID_LENGTH = 64


def not_guardian() -> DomainError:
    return DomainError(Reason.NOT_GUARDIAN, "not the approved legal guardian of this account")


def _guardian_ci(
    token: str, *, today_from: Clock, uow: UnitOfWorkFactory, cipher: SecretsCipher
) -> str:
    person = verification.peek(token, now=today_from(), uow=uow, cipher=cipher)
    if not person.ci:
        raise not_guardian()
    return person.ci


def _ward(tx: UnitOfWork, account_id: str, guardian_ci: str, *, today: date) -> Account:
    """The ward, if this guardian approved it and it is still under 14."""
    if not account_id or len(account_id) > MAX_ID_LENGTH:
        raise not_guardian()
    account = tx.accounts.get(account_id)
    if (
        account is None
        or not needs_guardian_consent(account.birth_date, today)
        or not tx.guardian_consents.approved_guardian_is(account_id, guardian_ci)
    ):
        raise not_guardian()
    return account


class _GuardianCall(Protocol):
    """What every guardian call carries besides its own fields, for the access audit: who calls
    (the calling service, as the transport authenticated or named it) and from where (the
    client's address, "" if unknown)."""

    @property
    def actor(self) -> str: ...

    @property
    def client(self) -> str: ...


def _audit(
    tx: UnitOfWork,
    cmd: _GuardianCall,
    guardian_ci: str,
    ward_id: str,
    action: AuditAction,
    *,
    now: datetime,
) -> None:
    record_access(
        tx,
        actor=cmd.actor,
        guardian_ci=guardian_ci,
        client=cmd.client,
        subject_account_id=ward_id,
        action=action,
        now=now,
    )


@dataclass(frozen=True, slots=True, repr=False)
class ListWards(Command[list[Account]]):
    guardian_verification_token: str
    actor: str = UNKNOWN_ACTOR
    client: str = ""


def list_wards(
    cmd: ListWards, *, uow: UnitOfWorkFactory, cipher: SecretsCipher, clock: Clock
) -> list[Account]:
    ci = _guardian_ci(cmd.guardian_verification_token, today_from=clock, uow=uow, cipher=cipher)
    now = clock()
    today = seoul_today(now)
    with uow() as tx:
        found = [
            tx.accounts.get(account_id) for account_id in tx.guardian_consents.approved_wards(ci)
        ]
        wards = [w for w in found if w is not None and needs_guardian_consent(w.birth_date, today)]
        for ward in wards:
            _audit(tx, cmd, ci, ward.id, AuditAction.LIST_WARDS, now=now)
        tx.commit()
    return wards


@dataclass(frozen=True, slots=True, repr=False)
class GetWard(Command[Account]):
    guardian_verification_token: str
    ward_account_id: str
    actor: str = UNKNOWN_ACTOR
    client: str = ""


def get_ward(
    cmd: GetWard, *, uow: UnitOfWorkFactory, cipher: SecretsCipher, clock: Clock
) -> Account:
    ci = _guardian_ci(cmd.guardian_verification_token, today_from=clock, uow=uow, cipher=cipher)
    now = clock()
    with uow() as tx:
        ward = _ward(tx, cmd.ward_account_id, ci, today=seoul_today(now))
        _audit(tx, cmd, ci, ward.id, AuditAction.GET_WARD, now=now)
        tx.commit()
    return ward


@dataclass(frozen=True, slots=True, repr=False)
class UpdateWard(Command[Account]):
    guardian_verification_token: str
    ward_account_id: str
    name: str | None = None
    phone_number: str | None = None
    actor: str = UNKNOWN_ACTOR
    client: str = ""


def update_ward(
    cmd: UpdateWard, *, uow: UnitOfWorkFactory, cipher: SecretsCipher, clock: Clock
) -> Account:
    """정정 on the ward's behalf: name and phone, vouched for by the verified guardian."""
    ci = _guardian_ci(cmd.guardian_verification_token, today_from=clock, uow=uow, cipher=cipher)
    name, phone = cmd.name, cmd.phone_number
    with Violations() as v:
        new_name = v.check(lambda: validate_name(name)) if name is not None else None
        new_phone = v.check(lambda: normalize_phone(phone)) if phone is not None else None
    now = clock()
    with uow() as tx:
        ward = _ward(tx, cmd.ward_account_id, ci, today=seoul_today(now))
        _audit(tx, cmd, ci, ward.id, AuditAction.UPDATE_WARD, now=now)
        if not tx.accounts.save_profile(ward.id, name=new_name, phone_number=new_phone, now=now):
            raise not_guardian()  # withdrawn since it was read: as a call after it is answered
        tx.commit()
    ward.name = new_name if new_name is not None else ward.name
    ward.phone_number = new_phone if new_phone is not None else ward.phone_number
    return ward


@dataclass(frozen=True, slots=True, repr=False)
class ExportWardData(Command[str]):
    guardian_verification_token: str
    ward_account_id: str
    actor: str = UNKNOWN_ACTOR
    client: str = ""


def export_ward_data(
    cmd: ExportWardData,
    *,
    uow: UnitOfWorkFactory,
    cipher: SecretsCipher,
    policy: Policy,
    clock: Clock,
) -> str:
    ci = _guardian_ci(cmd.guardian_verification_token, today_from=clock, uow=uow, cipher=cipher)
    now = clock()
    with uow() as tx:
        ward = _ward(tx, cmd.ward_account_id, ci, today=seoul_today(now))
        document = privacy.export_document(tx, ward, now=now, policy=policy)
        _audit(tx, cmd, ci, ward.id, AuditAction.EXPORT_WARD_DATA, now=now)
        tx.commit()
    return json.dumps(document, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True, slots=True, repr=False)
class WithdrawWard(Command[None]):
    guardian_verification_token: str
    ward_account_id: str
    actor: str = UNKNOWN_ACTOR
    client: str = ""


def withdraw_ward(
    cmd: WithdrawWard,
    *,
    uow: UnitOfWorkFactory,
    cipher: SecretsCipher,
    policy: Policy,
    clock: Clock,
) -> None:
    ci = _guardian_ci(cmd.guardian_verification_token, today_from=clock, uow=uow, cipher=cipher)
    now = clock()
    with uow() as tx:
        ward = _ward(tx, cmd.ward_account_id, ci, today=seoul_today(now))
        _audit(tx, cmd, ci, ward.id, AuditAction.WITHDRAW_WARD, now=now)
        if not privacy.withdraw(tx, ward, now=now, policy=policy):
            raise not_guardian()  # withdrawn meanwhile, as the call after it is answered
        tx.commit()
