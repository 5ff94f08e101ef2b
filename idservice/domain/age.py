"""Korean age rules (만 나이, 청소년 보호법, age gates) as pure functions of birth date and day."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum, StrEnum
from zoneinfo import ZoneInfo

from idservice.domain.errors import invalid

# korea-rules.md Age 3: "today" is the calendar date in Asia/Seoul, never the server's or UTC's.
SEOUL = ZoneInfo("Asia/Seoul")

# korea-rules.md Age 6 (개인정보 보호법 제22조의2①): under 만 14 needs the guardian's consent.
CHILD_CONSENT_AGE = 14
# korea-rules.md Age 4 (민법 제4조): 성년 is 만 19.
ADULT_AGE = 19
# korea-rules.md Age 5 (청소년 보호법 제2조제1호): 청소년 until 1 January of the year one turns 19.
YOUTH_PROTECTION_AGE = 19
# korea-rules.md Age 7: a birth date before 1900-01-01 is invalid input.
EARLIEST_BIRTH_DATE = date(1900, 1, 1)
# Upper bound for AGE_POLICY_MINIMUM_AGE; beyond any human age, and keeps the gate date computable.
MAX_MINIMUM_AGE = 150

# [0-9], not \d: \d also matches non-ASCII digits such as "٢". fullmatch() also refuses a
# trailing newline, which "$" would accept.
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def seoul_today(now: datetime) -> date:
    """The calendar date in Asia/Seoul at the instant `now` (korea-rules.md Age 3)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(SEOUL).date()


def birthday_in_year(birth: date, year: int) -> date:
    """The day in `year` on which someone born on `birth` gains a year.

    Born 29 February: 1 March in a non-leap year, because the period ends on the last day
    of February and the new year of age starts the next day (민법 제160조③; korea-rules.md Age 2).
    """
    if birth.month == 2 and birth.day == 29 and not calendar.isleap(year):
        return date(year, 3, 1)
    return birth.replace(year=year)


def age_on(birth: date, today: date) -> int:
    """만 나이 on `today`: full years since `birth`, gained at 00:00 on the birthday.

    (민법 제158조–제160조; korea-rules.md Age 1–2.) Negative when `today` is before `birth`.
    """
    years = today.year - birth.year
    if today < birthday_in_year(birth, today.year):
        years -= 1
    return years


def date_of_age(birth: date, age: int) -> date:
    """The first day on which `age_on(birth, day) == age`.

    Raises ValueError for a negative age or one whose date lies beyond year 9999.
    """
    if age < 0:
        raise ValueError("age must not be negative")
    return birthday_in_year(birth, birth.year + age)


def is_youth(birth: date, today: date) -> bool:
    """청소년 under 청소년 보호법 제2조제1호: counted by birth year (korea-rules.md Age 5)."""
    return today.year - birth.year < YOUTH_PROTECTION_AGE


class AgeBand(StrEnum):
    """The coarse age carried in tokens and accounts (contract.md `age_band`)."""

    UNDER_14 = "under_14"
    YOUTH = "youth"
    ADULT = "adult"


def age_band(birth: date, today: date) -> AgeBand:
    """under_14 (만 < 14), youth (14 ≤ 만 < 19, a minor under civil law) or adult (만 ≥ 19)."""
    age = age_on(birth, today)
    if age < CHILD_CONSENT_AGE:
        return AgeBand.UNDER_14
    if age < ADULT_AGE:
        return AgeBand.YOUTH
    return AgeBand.ADULT


class AgePolicy(Enum):
    """The gates CheckAge can test (contract.md CheckAge)."""

    KR_CHILD_CONSENT = "KR_CHILD_CONSENT"
    KR_ADULT = "KR_ADULT"
    KR_YOUTH_PROTECTION = "KR_YOUTH_PROTECTION"
    MINIMUM_AGE = "MINIMUM_AGE"


@dataclass(frozen=True)
class AgeDecision:
    """The answer to one age gate on one day.

    `changes_on` is the next date strictly after `today` on which `allowed` flips, or None when
    it never will.
    """

    age: int
    allowed: bool
    changes_on: date | None


def _passes(birth: date, policy: AgePolicy, today: date, minimum_age: int) -> bool:
    if policy is AgePolicy.KR_YOUTH_PROTECTION:
        return not is_youth(birth, today)
    if policy is AgePolicy.KR_CHILD_CONSENT:
        return age_on(birth, today) >= CHILD_CONSENT_AGE
    if policy is AgePolicy.KR_ADULT:
        return age_on(birth, today) >= ADULT_AGE
    return age_on(birth, today) >= minimum_age


def _gate_opens_on(birth: date, policy: AgePolicy, minimum_age: int) -> date | None:
    """The first day on which `_passes` holds; None if that day is after 9999-12-31."""
    try:
        if policy is AgePolicy.KR_YOUTH_PROTECTION:
            # 청소년 status ends on 1 January of the year of turning 19, not on the birthday.
            return date(birth.year + YOUTH_PROTECTION_AGE, 1, 1)
        if policy is AgePolicy.KR_CHILD_CONSENT:
            return date_of_age(birth, CHILD_CONSENT_AGE)
        if policy is AgePolicy.KR_ADULT:
            return date_of_age(birth, ADULT_AGE)
        return date_of_age(birth, minimum_age)
    except ValueError:
        return None


def check_age(
    birth: date, policy: AgePolicy, today: date, minimum_age: int | None = None
) -> AgeDecision:
    """Whether someone born on `birth` passes `policy` on `today`, and when that next changes.

    Every gate opens on one day and never closes again, so `changes_on` is None once allowed
    and the opening day otherwise. `minimum_age` is read only for MINIMUM_AGE, where it must be
    0..MAX_MINIMUM_AGE. If the opening day would fall after 9999-12-31 (only for birth years
    beyond 9849) it cannot be represented and `changes_on` is None.
    """
    required = 0
    if policy is AgePolicy.MINIMUM_AGE:
        if minimum_age is None or not 0 <= minimum_age <= MAX_MINIMUM_AGE:
            raise invalid("minimum_age", f"must be between 0 and {MAX_MINIMUM_AGE}")
        required = minimum_age
    allowed = _passes(birth, policy, today, required)
    changes_on = None if allowed else _gate_opens_on(birth, policy, required)
    return AgeDecision(age=age_on(birth, today), allowed=allowed, changes_on=changes_on)


def parse_date(value: str, *, field: str) -> date:
    """A strict "YYYY-MM-DD" calendar date (ASCII digits, nothing around it)."""
    if _ISO_DATE.fullmatch(value) is None:
        raise invalid(field, "must be a date in the form YYYY-MM-DD")
    year, month, day = (int(part) for part in value.split("-"))
    try:
        return date(year, month, day)
    except ValueError:
        raise invalid(field, "is not a real calendar date") from None


def parse_birth_date(value: str, *, today: date, field: str = "birth_date") -> date:
    """A birth date that is a real day from 1900-01-01 to `today` (korea-rules.md Age 7)."""
    birth = parse_date(value, field=field)
    if birth < EARLIEST_BIRTH_DATE:
        raise invalid(field, f"must not be before {EARLIEST_BIRTH_DATE.isoformat()}")
    if birth > today:
        raise invalid(field, "must not be in the future")
    return birth
