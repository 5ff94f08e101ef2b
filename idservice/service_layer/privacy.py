"""The person's rights over their data (개인정보 보호법 제35–37조): consents, the export
document and withdrawal (탈퇴).

One implementation serves the person (UpdateConsents, ExportPersonalData, Withdraw) and the
legal guardian of a child under 14 (ExportWardData, WithdrawWard; privacy policy 제6조).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from idservice.domain import events
from idservice.domain.accounts import Account, Consents
from idservice.domain.age import age_band, seoul_today
from idservice.domain.consents import ConsentChannel, ConsentRecord, ConsentType
from idservice.domain.errors import DomainError, FieldViolation, Reason, ValidationFailed
from idservice.domain.guardian_consent import needs_guardian_consent
from idservice.domain.ids import new_id
from idservice.domain.instants import utc_text
from idservice.domain.sns import SnsProvider
from idservice.service_layer.auth import (
    REAUTHENTICATION_MAX_AGE,
    account_gone,
    authenticate,
    load_account,
    still_signed_in,
)
from idservice.service_layer.passwords import check_password
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    Clock,
    PasswordHasher,
    SnsCredential,
    SnsIdentityProvider,
    TokenIssuer,
    UnitOfWork,
    UnitOfWorkFactory,
)
from idservice.service_layer.sns_login import sns_authenticate
from idservice.service_layer.use_cases import Command

# Version of the export document's shape (docs: the JSON Schema of the export).
EXPORT_FORMAT = "idservice.export/1"


def _time(value: datetime | None) -> str | None:
    return utc_text(value) if value is not None else None


def export_document(
    tx: UnitOfWork, account: Account, *, now: datetime, policy: Policy
) -> dict[str, object]:
    """Everything held about the account, as one JSON-ready document (never raw CI/DI); the
    connection log as far back as it is kept (`Policy.connection_log_retention`)."""
    c = account.consents
    request = tx.guardian_consents.of_account(account.id)
    guardian: dict[str, object] | None = None
    if request is not None:
        guardian = {
            "name": request.guardian_name,
            "phone_number": request.guardian_phone,
            "consent_status": request.status.value,
            "requested_at": _time(request.created_at),
            "decided_at": _time(request.decided_at),
            # How the guardian confirmed it (korea-rules Guardian 3), once approved.
            "method": request.method,
        }
    return {
        "format": EXPORT_FORMAT,
        "exported_at": utc_text(now),
        "account": {
            "id": account.id,
            "status": account.status.value,
            "email": account.email,
            "name": account.name,
            "phone_number": account.phone_number,
            "birth_date": account.birth_date.isoformat(),
            "age_band": age_band(account.birth_date, seoul_today(now)).value,
            "created_at": _time(account.created_at),
        },
        "consents": {
            "terms_version": c.terms_version,
            "privacy_policy_version": c.privacy_policy_version,
            "accepted_at": _time(c.accepted_at),
            "marketing_opt_in": c.marketing_opt_in,
            "marketing_updated_at": _time(c.marketing_updated_at),
            "processing_suspended": c.processing_suspended,
            "third_party_provision_opt_in": c.third_party_opt_in,
            "third_party_provision_updated_at": _time(c.third_party_updated_at),
            "history": [
                {
                    "type": r.consent_type.value,
                    "version": r.version,
                    "granted": r.granted,
                    "channel": r.channel.value,
                    "recorded_at": utc_text(r.recorded_at),
                }
                for r in tx.consent_records.of_account(account.id)
            ],
        },
        "sign_in_methods": account.sign_in_methods,
        "sns_identities": [
            {
                "provider": link.provider.value,
                "nickname": link.nickname,
                "picture_url": link.picture_url,
                "linked_at": _time(link.created_at),
                "last_login_at": _time(link.last_login_at),
            }
            for link in tx.sns_identities.of_account(account.id)
        ],
        "identity_verification": {
            "verified": account.identity_verified,
            "ci_held": account.ci is not None,
            "di_held": account.di is not None,
        },
        "guardian": guardian,
        "wards": tx.guardian_consents.approved_wards(account.ci) if account.ci else [],
        # 통신비밀보호법: the connection log is kept 3 months (the setting); the export shows it.
        "connection_log": [
            {
                "occurred_at": utc_text(entry.occurred_at),
                "method": entry.method,
                "code": entry.code,
                "reason": entry.reason,
                "client_ip": entry.client_ip,
            }
            for entry in tx.connection_log.of_account(
                account.id, since=now - policy.connection_log_retention
            )
        ],
        "sessions": [
            {
                "id": session.id,
                "methods": list(session.amr),
                "created_at": _time(session.created_at),
                "expires_at": _time(session.expires_at),
                "revoked_at": _time(session.revoked_at),
            }
            for session in tx.sessions.of_account(account.id)
        ],
    }


def withdraw(tx: UnitOfWork, account: Account, *, now: datetime, policy: Policy) -> bool:
    """탈퇴 in the caller's transaction: name, email, phone, birth date, password hash, SNS links,
    verification data and sessions are deleted (access tokens stop working at once); only the
    CI/DI blind indexes and the withdrawal time stay, under the unique indexes, for the re-join
    cooldown; consent records stay as records.

    False, writing nothing (no second `account.withdrawn`), when the account was withdrawn
    since it was read: two withdrawals at once (two sessions, or the person and a guardian)
    queue on the account's row and only the first one withdraws."""
    if not tx.accounts.withdraw(account.id, now=now, hold_until=now + policy.rejoin_cooldown):
        return False
    tx.outbox.add(events.account_withdrawn(account_id=account.id, now=now))
    return True


