"""Sign-up, the caller's account view, profile correction and password change."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from idservice.domain.age import (
    CHILD_CONSENT_AGE,
    age_on,
    parse_birth_date,
    seoul_today,
)
from idservice.domain.errors import DomainError, FieldViolation, Reason, ValidationFailed, invalid
from idservice.domain.identity import VerifiedPerson
from idservice.domain.masking import mask_email
from idservice.domain.model import Account, AccountStatus, Consents, OutboxEvent, SignInMethod
from idservice.service_layer import verification
from idservice.service_layer.ports import UniqueViolation
from idservice.service_layer.services import Services, new_id
from idservice.service_layer.sessions import (
    MAX_HASH_SWAP_TRIES,
    Caller,
    IssuedSession,
    check_password,
    get_account,
    start_session,
    still_matching_hash,
    too_many_at_once,
)
from idservice.service_layer.validation import (
    Violations,
    email_lookup_key,
    normalize_email,
    normalize_phone,
    validate_name,
    validate_password,
)

if TYPE_CHECKING:
    from idservice.adapters.db.unit_of_work import SqlUnitOfWork

# How long a SignUp's idempotency key returns the first result (the mobile backend retries
# within seconds; a day covers app restarts and queued retries).
IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_IDEMPOTENCY_KEY_LENGTH = 128
# What a SignUp sees when a concurrent call with the same idempotency key committed first.
_LOST_RACE_REASONS = frozenset(
    {Reason.EMAIL_TAKEN, Reason.IDENTITY_ALREADY_REGISTERED, Reason.VERIFICATION_TOKEN_INVALID}
)
# Guardian consent codes: 8 digits sent to the guardian's phone (≈ 26.6 bits; attempts are
# limited by the consent request's life and rate limits).
CONSENT_CODE_DIGITS = 8


@dataclass(frozen=True, slots=True)
class SignUpCommand:
    """A SignUp request, as the caller sent it."""

    idempotency_key: str = ""
    email: str = ""
    password: str = ""
    sns_signup_ticket: str = ""
    name: str = ""
    phone_number: str = ""
    birth_date: str = ""
    verification_token: str = ""
    consents_given: bool = False
    terms_version: str = ""
    privacy_policy_version: str = ""
    marketing_opt_in: bool = False
    guardian_given: bool = False
    guardian_name: str = ""
    guardian_phone_number: str = ""

    def fingerprint(self, svc: Services) -> str:
        """Keyed hash of the body without the key: the same key with another body is refused."""
        body = asdict(self)
        body.pop("idempotency_key")
        body.pop("password")  # checked against the account's Argon2 hash on a replay
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
        return svc.cipher.token_hash("signup-body:" + canonical)


@dataclass(frozen=True, slots=True)
class ConsentRequestRef:
    id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignUpResult:
    account: Account
    session: IssuedSession | None
    consent_request: ConsentRequestRef | None


@dataclass(slots=True)
class _Profile:
    email: str
    email_key: str
    name: str
    phone: str
    birth: date
    person: VerifiedPerson | None
    guardian_name: str
    guardian_phone: str


def sign_up(svc: Services, cmd: SignUpCommand) -> SignUpResult:
    """SignUp: validate everything, hash outside the transaction, then one atomic write."""
    now = svc.clock()
    key_hash = _idempotency_key_hash(svc, cmd.idempotency_key)
    fingerprint = cmd.fingerprint(svc) if key_hash else ""
    if key_hash:
        replay = _replay(svc, cmd, key_hash, fingerprint, now=now)
        if replay is not None:
            return replay
    try:
        profile = _validate_signup(svc, cmd, now=now)
        _refuse_known_conflicts(svc, profile, now=now)
        password_hash = svc.hasher.hash(cmd.password)
        return _create_account(svc, cmd, profile, password_hash, key_hash, fingerprint, now=now)
    except DomainError as exc:
        # A concurrent call with the same key may have won the race (its account holds the
        # email and identity, and it used the verification token): answer with its result.
        if key_hash and exc.reason in _LOST_RACE_REASONS:
            replay = _replay(svc, cmd, key_hash, fingerprint, now=now)
            if replay is not None:
                return replay
        raise
    except UniqueViolation:
        # Only idempotency.put raises UniqueViolation, and only with a key.
        replay = _replay(svc, cmd, key_hash, fingerprint, now=now)
        if replay is not None:
            return replay
        raise _key_reused() from None


def _refuse_known_conflicts(svc: Services, profile: _Profile, *, now: datetime) -> None:
    """Fail fast, before the Argon2 work, on a conflict already committed.

    Only a shortcut: the unique indexes still decide races in the write transaction.
    """
    person = profile.person
    with svc.uow(readonly=True) as uow:
        if uow.accounts.get_by_email(profile.email_key) is not None:
            raise DomainError(Reason.EMAIL_TAKEN, "the email is already registered")
        if person is None:
            return
        existing = uow.accounts.find_by_identity(ci=person.ci, di=person.di)
        if existing is not None:
            raise _identity_registered(existing)
        hold = uow.accounts.rejoin_hold_until(ci=person.ci, di=person.di, now=now)
        if hold is not None:
            raise _identity_registered(None, rejoin_after=hold)


def _idempotency_key_hash(svc: Services, key: str) -> str:
    if not key:
        return ""
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(
            [
                FieldViolation(
                    "idempotency_key",
                    f"must be 1..{MAX_IDEMPOTENCY_KEY_LENGTH} printable characters",
                )
            ]
        )
    return svc.cipher.token_hash("signup-key:" + key)


def _key_reused() -> DomainError:
    return DomainError(
        Reason.IDEMPOTENCY_KEY_REUSED, "the idempotency key was used with another request"
    )


def _replay(
    svc: Services, cmd: SignUpCommand, key_hash: str, fingerprint: str, *, now: datetime
) -> SignUpResult | None:
    """The first result of this key, if the body is the same; tokens only while still live."""
    with svc.uow(readonly=True) as uow:
        stored = uow.idempotency.get(key_hash, operation="signup", now=now)
        if stored is None:
            return None
        if not secrets.compare_digest(stored.fingerprint, fingerprint):
            raise _key_reused()
        data = json.loads(stored.response)
        account = uow.accounts.get(data["account_id"])
    if account is None:
        # The account is gone (withdrawn or its consent window closed): the key is spent.
        raise DomainError(
            Reason.IDEMPOTENCY_KEY_REUSED, "the idempotency key belongs to a finished signup"
        )
    # The fingerprint leaves the password out (a fast hash of it would be guessable from a
    # database copy); compare it with the stored Argon2 hash instead.
    if account.password_hash:
        try:
            # Counted like a login: a replay is no way around the lock.
            check_password(svc, account, cmd.password, now=now)
        except DomainError as exc:
            if exc.reason is Reason.INVALID_CREDENTIALS:
                raise _key_reused() from None
            raise
    s = _unsealed_session(svc, cmd, key_hash, data.get("session_sealed"), now=now)
    session = None
    if s is not None:
        session = IssuedSession(
            account_id=account.id,
            session_id=s["session_id"],
            access_token=s["access_token"],
            access_token_expires_at=datetime.fromisoformat(s["access_token_expires_at"]),
            refresh_token=s["refresh_token"],
            refresh_token_expires_at=datetime.fromisoformat(s["refresh_token_expires_at"]),
        )
    consent = None
    if data.get("consent_request"):
        c = data["consent_request"]
        consent = ConsentRequestRef(id=c["id"], expires_at=datetime.fromisoformat(c["expires_at"]))
    return SignUpResult(account=account, session=session, consent_request=consent)


def _sealing_secret(cmd: SignUpCommand) -> str:
    # The tokens of a stored response open only with the caller's idempotency key, which is
    # stored only as a keyed hash: a database copy with the data keys does not yield live
    # tokens unless the key can be guessed (callers use random keys). The password stays out:
    # a key derived from it by a fast HMAC would let such a copy test password guesses at HMAC
    # speed instead of Argon2's; a replay's password is checked against the Argon2 hash.
    return cmd.idempotency_key


def _sealing_context(key_hash: str) -> str:
    return f"idempotency-session:{key_hash}"


def _unsealed_session(
    svc: Services, cmd: SignUpCommand, key_hash: str, sealed: object, *, now: datetime
) -> dict[str, str] | None:
    """The first session's tokens, if they open and are still live."""
    if not isinstance(sealed, str):
        return None
    try:
        s: dict[str, str] = json.loads(
            svc.cipher.unseal(
                sealed, secret=_sealing_secret(cmd), context=_sealing_context(key_hash)
            )
        )
    except ValueError:  # not sealed by this key (cannot happen for a stored row of its own)
        return None
    with svc.uow(readonly=True) as uow:
        record = uow.sessions.find_refresh(svc.cipher.token_hash(s["refresh_token"]))
    if record is None or record.used_at is not None or not record.session.is_active(now):
        # Rotated or ended since: handing the old tokens back would trip reuse detection and
        # log the person out.
        return None
    return s


