"""SignUp: validate everything, hash outside the transaction, then one atomic write.

The flow: an idempotent replay answers first; then the request is validated (fields, terms,
the verified identity, a child's guardian); known conflicts are refused before the Argon2 work;
and one transaction consumes the verification token, inserts the account (unique indexes decide
duplicates), opens a session or a guardian consent request, and writes the events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime

from idservice.domain import events
from idservice.domain.accounts import Account, Consents, SignInMethod, initial_status
from idservice.domain.age import parse_birth_date, seoul_today
from idservice.domain.errors import DomainError, Reason
from idservice.domain.guardian_consent import (
    GuardianContact,
    needs_guardian_consent,
    require_guardian_contact,
)
from idservice.domain.identity import VerifiedPerson
from idservice.domain.ids import new_id
from idservice.domain.sns import SnsProfile
from idservice.service_layer import duplicates, idempotency, retention, verification
from idservice.service_layer.guardian_consent import open_request
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    Clock,
    PasswordHasher,
    SecretsCipher,
    TokenIssuer,
    UniqueViolation,
    UnitOfWork,
    UnitOfWorkFactory,
)
from idservice.service_layer.privacy import record_signup_consents
from idservice.service_layer.sessions import start_session
from idservice.service_layer.signup_replay import SignUpResult, first_result, replay_signup
from idservice.service_layer.sns_login import (
    already_linked,
    filled_from,
    new_link,
    ticket_hash,
    ticket_invalid,
    ticket_profile,
)
from idservice.service_layer.use_cases import Command
from idservice.service_layer.validation import (
    Violations,
    check_password_length,
    email_lookup_key,
    normalize_email,
    normalize_phone,
    validate_name,
    validate_password,
)

# What a SignUp sees when a concurrent call with the same idempotency key committed first.
_LOST_RACE_REASONS = frozenset(
    {
        Reason.EMAIL_TAKEN,
        Reason.IDENTITY_ALREADY_REGISTERED,
        Reason.VERIFICATION_TOKEN_INVALID,
        Reason.SNS_TOKEN_INVALID,
        Reason.SNS_IDENTITY_ALREADY_LINKED,
    }
)


@dataclass(frozen=True, slots=True, repr=False)
class SignUp(Command[SignUpResult]):
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
    third_party_opt_in: bool = False
    guardian_given: bool = False
    guardian_name: str = ""
    guardian_phone_number: str = ""

    def body(self) -> dict[str, object]:
        """What the idempotency fingerprint covers: all but the key and the password (checked
        against the account's Argon2 hash on a replay)."""
        body = asdict(self)
        body.pop("idempotency_key")
        body.pop("password")
        return body


@dataclass(frozen=True, slots=True)
class _Profile:
    """A validated SignUp: what the account will hold."""

    email: str
    # None when the account has no email (an SNS signup whose provider shared none).
    email_key: str | None
    name: str
    phone: str
    birth: date
    person: VerifiedPerson | None
    guardian: GuardianContact | None
    # The SNS identity of a signup with a ticket.
    sns: SnsProfile | None = None

    @property
    def ci(self) -> str | None:
        """The verified CI, else the one the SNS provider (Kakao) gave: both take part in
        duplicate detection alike."""
        if self.person is not None and self.person.ci:
            return self.person.ci
        return self.sns.ci if self.sns is not None else None

    @property
    def di(self) -> str | None:
        return self.person.di if self.person is not None else None


def sign_up(
    cmd: SignUp,
    *,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    cipher: SecretsCipher,
    policy: Policy,
    clock: Clock,
) -> SignUpResult:
    now = clock()
    key = idempotency.key_for(
        cmd.idempotency_key, operation=idempotency.SIGNUP, body=cmd.body(), cipher=cipher
    )

    def replay() -> SignUpResult | None:
        if key is None:
            return None
        return replay_signup(
            key, cmd.password, now=now, uow=uow, hasher=hasher, cipher=cipher, policy=policy
        )

    first = replay()
    if first is not None:
        return first
    try:
        profile = _validate(cmd, now=now, uow=uow, cipher=cipher, policy=policy)
        with uow(readonly=True) as tx:
            # Only a shortcut before the Argon2 work: the unique indexes still decide races.
            duplicates.refuse_known_conflicts(
                tx, email_key=profile.email_key, ci=profile.ci, di=profile.di, now=now
            )
        password_hash = hasher.hash(cmd.password) if cmd.password else None
        return _create_account(
            cmd,
            profile,
            password_hash,
            key,
            now=now,
            uow=uow,
            tokens=tokens,
            cipher=cipher,
            policy=policy,
        )
    except DomainError as exc:
        # A concurrent call with the same key may have won the race (its account holds the
        # email and identity, and it used the verification token): answer with its result.
        if key is not None and exc.reason in _LOST_RACE_REASONS:
            won = replay()
            if won is not None:
                return won
        raise
    except UniqueViolation:
        # Only idempotency.remember raises UniqueViolation here, and only with a key.
        won = replay()
        if won is not None:
            return won
        raise idempotency.key_reused() from None


@dataclass(frozen=True, slots=True)
class _Fields:
    """The caller's own values, each validated (empty where not given)."""

    email: str
    name: str
    phone: str
    birth: date | None
    guardian: GuardianContact | None


def _read_fields(cmd: SignUp, *, today: date, policy: Policy) -> _Fields:
    """Every field checked; all bad fields reported together (VALIDATION_FAILED)."""
    with Violations() as v:
        if cmd.sns_signup_ticket:
            for field, given in (("email", cmd.email), ("password", cmd.password)):
                if given:
                    v.add(field, "give either email and password or sns_signup_ticket")
        else:
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
        # Without a name, the verification's name is one of the person's own words: zxcvbn
        # then scores the password once, in `_validate`, unless another field is wrong already
        # (below: it is reported with them). Its length is checked here either way.
        score_later = bool(cmd.password and cmd.verification_token and not cmd.name)
        if score_later:
            score_later = v.check(lambda: check_password_length(cmd.password), default="") != ""
        elif cmd.password:
            v.check(lambda: validate_password(cmd.password, user_inputs=[email, name or cmd.name]))
        if not cmd.consents_given or not cmd.terms_version:
            v.add("consents.terms_version", "is required")
        if not cmd.consents_given or not cmd.privacy_policy_version:
            v.add("consents.privacy_policy_version", "is required")
        # Without a token these come from the caller; when a verification is required, the
        # answer is IDENTITY_VERIFICATION_REQUIRED below, not "name is required".
        # With an SNS ticket the provider's values fill what the caller left out (checked later).
        if (
            not cmd.verification_token
            and not cmd.sns_signup_ticket
            and not policy.require_identity_verification
        ):
            for field, given in (
                ("name", cmd.name),
                ("phone_number", cmd.phone_number),
                ("birth_date", cmd.birth_date),
            ):
                if not given:
                    v.add(field, "is required")
        guardian = None
        # A part left empty is missing (GUARDIAN_INFO_REQUIRED for a child), not malformed.
        guardian_name = cmd.guardian_name if cmd.guardian_name.strip() else ""
        guardian_phone = cmd.guardian_phone_number if cmd.guardian_phone_number.strip() else ""
        if cmd.guardian_given and (guardian_name or guardian_phone):
            if guardian_name:
                guardian_name = v.check(
                    lambda: validate_name(guardian_name, field="guardian.name"), default=""
                )
            if guardian_phone:
                guardian_phone = v.check(
                    lambda: normalize_phone(
                        guardian_phone, field="guardian.phone_number", mobile_only=True
                    ),
                    default="",
                )
            guardian = GuardianContact(name=guardian_name, phone_number=guardian_phone)
        if score_later and v:
            v.check(lambda: validate_password(cmd.password, user_inputs=[email, cmd.name]))
    return _Fields(email=email, name=name, phone=phone, birth=birth, guardian=guardian)


def _require_current_terms(cmd: SignUp, policy: Policy) -> None:
    if (
        cmd.terms_version != policy.terms_version
        or cmd.privacy_policy_version != policy.privacy_policy_version
    ):
        raise DomainError(
            Reason.TERMS_VERSION_MISMATCH,
            "accept the current terms and privacy policy",
            metadata={
                "terms_version": policy.terms_version,
                "privacy_policy_version": policy.privacy_policy_version,
            },
        )


def _validate(
    cmd: SignUp,
    *,
    now: datetime,
    uow: UnitOfWorkFactory,
    cipher: SecretsCipher,
    policy: Policy,
) -> _Profile:
    today = seoul_today(now)
    fields = _read_fields(cmd, today=today, policy=policy)
    _require_current_terms(cmd, policy)
    sns = ticket_profile(cmd.sns_signup_ticket, now=now, uow=uow, cipher=cipher)
    email = sns.email if sns is not None else fields.email
    name, phone, birth = fields.name, fields.phone, fields.birth
    person: VerifiedPerson | None = None
    if cmd.verification_token:
        person = verification.peek(cmd.verification_token, now=now, uow=uow, cipher=cipher)
        name, phone, birth = verification.merge_verified(
            person, name=name, phone=phone, birth=birth
        )
        if sns is not None and sns.ci and person.ci and sns.ci != person.ci:
            raise DomainError(
                Reason.VERIFICATION_MISMATCH,
                "the SNS identity and the identity verification are of different people",
                metadata={"fields": "ci"},
            )
        if not cmd.name and cmd.password:
            # The name came from the verification: the password must not contain it either
            # (`_read_fields` checked only its length).
            validate_password(cmd.password, user_inputs=[email, name])
    elif policy.require_identity_verification:
        raise DomainError(
            Reason.IDENTITY_VERIFICATION_REQUIRED, "complete identity verification first"
        )
    elif sns is not None:
        name, phone, birth = filled_from(sns, name=name, phone=phone, birth=birth)
    assert birth is not None  # required above when there is no verification
    guardian = None
    if needs_guardian_consent(birth, today):
        guardian = require_guardian_contact(fields.guardian, child_phone=phone)
    return _Profile(
        email=email,
        email_key=email_lookup_key(email) if email else None,
        name=name,
        phone=phone,
        birth=birth,
        person=person,
        guardian=guardian,
        sns=sns,
    )


def _release_expired_children(tx: UnitOfWork, profile: _Profile, *, now: datetime) -> None:
    """A child's account of this person or email whose consent window has ended is destroyed
    now, as the purge would (its request answers EXPIRED), so the sign-up goes ahead."""
    candidates = [
        tx.accounts.find_by_identity(ci=profile.ci, di=profile.di)
        if profile.ci or profile.di
        else None,
        tx.accounts.get_by_email(profile.email_key) if profile.email_key else None,
    ]
    expired = {found for a in candidates if (found := duplicates.expired_child(tx, a, now=now))}
    if expired:
        retention.destroy_expired_requests(tx, expired, now=now)


def _create_account(
    cmd: SignUp,
    profile: _Profile,
    password_hash: str | None,
    key: idempotency.IdempotencyKey | None,
    *,
    now: datetime,
    uow: UnitOfWorkFactory,
    tokens: TokenIssuer,
    cipher: SecretsCipher,
    policy: Policy,
) -> SignUpResult:
    account = _new_account(cmd, profile, password_hash, now=now)
    with uow() as tx:
        if cmd.verification_token:
            verification.consume(tx, cmd.verification_token, now=now, cipher=cipher)
        if profile.sns is not None and not tx.signup_tickets.consume(
            ticket_hash(cmd.sns_signup_ticket, cipher=cipher), now=now
        ):
            raise ticket_invalid()
        tx.accounts.release_expired_hold(ci=profile.ci, di=profile.di, now=now)
        _release_expired_children(tx, profile, now=now)
        duplicates.refuse_rejoin_hold(tx, ci=profile.ci, di=profile.di, now=now)
        try:
            tx.accounts.add(account, email_key=profile.email_key)
        except UniqueViolation as exc:
            raise duplicates.unique_violation_error(
                tx, exc.column, ci=profile.ci, di=profile.di, now=now
            ) from None
        record_signup_consents(tx, account, now=now)
        if profile.sns is not None:
            try:
                tx.sns_identities.add(new_link(account.id, profile.sns, now=now))
            except UniqueViolation:
                raise already_linked() from None
        session = None
        consent = None
        if profile.guardian is not None:
            consent = open_request(
                tx, account, profile.guardian, now=now, cipher=cipher, policy=policy
            )
        else:
            session = start_session(
                tx,
                account,
                amr=(profile.sns.provider.value if profile.sns else SignInMethod.PASSWORD.value,),
                now=now,
                tokens=tokens,
                cipher=cipher,
                policy=policy,
            )
        tx.outbox.add(
            events.account_created(
                account_id=account.id,
                status=account.status.value,
                identity_verified=account.identity_verified,
                now=now,
            )
        )
        if key is not None:
            idempotency.remember(
                tx, key, first_result(key, account, session, consent, cipher=cipher), now=now
            )
        tx.commit()
    return SignUpResult(account=account, session=session, consent_request=consent)


def _new_account(
    cmd: SignUp, profile: _Profile, password_hash: str | None, *, now: datetime
) -> Account:
    child = profile.guardian is not None
    person = profile.person
    return Account(
        id=new_id(),
        status=initial_status(needs_guardian_consent=child),
        email=profile.email,
        name=profile.name,
        phone_number=profile.phone,
        birth_date=profile.birth,
        identity_verified=person is not None,
        ci=profile.ci,
        di=profile.di,
        password_hash=password_hash,
        sns_providers=(profile.sns.provider.value,) if profile.sns else (),
        created_at=now,
        consents=Consents(
            terms_version=cmd.terms_version,
            privacy_policy_version=cmd.privacy_policy_version,
            accepted_at=now,
            # korea-rules Guardian 2: a pending child receives no marketing.
            marketing_opt_in=cmd.marketing_opt_in and not child,
            marketing_updated_at=now,
            third_party_opt_in=cmd.third_party_opt_in and not child,
            third_party_updated_at=now,
        ),
    )
