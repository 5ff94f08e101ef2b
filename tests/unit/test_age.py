"""Tests for the Korean age rules: korea-rules.md Age 1-7 examples, properties over 1900..2200."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from idservice.domain.age import (
    ADULT_AGE,
    CHILD_CONSENT_AGE,
    EARLIEST_BIRTH_DATE,
    SEOUL,
    YOUTH_PROTECTION_AGE,
    AgeBand,
    AgeDecision,
    AgePolicy,
    age_band,
    age_on,
    birthday_in_year,
    check_age,
    date_of_age,
    is_youth,
    parse_birth_date,
    parse_date,
    seoul_today,
)
from idservice.domain.errors import Reason, ValidationFailed

# Hypothesis' per-example deadline is a wall-clock assertion; the project forbids those.
PROPERTY = settings(deadline=None, max_examples=150)

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2200, 12, 31)


# --- An independent formulation of the rules, written differently from the module ----------


def _is_leap(year: int) -> bool:
    return year % 400 == 0 or (year % 4 == 0 and year % 100 != 0)


def _anniversary_md(birth: date, year: int) -> tuple[int, int]:
    """(month, day) on which the year of age is gained in `year`; 민법 제160조③ for 29 Feb."""
    if (birth.month, birth.day) == (2, 29) and not _is_leap(year):
        return (3, 1)
    return (birth.month, birth.day)


def reference_age(birth: date, today: date) -> int:
    """Count the birthdays that have passed, one year at a time."""
    passed = 0
    for year in range(birth.year + 1, today.year + 1):
        if year < today.year or (today.month, today.day) >= _anniversary_md(birth, year):
            passed += 1
    return passed


def reference_is_youth(birth: date, today: date) -> bool:
    """청소년 보호법 제2조제1호 as worded: under 만 19, unless 1 January of the year of turning 19
    has been reached."""
    turns_19_in = birth.year + 19
    return reference_age(birth, today) < 19 and today < date(turns_19_in, 1, 1)


def reference_allowed(birth: date, policy: AgePolicy, today: date, minimum_age: int) -> bool:
    age = reference_age(birth, today)
    if policy is AgePolicy.KR_CHILD_CONSENT:
        return age >= 14
    if policy is AgePolicy.KR_ADULT:
        return age >= 19
    if policy is AgePolicy.KR_YOUTH_PROTECTION:
        return not reference_is_youth(birth, today)
    return age >= minimum_age


# --- Strategies ------------------------------------------------------------------------------

leap_days = st.integers(1900, 2200).filter(_is_leap).map(lambda y: date(y, 2, 29))
births = st.one_of(st.dates(FIRST_DAY, LAST_DAY), leap_days)


@st.composite
def birth_and_today(draw: st.DrawFn) -> tuple[date, date]:
    """A birth date and a day on or after it, often within a few days of a birthday or 1 Jan."""
    birth = draw(births)
    near = draw(st.sampled_from(["any", "birthday", "new_year"]))
    if near == "any":
        today = draw(st.dates(birth, LAST_DAY))
    else:
        year = draw(st.integers(birth.year, 2200))
        if near == "birthday":
            # 28 Feb + 1 lands on 29 Feb or 1 Mar, so both readings of a leap birthday get hit.
            day = 28 if (birth.month, birth.day) == (2, 29) else birth.day
            anchor = date(year, birth.month, day)
        else:
            anchor = date(year, 1, 1)
        today = anchor + timedelta(days=draw(st.integers(-3, 3)))
        today = min(max(today, birth), LAST_DAY)
    return birth, today


# --- Age 1: full years, gained at 00:00 on the birthday --------------------------------------


@pytest.mark.parametrize(
    ("birth", "today", "expected"),
    [
        (date(2000, 5, 10), date(2000, 5, 10), 0),
        (date(2000, 5, 10), date(2026, 5, 9), 25),
        (date(2000, 5, 10), date(2026, 5, 10), 26),
        (date(2000, 5, 10), date(2026, 12, 31), 26),
        (date(1999, 12, 31), date(2026, 1, 1), 26),
        (date(1900, 1, 1), date(2200, 12, 31), 300),
    ],
)
def test_age_counts_full_years_gained_on_the_birthday(
    birth: date, today: date, expected: int
) -> None:
    assert age_on(birth, today) == expected


# --- Age 2: 29 February -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 2, 28), 13),  # korea-rules.md Age 2
        (date(2026, 3, 1), 14),  # korea-rules.md Age 2
        (date(2028, 2, 28), 15),
        (date(2028, 2, 29), 16),  # korea-rules.md Age 2
        (date(2028, 3, 1), 16),
        (date(2100, 2, 28), 87),  # 2100 is not a leap year
        (date(2100, 3, 1), 88),
    ],
)
def test_born_29_february_gains_a_year_on_1_march_in_non_leap_years(
    today: date, expected: int
) -> None:
    assert age_on(date(2012, 2, 29), today) == expected


@pytest.mark.parametrize(
    ("year", "expected"),
    [(2026, date(2026, 3, 1)), (2028, date(2028, 2, 29)), (2100, date(2100, 3, 1))],
)
def test_birthday_in_year_for_29_february(year: int, expected: date) -> None:
    assert birthday_in_year(date(2012, 2, 29), year) == expected


def test_date_of_age_for_29_february() -> None:
    assert date_of_age(date(2012, 2, 29), 14) == date(2026, 3, 1)
    assert date_of_age(date(2012, 2, 29), 16) == date(2028, 2, 29)
    assert date_of_age(date(2012, 2, 29), 0) == date(2012, 2, 29)


def test_date_of_age_refuses_a_negative_age() -> None:
    with pytest.raises(ValueError, match="negative"):
        date_of_age(date(2012, 2, 29), -1)


def test_age_is_negative_before_birth() -> None:
    assert age_on(date(2012, 2, 29), date(2012, 2, 28)) == -1


# --- Age 3: today is the calendar date in Seoul -------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 3, 1, 15, 30, tzinfo=UTC), date(2026, 3, 2)),  # korea-rules.md Age 3
        (datetime(2026, 3, 1, 14, 59, 59, tzinfo=UTC), date(2026, 3, 1)),
        (datetime(2026, 3, 1, 15, 0, tzinfo=UTC), date(2026, 3, 2)),
        (datetime(2026, 3, 2, 0, 0, tzinfo=SEOUL), date(2026, 3, 2)),
        (datetime(2026, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=-5))), date(2026, 3, 2)),
    ],
)
def test_seoul_today(now: datetime, expected: date) -> None:
    assert seoul_today(now) == expected


def test_seoul_today_decides_the_age_at_the_utc_day_boundary() -> None:
    now = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    birth = date(2012, 3, 2)
    assert age_on(birth, now.date()) == 13  # the UTC date would be wrong
    assert age_on(birth, seoul_today(now)) == 14
    assert check_age(birth, AgePolicy.KR_CHILD_CONSENT, seoul_today(now)).allowed


def test_seoul_today_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        seoul_today(datetime(2026, 3, 1, 15, 30))  # naive on purpose


@PROPERTY
@given(st.datetimes(datetime(1990, 1, 1), datetime(2200, 12, 31), timezones=st.just(UTC)))
def test_seoul_today_is_utc_plus_nine(now: datetime) -> None:
    # Seoul has kept UTC+9 without daylight saving since 1988.
    assert seoul_today(now) == (now + timedelta(hours=9)).date()


# --- Age 4-6: gates and bands -------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "today", "expected"),
    [
        (date(2012, 3, 2), date(2026, 3, 1), AgeBand.UNDER_14),
        (date(2012, 3, 2), date(2026, 3, 2), AgeBand.YOUTH),
        (date(2012, 2, 29), date(2026, 2, 28), AgeBand.UNDER_14),
        (date(2012, 2, 29), date(2026, 3, 1), AgeBand.YOUTH),
        (date(2007, 3, 2), date(2026, 3, 1), AgeBand.YOUTH),
        (date(2007, 3, 2), date(2026, 3, 2), AgeBand.ADULT),
    ],
)
def test_age_band(birth: date, today: date, expected: AgeBand) -> None:
    assert age_band(birth, today) == expected


def test_age_band_values_are_the_contract_strings() -> None:
    assert [band.value for band in AgeBand] == ["under_14", "youth", "adult"]


def test_constants() -> None:
    assert (CHILD_CONSENT_AGE, ADULT_AGE, YOUTH_PROTECTION_AGE) == (14, 19, 19)
    assert date(1900, 1, 1) == EARLIEST_BIRTH_DATE


@pytest.mark.parametrize(
    ("birth", "today", "expected"),
    [
        # Born 2007-12-31: 만 18 on 2026-01-01 yet no longer a 청소년 (korea-rules.md Age 5).
        (date(2007, 12, 31), date(2025, 12, 31), True),
        (date(2007, 12, 31), date(2026, 1, 1), False),
        (date(2007, 1, 1), date(2025, 12, 31), True),
        (date(2007, 1, 1), date(2026, 1, 1), False),
    ],
)
def test_is_youth_counts_by_birth_year(birth: date, today: date, expected: bool) -> None:
    assert is_youth(birth, today) is expected


@pytest.mark.parametrize(
    ("birth", "policy", "today", "minimum_age", "expected"),
    [
        # Age 6: under 만 14 needs a guardian; 14 may consent alone.
        (
            date(2012, 2, 29),
            AgePolicy.KR_CHILD_CONSENT,
            date(2026, 2, 28),
            None,
            AgeDecision(13, False, date(2026, 3, 1)),
        ),
        (
            date(2012, 2, 29),
            AgePolicy.KR_CHILD_CONSENT,
            date(2026, 3, 1),
            None,
            AgeDecision(14, True, None),
        ),
        # Age 4: 성년 at 만 19.
        (
            date(2007, 3, 2),
            AgePolicy.KR_ADULT,
            date(2026, 3, 1),
            None,
            AgeDecision(18, False, date(2026, 3, 2)),
        ),
        (
            date(2007, 3, 2),
            AgePolicy.KR_ADULT,
            date(2026, 3, 2),
            None,
            AgeDecision(19, True, None),
        ),
        # Age 5: the 청소년 gate opens on 1 January, before the 19th birthday.
        (
            date(2007, 12, 31),
            AgePolicy.KR_YOUTH_PROTECTION,
            date(2025, 6, 1),
            None,
            AgeDecision(17, False, date(2026, 1, 1)),
        ),
        (
            date(2007, 12, 31),
            AgePolicy.KR_YOUTH_PROTECTION,
            date(2026, 1, 1),
            None,
            AgeDecision(18, True, None),
        ),
        (
            date(2010, 6, 15),
            AgePolicy.MINIMUM_AGE,
            date(2026, 6, 14),
            16,
            AgeDecision(15, False, date(2026, 6, 15)),
        ),
        (
            date(2010, 6, 15),
            AgePolicy.MINIMUM_AGE,
            date(2026, 6, 15),
            16,
            AgeDecision(16, True, None),
        ),
        (
            date(2010, 6, 15),
            AgePolicy.MINIMUM_AGE,
            date(2010, 6, 15),
            0,
            AgeDecision(0, True, None),
        ),
        # Birth after `today` (an as_of in the past): not allowed yet, even at minimum age 0.
        (
            date(2010, 6, 15),
            AgePolicy.MINIMUM_AGE,
            date(2010, 6, 14),
            0,
            AgeDecision(-1, False, date(2010, 6, 15)),
        ),
        # minimum_age is ignored by the other policies (proto3 sends 0 when unset).
        (
            date(2012, 3, 2),
            AgePolicy.KR_CHILD_CONSENT,
            date(2026, 3, 1),
            0,
            AgeDecision(13, False, date(2026, 3, 2)),
        ),
    ],
)
def test_check_age_examples(
    birth: date, policy: AgePolicy, today: date, minimum_age: int | None, expected: AgeDecision
) -> None:
    assert check_age(birth, policy, today, minimum_age) == expected


@pytest.mark.parametrize("minimum_age", [None, -1, 151, 2**31 - 1])
def test_check_age_refuses_a_bad_minimum_age(minimum_age: int | None) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_age(date(2000, 1, 1), AgePolicy.MINIMUM_AGE, date(2026, 1, 1), minimum_age)
    assert caught.value.reason is Reason.VALIDATION_FAILED
    assert [v.field for v in caught.value.violations] == ["minimum_age"]


def test_check_age_beyond_the_last_representable_date() -> None:
    decision = check_age(date(9990, 1, 1), AgePolicy.MINIMUM_AGE, date(9999, 12, 31), 150)
    assert decision == AgeDecision(age=9, allowed=False, changes_on=None)


# --- Properties against the independent formulation ----------------------------------------


@PROPERTY
@given(birth_and_today())
@example((date(2012, 2, 29), date(2026, 2, 28)))
@example((date(2012, 2, 29), date(2026, 3, 1)))
@example((date(2012, 2, 29), date(2028, 2, 29)))
@example((date(1900, 1, 1), date(2200, 12, 31)))
def test_age_on_matches_counting_birthdays(pair: tuple[date, date]) -> None:
    birth, today = pair
    assert age_on(birth, today) == reference_age(birth, today)


@PROPERTY
@given(births, st.integers(0, 300))
def test_date_of_age_is_the_first_day_of_that_age(birth: date, age: int) -> None:
    first = date_of_age(birth, age)
    assert reference_age(birth, first) == age
    if age > 0:
        assert reference_age(birth, first - timedelta(days=1)) == age - 1
    assert birthday_in_year(birth, birth.year + age) == first


@PROPERTY
@given(birth_and_today())
def test_is_youth_matches_the_statute_wording(pair: tuple[date, date]) -> None:
    birth, today = pair
    assert is_youth(birth, today) is reference_is_youth(birth, today)


@PROPERTY
@given(birth_and_today())
def test_age_band_matches_reference(pair: tuple[date, date]) -> None:
    birth, today = pair
    age = reference_age(birth, today)
    expected = "under_14" if age < 14 else "youth" if age < 19 else "adult"
    assert age_band(birth, today).value == expected


@PROPERTY
@given(birth_and_today(), st.sampled_from(list(AgePolicy)), st.integers(0, 150))
@example((date(2012, 2, 29), date(2026, 2, 28)), AgePolicy.KR_CHILD_CONSENT, 0)
@example((date(2007, 12, 31), date(2025, 12, 31)), AgePolicy.KR_YOUTH_PROTECTION, 0)
@example((date(2007, 12, 31), date(2026, 1, 1)), AgePolicy.KR_ADULT, 0)
def test_check_age_matches_reference_and_changes_on_is_the_next_flip(
    pair: tuple[date, date], policy: AgePolicy, minimum_age: int
) -> None:
    birth, today = pair
    decision = check_age(birth, policy, today, minimum_age)
    assert decision.age == reference_age(birth, today)
    assert decision.allowed is reference_allowed(birth, policy, today, minimum_age)
    if decision.allowed:
        assert decision.changes_on is None
        # Once open the gate stays open: spot-check the far future.
        far = date(today.year + 300, 1, 1)
        assert reference_allowed(birth, policy, far, minimum_age)
        return
    flip = decision.changes_on
    assert flip is not None
    assert flip > today
    assert reference_allowed(birth, policy, flip, minimum_age)
    before = flip - timedelta(days=1)
    assert not reference_allowed(birth, policy, before, minimum_age)
    assert check_age(birth, policy, flip, minimum_age).allowed
    assert not check_age(birth, policy, before, minimum_age).allowed


# --- Age 7: parsing birth dates --------------------------------------------------------------

TODAY = date(2026, 3, 2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2012-02-29", date(2012, 2, 29)),
        ("1900-01-01", date(1900, 1, 1)),
        ("2026-03-02", TODAY),
    ],
)
def test_parse_birth_date_accepts(value: str, expected: date) -> None:
    assert parse_birth_date(value, today=TODAY) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("2026-03-03", "future"),
        ("2100-01-01", "future"),
        ("1899-12-31", "1900-01-01"),
        ("0001-01-01", "1900-01-01"),
        ("2013-02-29", "calendar"),
        ("2100-02-29", "calendar"),
        ("2012-04-31", "calendar"),
        ("2012-00-10", "calendar"),
        ("2012-13-01", "calendar"),
        ("0000-01-01", "calendar"),
        ("2012-2-29", "YYYY-MM-DD"),
        ("20120229", "YYYY-MM-DD"),
        ("2012/02/29", "YYYY-MM-DD"),
        (" 2012-02-29", "YYYY-MM-DD"),
        ("2012-02-29 ", "YYYY-MM-DD"),
        ("2012-02-29\n", "YYYY-MM-DD"),
        ("2012-02-29T00:00", "YYYY-MM-DD"),
        ("+2012-02-29", "YYYY-MM-DD"),
        ("12012-02-29", "YYYY-MM-DD"),
        ("２０１２-02-29", "YYYY-MM-DD"),  # full-width digits
        ("٢٠١٢-02-29", "YYYY-MM-DD"),  # Arabic-Indic digits
        ("", "YYYY-MM-DD"),
    ],
)
def test_parse_birth_date_rejects(value: str, why: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_birth_date(value, today=TODAY, field="guardian.birth_date")
    (violation,) = caught.value.violations
    assert violation.field == "guardian.birth_date"
    assert why in violation.description


def test_parse_date_has_no_range_rule() -> None:
    assert parse_date("1800-01-01", field="as_of") == date(1800, 1, 1)
    assert parse_date("9999-12-31", field="as_of") == date(9999, 12, 31)
    with pytest.raises(ValidationFailed) as caught:
        parse_date("2026-02-29", field="as_of")
    assert [v.field for v in caught.value.violations] == ["as_of"]


def _strict_shape(value: str) -> bool:
    digits = "0123456789"
    return (
        len(value) == 10
        and value[4] == "-"
        and value[7] == "-"
        and all(value[i] in digits for i in (0, 1, 2, 3, 5, 6, 8, 9))
    )


date_like_text = st.one_of(
    st.text(max_size=14),
    st.text(alphabet="0123456789-/ T:+\n٢２", max_size=14),
    st.dates(date(1, 1, 1), date(9999, 12, 31)).map(date.isoformat),
    st.tuples(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99)).map(
        lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}"
    ),
)


@PROPERTY
@given(date_like_text)
def test_parse_birth_date_raises_only_validation_failed(value: str) -> None:
    try:
        parsed = parse_birth_date(value, today=TODAY)
    except ValidationFailed as error:
        (violation,) = error.violations
        assert violation.field == "birth_date"
        if _strict_shape(value):
            # A birth date is personal data: the error never echoes it.
            assert value not in str(error)
            assert value not in violation.description
            year, month, day = (int(part) for part in value.split("-"))
            try:
                real = date(year, month, day)
            except ValueError:
                return
            assert not FIRST_DAY <= real <= TODAY
        return
    assert _strict_shape(value)
    assert parsed.isoformat() == value
    assert FIRST_DAY <= parsed <= TODAY


@PROPERTY
@given(st.text(max_size=14).filter(lambda v: not _strict_shape(v)))
def test_parse_date_rejects_every_other_shape(value: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_date(value, field="as_of")


@PROPERTY
@given(st.dates(FIRST_DAY, LAST_DAY))
def test_parse_birth_date_round_trips(day: date) -> None:
    assert parse_birth_date(day.isoformat(), today=LAST_DAY) == day