def _validate_signup(svc: Services, cmd: SignUpCommand, *, now: datetime) -> _Profile:
    today = seoul_today(now)
    settings = svc.settings
    with Violations() as v:
        if cmd.sns_signup_ticket:
            v.add(
                "sns_signup_ticket", "SNS signup is not available; sign up with email and password"
            )
        if not cmd.email:
            v.add("email", "is required")
        if not cmd.password:
            v.add("password", "is required")
        email = v.check(lambda: normalize_email(cmd.email), default="") if cmd.email else ""
        name = v.check(lambda: validate_name(cmd.name), default="") if cmd.name else ""
        phone = (
            v.check(lambda: normalize_phone(cmd.phone_number), default="")
            if cmd.phone_number
            else ""
        )
        birth = (
            v.check(lambda: parse_birth_date(cmd.birth_date, today=today), default=None)
            if cmd.birth_date
            else None
        )
        if cmd.password:
            v.check(lambda: validate_password(cmd.password, user_inputs=[email, name or cmd.name]))
        if not cmd.consents_given or not cmd.terms_version:
            v.add("consents.terms_version", "is required")
        if not cmd.consents_given or not cmd.privacy_policy_version:
            v.add("consents.privacy_policy_version", "is required")
        # Without a token these come from the caller; when a verification is required, the
        # answer is IDENTITY_VERIFICATION_REQUIRED below, not "name is required".
        if not cmd.verification_token and not settings.require_identity_verification:
            if not cmd.name:
                v.add("name", "is required")
            if not cmd.phone_number:
                v.add("phone_number", "is required")
            if not cmd.birth_date:
                v.add("birth_date", "is required")
        guardian_name = guardian_phone = ""
        if cmd.guardian_given and (cmd.guardian_name or cmd.guardian_phone_number):
            guardian_name = v.check(
                lambda: validate_name(cmd.guardian_name, field="guardian.name"), default=""
            )
            guardian_phone = v.check(
                lambda: normalize_phone(cmd.guardian_phone_number, field="guardian.phone_number"),
                default="",
            )
    if (
        cmd.terms_version != settings.terms_version
        or cmd.privacy_policy_version != settings.privacy_policy_version
    ):
        raise DomainError(
            Reason.TERMS_VERSION_MISMATCH,
            "accept the current terms and privacy policy",
            metadata={
                "terms_version": settings.terms_version,
                "privacy_policy_version": settings.privacy_policy_version,
            },
        )
    person: VerifiedPerson | None = None
    if cmd.verification_token:
        person = verification.peek(svc, cmd.verification_token, now=now)
        name, phone, birth = _merge_verified(person, name=name, phone=phone, birth=birth)
        if not cmd.name:
            # The name came from the verification: the password must not contain it either.
            validate_password(cmd.password, user_inputs=[email, name])
    elif settings.require_identity_verification:
        raise DomainError(
            Reason.IDENTITY_VERIFICATION_REQUIRED, "complete identity verification first"
        )
    assert birth is not None
    if age_on(birth, today) < CHILD_CONSENT_AGE:
        if not guardian_name or not guardian_phone:
            raise DomainError(
                Reason.GUARDIAN_INFO_REQUIRED,
                "a child under 14 needs the legal guardian's name and phone number",
            )
        if guardian_phone == phone:
            raise DomainError(
                Reason.GUARDIAN_SAME_PERSON, "the guardian's contact must not be the child's own"
            )
    else:
        guardian_name = guardian_phone = ""
    return _Profile(
        email=email,
        email_key=email_lookup_key(email),
        name=name,
        phone=phone,
        birth=birth,
        person=person,
        guardian_name=guardian_name,
        guardian_phone=guardian_phone,
    )


