"""Detects text shaped like a resident registration number (주민등록번호) so it can be refused."""

from __future__ import annotations

import re
import unicodedata

# korea-rules.md "Identity verification, CI and DI" 1 (정보통신망법 제23조의2; 개인정보 보호법
# 제24조의2): the service never collects a 주민등록번호, so anything shaped like one is refused,
# whatever its check digit. The shape is YYMMDD, an optional separator, then seven digits whose
# first (the gender/century digit) is 1–8. The date test is deliberately loose (any day 01–31 in
# any month): refusing an impossible date such as 0231 costs nothing, while a miss would store an
# RRN. Requiring a plausible date is what keeps phone numbers and most timestamps from matching.
#
# The separator is any run of up to MAX_SEPARATOR_RUN characters that are neither letters nor
# digits: whitespace, punctuation and symbols of any script ("-", "_", ".", "/", "+", "=", "--",
# " - ", a line break). Letters end the number: text such as "900101번 1234567" or a hex or
# base64 identifier holding digit runs reads as words and ids, not as one number, and counting
# letters would refuse random identifiers far more often. The bound keeps two unrelated numbers
# further apart (a column layout, a list) from being joined. Invisible format characters
# (zero-width spaces, soft hyphens, direction marks) are dropped before matching, so they can
# neither pad the separator past the bound nor split the digits.
MAX_SEPARATOR_RUN = 4
# Letters typed for a dash where an input method is in Hangul or CJK mode: the vowel ㅡ (U+3161;
# NFKC makes it U+1173), the ideograph 一 and the prolonged sound mark ー (U+30FC, half-width
# U+FF70). Between the two halves of an RRN they are its hyphen, so they are read as one.
_DASH_LETTERS = str.maketrans(dict.fromkeys("\u1173\u4e00\u30fc", "-"))
_RRN = re.compile(
    r"(?<![0-9])"
    r"[0-9]{2}"  # YY: every year is plausible
    r"(?:0[1-9]|1[0-2])"  # MM
    r"(?:0[1-9]|[12][0-9]|3[01])"  # DD
    rf"[\W_]{{0,{MAX_SEPARATOR_RUN}}}"  # neither letters nor digits (\W keeps out both)
    r"[1-8][0-9]{6}"
    r"(?![0-9])"
)


def _ascii_digits(text: str) -> str:
    """NFKC (full-width digits and dashes), letters typed for a dash read as one, every other
    decimal digit mapped to ASCII, and invisible format characters (Unicode category Cf)
    dropped."""
    # NFKC folds full-width and mathematical digits but not other scripts' digits (e.g. "٢"),
    # and someone pasting an RRN in those is still giving us an RRN.
    folded = unicodedata.normalize("NFKC", text)
    if folded.isascii():
        return folded
    folded = folded.translate(_DASH_LETTERS)
    if folded.isascii():
        return folded
    return "".join(
        str(unicodedata.decimal(ch)) if category == "Nd" else ch
        for ch in folded
        if (category := unicodedata.category(ch)) != "Cf"
    )


def looks_like_rrn(text: str) -> bool:
    """True when `text` contains something shaped like a 주민등록번호 (YYMMDD-NNNNNNN).

    With or without a separator (up to MAX_SEPARATOR_RUN characters that are neither letters
    nor digits), in any digits Unicode knows, valid check digit or not. Phone numbers in their
    Korean forms and ISO dates never match (no run of 6 + 7 or 13 digits); 13-digit millisecond
    timestamps match only when their digits happen to form YYMMDD[1-8]…, which is rare and errs
    on the side of refusing.
    """
    return _RRN.search(_ascii_digits(text)) is not None