def record_signup_consents(tx: UnitOfWork, account: Account, *, now: datetime) -> None:
    """The consents of a SignUp, as records: terms and privacy policy with their versions, and
    the optional ones that were given."""
    c = account.consents
    given: list[tuple[ConsentType, str | None]] = [
        (ConsentType.TERMS, c.terms_version),
        (ConsentType.PRIVACY_POLICY, c.privacy_policy_version),
    ]
    if c.marketing_opt_in:
        given.append((ConsentType.MARKETING, None))
    if c.third_party_opt_in:
        given.append((ConsentType.THIRD_PARTY_PROVISION, None))
    for kind, version in given:
        _record(tx, account.id, kind, version, True, ConsentChannel.SIGNUP, now)


def _record(
    tx: UnitOfWork,
    account_id: str,
    kind: ConsentType,
    version: str | None,
    granted: bool,
    channel: ConsentChannel,
    now: datetime,
) -> None:
    tx.consent_records.add(
        ConsentRecord(
            id=new_id(),
            account_id=account_id,
            consent_type=kind,
            version=version,
            granted=granted,
            channel=channel,
            recorded_at=now,
        )
    )


# -- UpdateConsents ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, repr=False)
class UpdateConsents(Command[Consents]):
    """None leaves a choice as it is."""

    access_token: str
    marketing_opt_in: bool | None = None
    processing_suspended: bool | None = None
    third_party_opt_in: bool | None = None


UPDATE_CHANNEL = ConsentChannel.UPDATE_CONSENTS


def update_consents(
    cmd: UpdateConsents, *, uow: UnitOfWorkFactory, tokens: TokenIssuer, clock: Clock
) -> Consents:
    """Opt in or out of marketing and third-party provision, suspend or resume processing: at
    once, recorded, and told to other systems (`consents.updated`, IntrospectToken).

    A child under 14 may opt out and suspend processing, but not opt in: korea-rules Age 6
    (the guardian's consent comes before any consent-based processing), as at SignUp."""
    caller = authenticate(cmd.access_token, tokens=tokens, uow=uow, clock=clock)
    with uow() as tx:
        account = tx.accounts.get(caller.account_id, for_update=True)
        # The time under the account's lock: changes at once are recorded in the order they
        # take effect, so the newest record is the choice in force.
        now = clock()
        if account is None:
            raise DomainError(Reason.TOKEN_INVALID, "the account no longer exists")
        if needs_guardian_consent(account.birth_date, seoul_today(now)):
            _refuse_child_opt_ins(cmd)
        c = account.consents
        changes = [
            (kind, new)
            for kind, new, old in (
                (ConsentType.MARKETING, cmd.marketing_opt_in, c.marketing_opt_in),
                (ConsentType.THIRD_PARTY_PROVISION, cmd.third_party_opt_in, c.third_party_opt_in),
                (
                    ConsentType.PROCESSING_SUSPENSION,
                    cmd.processing_suspended,
                    c.processing_suspended,
                ),
            )
            if new is not None and new != old
        ]
        # Opting in again while opted in re-confirms the opt-in (정보통신망법 제50조⑧): it is
        # recorded, and its two years start again.
        reconfirmed = cmd.marketing_opt_in is True and c.marketing_opt_in
        if reconfirmed:
            _record(tx, account.id, ConsentType.MARKETING, None, True, UPDATE_CHANNEL, now)
            c.marketing_updated_at = now
        for kind, new in changes:
            _record(tx, account.id, kind, None, bool(new), UPDATE_CHANNEL, now)
            if kind is ConsentType.MARKETING:
                c.marketing_opt_in, c.marketing_updated_at = bool(new), now
            elif kind is ConsentType.THIRD_PARTY_PROVISION:
                c.third_party_opt_in, c.third_party_updated_at = bool(new), now
            else:
                c.processing_suspended = bool(new)
        if changes or reconfirmed:
            tx.accounts.save_consents(account.id, c, now=now)
        if changes:
            tx.outbox.add(
                events.consents_updated(
                    account_id=account.id,
                    marketing_opt_in=c.marketing_opt_in,
                    third_party_provision_opt_in=c.third_party_opt_in,
                    processing_suspended=c.processing_suspended,
                    now=now,
                )
            )
        tx.commit()
    return c