def _merge_verified(
    person: VerifiedPerson, *, name: str, phone: str, birth: date | None
) -> tuple[str, str, date]:
    """Verified values win; a given value that differs is a mismatch."""
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


def _create_account(
    svc: Services,
    cmd: SignUpCommand,
    profile: _Profile,
    password_hash: str,
    key_hash: str,
    fingerprint: str,
    *,
    now: datetime,
) -> SignUpResult:
    today = seoul_today(now)
    child = age_on(profile.birth, today) < CHILD_CONSENT_AGE
    person = profile.person
    account = Account(
        id=new_id(),
        status=AccountStatus.PENDING_GUARDIAN_CONSENT if child else AccountStatus.ACTIVE,
        email=profile.email,
        name=profile.name,
        phone_number=profile.phone,
        birth_date=profile.birth,
        identity_verified=person is not None,
        ci=person.ci if person else None,
        di=person.di if person else None,
        password_hash=password_hash,
        created_at=now,
        consents=Consents(
            terms_version=cmd.terms_version,
            privacy_policy_version=cmd.privacy_policy_version,
            accepted_at=now,
            marketing_opt_in=cmd.marketing_opt_in and not child,
            marketing_updated_at=now,
        ),
    )
    with svc.uow() as uow:
        if cmd.verification_token:
            verification.consume(svc, uow, cmd.verification_token, now=now)
        if person is not None:
            hold = uow.accounts.rejoin_hold_until(ci=person.ci, di=person.di, now=now)
            if hold is not None:
                raise _identity_registered(None, rejoin_after=hold)
        try:
            uow.accounts.add(account, email_key=profile.email_key)
        except UniqueViolation as exc:
            if exc.column == "email_index":
                raise DomainError(Reason.EMAIL_TAKEN, "the email is already registered") from None
            existing = uow.accounts.find_by_identity(
                ci=person.ci if person else None, di=person.di if person else None
            )
            raise _identity_registered(existing) from None
        session = None
        consent = None
        if child:
            consent = _open_consent_request(svc, uow, account, profile, now=now)
        else:
            session = start_session(svc, uow, account, amr=(SignInMethod.PASSWORD.value,), now=now)
        uow.outbox.add(
            OutboxEvent(
                id=new_id(),
                type="account.created",
                payload={
                    "account_id": account.id,
                    "status": account.status.value,
                    "identity_verified": account.identity_verified,
                },
                created_at=now,
            )
        )
        if key_hash:
            uow.idempotency.put(
                key_hash,
                operation="signup",
                fingerprint=fingerprint,
                response=_result_document(
                    account,
                    session,
                    consent,
                    seal=lambda text: svc.cipher.seal(
                        text, secret=_sealing_secret(cmd), context=_sealing_context(key_hash)
                    ),
                ),
                now=now,
                ttl=IDEMPOTENCY_TTL,
            )
        uow.commit()
    return SignUpResult(account=account, session=session, consent_request=consent)


