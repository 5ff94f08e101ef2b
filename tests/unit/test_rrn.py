"""Tests for RRN detection: each RRN shape caught; phones, dates, most timestamps not."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime

import phonenumbers
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from idservice.domain.rrn import MAX_SEPARATOR_RUN, looks_like_rrn

FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")


@pytest.mark.parametrize(
    "text",
    [
        "900101-1234567",
        "9001011234567",
        "900101 1234567",
        "900101–1234567",  # en dash
        "900101—1234567",  # em dash
        "900101−1234567",  # minus sign
        "900101\u00a01234567",  # no-break space, NFKC → space
        "900101\u30001234567",  # ideographic space, NFKC → space
        "９００１０１－１２３４５６７",  # full width digits and hyphen
        "９００１０１１２３４５６７",
        "𝟗𝟎𝟎𝟏𝟎𝟏-𝟏𝟐𝟑𝟒𝟓𝟔𝟕",  # mathematical bold digits
        "٩٠٠١٠١-١٢٣٤٥٦٧",  # Arabic-Indic digits
        "050505-4123456",  # born 2005
        "991231-2000000",  # invalid check digit: still refused
        "000229-3999999",
        "020230-8123456",  # impossible date 02-30: the loose day test still refuses it
        "851015-5123456",  # foreigner registration number (5-8)
        "my number is 900101-1234567",
        "900101-1234567@example.com",
        "abc9001011234567def",
        "12-900101-1234567",
        "김900101-1234567",
        # Any run of up to four separators that are neither letters nor digits.
        "900101.1234567@example.com",
        "900101_1234567",
        "900101/1234567",
        "900101+1234567",
        "900101=1234567",
        "900101--1234567",
        "900101 - 1234567",
        "900101 -- 1234567",
        "900101:1234567",
        "900101,1234567",
        "900101\n1234567",
        "900101\t1234567",
        "900101・1234567",  # katakana middle dot
        "900101、1234567",  # ideographic comma
        "900101★1234567",
        "900101\u03011234567",  # a combining mark
        "(900101)(1234567)",
        "sandbox:홍길동:900101:1234567",
        # Invisible format characters are dropped: they neither pad nor split.
        "900101\u200b\u200b\u200b\u200b\u200b-1234567",  # zero-width spaces
        "900101\u00ad1234567",  # soft hyphen
        "9001\u200b01-1234\u2060567",  # inside the digits
        # A dash typed in Hangul or CJK input mode is a letter that stands for one.
        "900101ㅡ1234567",  # U+3161 HANGUL LETTER EU
        "900101\u11731234567",  # its NFKC form, HANGUL JUNGSEONG EU
        "900101 ㅡ 1234567@example.com",
        "900101一1234567",  # U+4E00
        "900101ー1234567",  # U+30FC
        "900101ｰ1234567",  # U+FF70
    ],
)
def test_rrn_shapes_are_flagged(text: str) -> None:
    assert looks_like_rrn(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Kim Minsu",
        "김민수",
        # Korean phone numbers in every common form
        "010-1234-5678",
        "01012345678",
        "010 1234 5678",
        "+82 10 1234 5678",
        "+82 10-1234-5678",
        "+821012345678",
        "821012345678",
        "+82 (0)10 1234 5678",
        "011-123-4567",
        "(02) 123-4567",
        "02-1234-5678",
        "031-123-4567",
        "1588-1234",
        # dates
        "2024-01-15",
        "20240115",
        "2024-01-15T09:30:00+09:00",
        "1990.01.01",
        # 13-digit millisecond timestamps whose digits are not a plausible YYMMDD[1-8]
        "1700000000000",  # 2023-11-14: month 00
        "1735689600000",  # 2025-01-01: month 35
        "1767225600000",  # 2026-01-01: month 67
        "1609459200000",  # 2021-01-01: month 09, day 45
        "1710150000000",  # day 15 but the 7th digit is 0
        # near misses
        "900101-0234567",  # 7th digit 0
        "900101-9234567",  # 7th digit 9
        "901301-1234567",  # month 13
        "900001-1234567",  # month 00
        "900132-1234567",  # day 32
        "900100-1234567",  # day 00
        "1900101-1234567",  # 7 digits before the separator
        "900101-12345678",  # 8 digits after
        "900101-123456",  # 6 digits after
        "90010112345678",  # 14 digits
        "900101_12345678",  # 8 digits after a separator
        # Letters end the number: words or an identifier, not one number.
        "900101a1234567",
        "900101번1234567",
        "900101 번 1234567",
        "생년 900101, 사번 1234567",
        "900101x-1234567",
        # Two numbers further apart than four separators are not joined.
        "900101     1234567",
        "900101 --- 1234567",
        "900101.....1234567",
        "123e4567-e89b-12d3-a456-426614174000",  # a UUID
    ],
)
def test_non_rrn_text_is_not_flagged(text: str) -> None:
    assert not looks_like_rrn(text)


def test_some_millisecond_timestamps_collide() -> None:
    """Accepted trade-off: a 13-digit timestamp whose digits read YYMMDD[1-8]… is refused.

    1704067200000 is 2024-01-01T00:00:00Z and reads 17-04-06, 7…. Refusing it is the safe
    side; opaque ids should not be passed through the RRN check (see check_no_rrn callers).
    """
    assert datetime.fromtimestamp(1704067200, UTC) == datetime(2024, 1, 1, tzinfo=UTC)
    assert looks_like_rrn("1704067200000")


def test_most_millisecond_timestamps_do_not_collide() -> None:
    """Over 2024, hour by hour, only the expected few percent of timestamps look like RRNs.

    Month 01–12 (12/100) × day 01–31 (31/100) × digit 1–8 (8/10) ≈ 3% for digits that vary
    freely; the bound is loose so that the test pins the order of magnitude only.
    """
    start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1000
    hour_ms = 3_600_000
    stamps = [str(start + i * hour_ms + 123) for i in range(366 * 24)]
    flagged = sum(looks_like_rrn(s) for s in stamps)
    assert flagged / len(stamps) < 0.10


SEPARATORS = st.sampled_from(["", "-", " ", "–"])
# Characters that are neither letters nor digits and that NFKC leaves alone (so a run keeps its
# length): whitespace, punctuation, symbols, control characters.
SEPARATOR_CHARACTERS = st.characters(
    categories=["Zs", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Cc"]
).filter(lambda c: unicodedata.normalize("NFKC", c) == c)
# Surrounding text that stays digit-free after NFKC ("¼" becomes "1⁄4", "①" becomes "1").
NON_DIGIT_TEXT = st.text(
    st.characters().filter(
        lambda c: not any(unicodedata.category(d) == "Nd" for d in unicodedata.normalize("NFKC", c))
    ),
    max_size=5,
)


@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)),
    gender=st.integers(min_value=1, max_value=8),
    rest=st.integers(min_value=0, max_value=999_999),
    separator=SEPARATORS,
    full_width=st.booleans(),
    before=NON_DIGIT_TEXT,
    after=NON_DIGIT_TEXT,
)
@example(
    birth=date(1990, 1, 1),
    gender=1,
    rest=234567,
    separator="-",
    full_width=False,
    before="",
    after="",
)
def test_every_rrn_with_a_valid_date_is_flagged(
    birth: date,
    gender: int,
    rest: int,
    separator: str,
    full_width: bool,
    before: str,
    after: str,
) -> None:
    rrn = f"{birth:%y%m%d}{separator}{gender}{rest:06d}"
    if full_width:
        rrn = rrn.translate(FULL_WIDTH)
    assert looks_like_rrn(before + rrn + after)


@given(
    separator=st.text(SEPARATOR_CHARACTERS, max_size=MAX_SEPARATOR_RUN),
    before=NON_DIGIT_TEXT,
    after=NON_DIGIT_TEXT,
)
@example(separator="_", before="", after="")
@example(separator=".", before="", after="@example.com")
def test_any_short_run_of_separators_is_flagged(separator: str, before: str, after: str) -> None:
    assert looks_like_rrn(f"{before}900101{separator}1234567{after}")


@given(separator=st.text(SEPARATOR_CHARACTERS, min_size=MAX_SEPARATOR_RUN + 1, max_size=40))
@example(separator=" " * (MAX_SEPARATOR_RUN + 1))
def test_numbers_further_apart_are_not_joined(separator: str) -> None:
    assert not looks_like_rrn(f"900101{separator}1234567")


MOBILE_PREFIXES = st.sampled_from(["10", "11", "16", "17", "18", "19"])


def mobile_forms(prefix: str, middle: str, last: str) -> list[str]:
    """The common ways people write one Korean mobile number."""
    return [
        f"0{prefix}-{middle}-{last}",
        f"0{prefix}{middle}{last}",
        f"0{prefix} {middle} {last}",
        f"0{prefix}.{middle}.{last}",
        f"+82 {prefix} {middle} {last}",
        f"+82 {prefix}-{middle}-{last}",
        f"+82{prefix}{middle}{last}",
        f"+82 0{prefix}-{middle}-{last}",
        f"82{prefix}{middle}{last}",
    ]


@given(
    prefix=MOBILE_PREFIXES,
    middle=st.from_regex(r"[0-9]{3,4}", fullmatch=True),
    last=st.from_regex(r"[0-9]{4}", fullmatch=True),
)
def test_valid_korean_mobile_numbers_are_never_flagged(prefix: str, middle: str, last: str) -> None:
    forms = mobile_forms(prefix, middle, last)
    parsed = phonenumbers.parse(forms[0], "KR")
    if phonenumbers.is_valid_number(parsed):
        for form in forms:
            assert not looks_like_rrn(form), form
            assert not looks_like_rrn(form.translate(FULL_WIDTH)), form


@given(
    when=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)),
)
def test_iso_dates_and_datetimes_are_never_flagged(when: datetime) -> None:
    assert not looks_like_rrn(when.date().isoformat())
    assert not looks_like_rrn(when.isoformat())
    assert not looks_like_rrn(f"{when:%Y%m%d}")


@given(st.text())
def test_arbitrary_text_gives_a_bool(text: str) -> None:
    assert isinstance(looks_like_rrn(text), bool)
