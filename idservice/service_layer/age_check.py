"""CheckAge: one age policy applied to the caller's account, a verification or a declared date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from idservice.domain.age import AgePolicy, parse_birth_date, parse_date, seoul_today
from idservice.domain.age import check_age as decide_age
from idservice.domain.errors import FieldViolation, ValidationFailed, invalid
from idservice.service_layer import verification
from idservice.service_layer.auth import authenticated_standing
from idservice.service_layer.ports import Clock, SecretsCipher, TokenIssuer, UnitOfWorkFactory
from idservice.service_layer.use_cases import Command


@dataclass(frozen=True, slots=True)
class AgeAnswer:
    age: int
    allowed: bool
    identity_verified: bool
    changes_on: date | None


@dataclass(frozen=True, slots=True, repr=False)
class CheckAge(Command[AgeAnswer]):
    """Exactly one subject: `access_token` (the caller's account), a verification token, or a
    self-declared `birth_date`."""

    policy: AgePolicy
    minimum_age: int | None = None
    as_of: str = ""
    access_token: str | None = None
    verification_token: str | None = None
    birth_date: str = ""


def check_age(
    cmd: CheckAge,
    *,
    uow: UnitOfWorkFactory,
    tokens: TokenIssuer,
    cipher: SecretsCipher,
    clock: Clock,
) -> AgeAnswer:
    now = clock()
    today = parse_date(cmd.as_of, field="as_of") if cmd.as_of else seoul_today(now)
    if cmd.access_token is not None:
        account = authenticated_standing(cmd.access_token, tokens=tokens, uow=uow, clock=clock)
        birth, verified = account.birth_date, account.identity_verified
    elif cmd.verification_token is not None:
        person = verification.peek(cmd.verification_token, now=now, uow=uow, cipher=cipher)
        birth, verified = person.birth_date, True
    else:
        # Born after today: invalid input whatever `as_of` asks (korea-rules.md Age 7).
        birth = parse_birth_date(cmd.birth_date, today=seoul_today(now))
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
    decision = decide_age(birth, cmd.policy, today, cmd.minimum_age)
    return AgeAnswer(
        age=decision.age,
        allowed=decision.allowed,
        identity_verified=verified,
        changes_on=decision.changes_on,
    )