def _open_consent_request(
    svc: Services, uow: SqlUnitOfWork, account: Account, profile: _Profile, *, now: datetime
) -> ConsentRequestRef:
    request_id = new_id()
    code = "".join(secrets.choice("0123456789") for _ in range(CONSENT_CODE_DIGITS))
    expires_at = now + svc.settings.guardian_consent_window
    uow.guardian_consents.add(
        request_id,
        account_id=account.id,
        guardian_name=profile.guardian_name,
        guardian_phone=profile.guardian_phone,
        code_hash=svc.cipher.token_hash(f"consent-code:{request_id}:{code}"),
        now=now,
        expires_at=expires_at,
    )
    uow.outbox.add(
        OutboxEvent(
            id=new_id(),
            type="guardian_consent.requested",
            payload={
                "consent_request_id": request_id,
                "account_id": account.id,
                "guardian_name": profile.guardian_name,
                "guardian_phone_number": profile.guardian_phone,
                "consent_code": code,
                "expires_at": expires_at.isoformat(),
            },
            created_at=now,
        )
    )
    return ConsentRequestRef(id=request_id, expires_at=expires_at)


def _result_document(
    account: Account,
    session: IssuedSession | None,
    consent: ConsentRequestRef | None,
    *,
    seal: Callable[[str], str],
) -> bytes:
    """The stored first result; the session's tokens are sealed (see _sealing_secret)."""
    doc: dict[str, object] = {"account_id": account.id}
    if session is not None:
        tokens = {
            "session_id": session.session_id,
            "access_token": session.access_token,
            "access_token_expires_at": session.access_token_expires_at.isoformat(),
            "refresh_token": session.refresh_token,
            "refresh_token_expires_at": session.refresh_token_expires_at.isoformat(),
        }
        doc["session_sealed"] = seal(json.dumps(tokens))
    if consent is not None:
        doc["consent_request"] = {"id": consent.id, "expires_at": consent.expires_at.isoformat()}
    return json.dumps(doc).encode()