def _refuse_child_opt_ins(cmd: UpdateConsents) -> None:
    violations = [
        FieldViolation(field, CHILD_OPT_IN_REFUSED)
        for field, opt_in in (
            ("marketing_opt_in", cmd.marketing_opt_in),
            ("third_party_provision_opt_in", cmd.third_party_opt_in),
        )
        if opt_in
    ]
    if violations:
        raise ValidationFailed(violations)


CHILD_OPT_IN_REFUSED = (
    "a child under 14 cannot opt in without the legal guardian's consent; "
    "opting out and suspending processing stay open"
)


# -- ExportPersonalData --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, repr=False)
class ExportPersonalData(Command[str]):
    access_token: str


def export_personal_data(
    cmd: ExportPersonalData,
    *,
    uow: UnitOfWorkFactory,
    tokens: TokenIssuer,
    policy: Policy,
    clock: Clock,
) -> str:
    """열람: everything held about the caller's account as one JSON document."""
    caller = authenticate(cmd.access_token, tokens=tokens, uow=uow, clock=clock)
    now = clock()
    with uow(readonly=True) as tx:
        account = tx.accounts.get(caller.account_id)
        if account is None:
            raise DomainError(Reason.TOKEN_INVALID, "the account no longer exists")
        document = export_document(tx, account, now=now, policy=policy)
    return json.dumps(document, ensure_ascii=False, sort_keys=True)


# -- Withdraw ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, repr=False)
class Withdraw(Command[None]):
    """Re-authentication: the current password, or a fresh SNS sign-in of a linked identity."""

    access_token: str
    password: str = ""
    sns_provider: SnsProvider | None = None
    sns_credential: SnsCredential | None = None
    timeout: float | None = None


def withdraw_account(
    cmd: Withdraw,
    *,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    sns: Mapping[SnsProvider, SnsIdentityProvider],
    policy: Policy,
    clock: Clock,
) -> None:
    caller = authenticate(cmd.access_token, tokens=tokens, uow=uow, clock=clock)
    now = clock()
    account = load_account(caller, uow=uow)
    profile = None
    if cmd.password:
        check_password(
            account, cmd.password, now=now, uow=uow, hasher=hasher, lockout=policy.lockout
        )
    elif cmd.sns_credential is not None and (
        cmd.sns_credential.id_token or cmd.sns_credential.authorization_code
    ):
        profile = sns_authenticate(
            cmd.sns_provider, cmd.sns_credential, timeout=cmd.timeout, now=now, sns=sns
        )
        if profile.signed_in_at is None or now - profile.signed_in_at > REAUTHENTICATION_MAX_AGE:
            raise DomainError(
                Reason.REAUTHENTICATION_REQUIRED,
                "sign in again: the SNS sign-in must be at most "
                f"{REAUTHENTICATION_MAX_AGE.seconds // 60} minutes old",
            )
    else:
        raise DomainError(
            Reason.REAUTHENTICATION_REQUIRED,
            "withdrawal needs the current password or a fresh SNS sign-in",
        )
    with uow() as tx:
        # Under the account's row lock, the caller's session and the SNS identity must still
        # be the account's: an unlink that committed meanwhile removed the link and ended the
        # sessions it opened.
        if tx.accounts.get(account.id, for_update=True) is None:
            raise account_gone()  # withdrawn meanwhile, as the call after it is answered
        still_signed_in(tx, caller, now=now)
        if profile is not None:
            link = tx.sns_identities.find(profile.provider, profile.subject)
            if link is None or link.account_id != account.id:
                raise DomainError(
                    Reason.REAUTHENTICATION_REQUIRED,
                    "sign in again with an identity of this account",
                )
        if not withdraw(tx, account, now=now, policy=policy):
            raise account_gone()
        tx.commit()