def _identity_registered(
    existing: Account | None, *, rejoin_after: datetime | None = None
) -> DomainError:
    """IDENTITY_ALREADY_REGISTERED telling how the account signs in — never its email or name."""
    metadata = {
        "sign_in_methods": ",".join(existing.sign_in_methods) if existing else "",
        "masked_email": mask_email(existing.email) if existing and existing.email else "",
    }
    if rejoin_after is not None:
        metadata["rejoin_allowed_after"] = rejoin_after.isoformat()
    return DomainError(
        Reason.IDENTITY_ALREADY_REGISTERED,
        "this person already has an account",
        metadata=metadata,
    )


def update_profile(
    svc: Services,
    caller: Caller,
    *,
    name: str | None,
    phone_number: str | None,
    birth_date: str | None,
    verification_token: str = "",
) -> Account:
    """정정: correct name, phone or birth date; verified values need a new verification."""
    now = svc.clock()
    today = seoul_today(now)
    with Violations() as v:
        new_name = v.check(lambda: validate_name(name)) if name is not None else None
        new_phone = (
            v.check(lambda: normalize_phone(phone_number)) if phone_number is not None else None
        )
        new_birth = (
            v.check(lambda: parse_birth_date(birth_date, today=today))
            if birth_date is not None
            else None
        )
    account = get_account(svc, caller)
    if verification_token and not account.identity_verified:
        raise invalid("verification_token", "the account has no verified identity to renew")
    person = verification.peek(svc, verification_token, now=now) if verification_token else None
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
            merged = _merge_verified(
                person,
                name=new_name or "",
                phone=new_phone or "",
                birth=new_birth,
            )
            new_name, new_phone, new_birth = merged
    if new_birth is not None and age_on(new_birth, today) < CHILD_CONSENT_AGE:
        # An active account cannot turn into a child's without the guardian-consent path
        # (korea-rules Guardian 2); pending accounts never hold an access token.
        raise DomainError(
            Reason.IDENTITY_VERIFICATION_REQUIRED,
            "an age under 14 needs identity verification and the guardian's consent",
        )
    with svc.uow() as uow:
        if person is not None:
            verification.consume(svc, uow, verification_token, now=now)
        uow.accounts.save_profile(
            account.id, name=new_name, phone_number=new_phone, birth_date=new_birth, now=now
        )
        uow.commit()
    account.name = new_name if new_name is not None else account.name
    account.phone_number = new_phone if new_phone is not None else account.phone_number
    account.birth_date = new_birth if new_birth is not None else account.birth_date
    return account


def _wrong_current_password() -> DomainError:
    return DomainError(Reason.INVALID_CREDENTIALS, "the current password is wrong")


def change_password(
    svc: Services, caller: Caller, *, current_password: str, new_password: str
) -> None:
    """Needs the current password; every other session of the account is revoked."""
    now = svc.clock()
    account = get_account(svc, caller)
    with Violations() as v:
        if not current_password:
            v.add("current_password", "is required")
        if not new_password:
            v.add("new_password", "is required")
        else:
            v.check(
                lambda: validate_password(
                    new_password,
                    user_inputs=[account.email or "", account.name],
                    field="new_password",
                )
            )
    try:
        check_password(svc, account, current_password, now=now)
    except DomainError as error:
        if error.reason is Reason.INVALID_CREDENTIALS:
            raise _wrong_current_password() from None
        raise
    new_hash = svc.hasher.hash(new_password)
    expected = account.password_hash
    if expected is None:
        raise _wrong_current_password()
    for tries_left in reversed(range(MAX_HASH_SWAP_TRIES)):
        with svc.uow() as uow:
            if uow.accounts.replace_password_hash(
                account.id, expected=expected, new=new_hash, now=now
            ):
                uow.sessions.revoke_others(
                    account.id, keep=caller.session_id, now=now, reason="password_changed"
                )
                uow.commit()
                return
        if not tries_left:
            break
        # The hash changed after the check: a login's re-hash keeps the current password,
        # another change does not (then this one lost the race).
        current = still_matching_hash(svc, account.id, current_password, previous=expected)
        if current is None:
            raise _wrong_current_password()
        expected = current
    # The password was right each time, but the hash keeps changing: retry shortly.
    raise too_many_at_once()
