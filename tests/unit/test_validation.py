"""Tests for field validation and masking: contract examples, Korean forms, and arbitrary text."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from confusable_homoglyphs import categories as unicode_scripts
from hypothesis import given, settings
from hypothesis import strategies as st

from idservice.domain.errors import FieldViolation, Reason, ValidationFailed
from idservice.domain.masking import mask_email, mask_name
from idservice.service_layer.validation import (
    _SCRIPTLESS,
    CONFUSABLE_EMAIL_DESCRIPTION,
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PASSWORD_LENGTH,
    MAX_PHONE_INPUT_LENGTH,
    MIN_PASSWORD_LENGTH,
    RRN_DESCRIPTION,
    Violations,
    check_no_rrn,
    email_lookup_key,
    login_email_key,
    normalize_email,
    normalize_phone,
    validate_name,
    validate_password,
)

GUESSABLE = (
    "is too easy to guess: use a longer passphrase of unrelated words, without your name or email"
)
# Every description the validators may give. A description outside this set could be echoing
# the rejected value, which may be personal data.
KNOWN_DESCRIPTIONS = frozenset(
    {
        "is required",
        f"must be at most {MAX_EMAIL_LENGTH} characters",
        "must be a valid email address",
        CONFUSABLE_EMAIL_DESCRIPTION,
        f"must be at most {MAX_PHONE_INPUT_LENGTH} characters",
        "may contain only digits, spaces, +, -, ( and )",
        "must be a valid phone number",
        "must be a Korean mobile phone number",
        f"must be at most {MAX_NAME_LENGTH} characters",
        "must not contain digits",
        "may contain only letters, spaces, and . - ' ·",
        "must contain a letter",
        f"must be at least {MIN_PASSWORD_LENGTH} characters",
        f"must be at most {MAX_PASSWORD_LENGTH} characters",
        GUESSABLE,
    }
)


def violation_of(call: Callable[[], object]) -> FieldViolation:
    """The single violation `call` fails with."""
    with pytest.raises(ValidationFailed) as caught:
        call()
    assert caught.value.reason is Reason.VALIDATION_FAILED
    (violation,) = caught.value.violations
    assert violation.description in KNOWN_DESCRIPTIONS
    return violation


# --- masking (contract §2 "Masked email", GetConsentRequest "masked child name") ---------------


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("hong@example.com", "ho***@example.com"),
        ("ho@example.com", "ho***@example.com"),
        ("a@x.com", "a***@x.com"),
        ("홍길동@예시.한국", "홍길***@예시.한국"),
        ('"a@b"@example.com', '"a***@example.com'),  # the last @ separates the domain
        ("not-an-address", "***"),
    ],
)
def test_mask_email(email: str, masked: str) -> None:
    assert mask_email(email) == masked


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("김민수", "김*수"),
        ("이준", "이*"),
        ("김", "*"),
        ("남궁민수", "남**수"),
        ("John Smith", "J********h"),
        ("Jo", "J*"),
        (unicodedata.normalize("NFD", "김민수"), "김*수"),
        ("", ""),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@given(st.text(min_size=3))
def test_mask_name_hides_everything_but_the_ends(name: str) -> None:
    chars = unicodedata.normalize("NFC", name.strip())
    masked = mask_name(name)
    assert len(masked) == len(chars)
    if len(chars) >= 3:
        assert masked[1:-1] == "*" * (len(chars) - 2)


# --- email --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("hong@example.com", "hong@example.com"),
        ("Ho@Example.COM", "Ho@example.com"),
        ("  hong@example.com\n", "hong@example.com"),
        ("홍길동@예시.한국", "홍길동@예시.한국"),
        ("a@XN--9N2BP8Q.XN--3E0B707E", "a@실례.한국"),
        ("a@ＥＸＡＭＰＬＥ.com", "a@example.com"),
        ("first.last+tag@sub.example.co.kr", "first.last+tag@sub.example.co.kr"),
    ],
)
def test_normalize_email_accepts(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "description"),
    [
        ("", "is required"),
        ("   ", "is required"),
        ("plainaddress", "must be a valid email address"),
        ("a@b", "must be a valid email address"),
        ("user@localhost", "must be a valid email address"),
        ("a@example.test", "must be a valid email address"),
        ("Hong <hong@example.com>", "must be a valid email address"),
        ("a@[192.0.2.1]", "must be a valid email address"),
        ("a b@example.com", "must be a valid email address"),
        ("a\x00b@example.com", "must be a valid email address"),
        ("a@" + "b" * 250 + ".com", f"must be at most {MAX_EMAIL_LENGTH} characters"),
        # RFC 5321 §4.5.3.1.1: a local part holds at most 64 characters.
        ("a" * 65 + "@example.com", "must be a valid email address"),
        ("가" * 65 + "@example.com", "must be a valid email address"),
    ],
)
def test_normalize_email_rejects(raw: str, description: str) -> None:
    assert violation_of(lambda: normalize_email(raw)) == FieldViolation("email", description)


def test_a_local_part_of_64_characters_is_accepted_and_a_longer_one_still_signs_in() -> None:
    assert normalize_email("a" * 64 + "@example.com") == "a" * 64 + "@example.com"
    # An address stored before the limit was enforced is still looked up at login.
    longer = "A" * 65 + "@Example.com"
    assert normalize_email(longer, strict=False) == "A" * 65 + "@example.com"
    assert login_email_key(longer) == email_lookup_key(normalize_email(longer, strict=False))
    assert login_email_key("가" * 65 + "@example.com") == "가" * 65 + "@example.com"


def test_normalize_email_names_the_given_field() -> None:
    violation = violation_of(lambda: normalize_email("nope", field="guardian.email"))
    assert violation.field == "guardian.email"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Hong@Example.com", "hong@example.com"),
        ("HONG@EXAMPLE.COM", "hong@example.com"),
        ("Straße@example.com", "STRASSE@example.com"),
    ],
)
def test_email_lookup_key_is_case_insensitive(a: str, b: str) -> None:
    assert email_lookup_key(normalize_email(a)) == email_lookup_key(normalize_email(b))


def test_email_lookup_key_is_nfc() -> None:
    key = email_lookup_key(normalize_email("ǰ@example.com"))
    assert unicodedata.is_normalized("NFC", key)


FULL_WIDTH_ASCII = {code: code + 0xFEE0 for code in range(ord("!"), ord("~") + 1)}


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("ｈｏｎｇ@example.com", "hong@example.com"),  # full-width local part
        ("ｈｏｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "hong@example.com"),  # all of it full-width
        ("\u3000hong@example.com", "hong@example.com"),  # ideographic space
        ("ﬁle@example.com", "file@example.com"),  # ligature
        ("ⓗong@example.com", "hong@example.com"),  # circled letter
    ],
)
def test_normalize_email_folds_compatibility_forms(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize(
    "raw",
    [
        "gildong.kim@example.com",
        "홍길동@example.com",  # Hangul only
        "홍길동.kim@example.com",  # Hangul beside Latin: nothing looks alike
        "gildong2024홍@example.com",
        "김金@example.com",  # Hangul and Han
        "иван@example.com",  # Cyrillic only
        "αλέξης@example.com",  # Greek only
        "hong_1.0-x+y@example.com",  # digits and punctuation belong to no script
        "홍길동@예시.한국",
    ],
)
def test_normalize_email_accepts_one_script_or_scripts_that_do_not_look_alike(raw: str) -> None:
    assert normalize_email(raw) == unicodedata.normalize("NFKC", raw)


@pytest.mark.parametrize(
    "raw",
    [
        "g\u0456ldong@example.com",  # Cyrillic і among Latin letters
        "p\u0430ypal@example.com",  # Cyrillic а
        "h\u03bfng@example.com",  # Greek ο
        "\u0438v\u0430\u043d@example.com",  # Latin v among Cyrillic letters
        "ｇ\u0456ｌｄｏｎｇ@example.com",  # full-width, then still mixed
        "hong@ex\u0430mple.com",  # a domain label mixing Latin and Cyrillic
    ],
)
def test_normalize_email_refuses_look_alike_letters_of_mixed_scripts(raw: str) -> None:
    violation = violation_of(lambda: normalize_email(raw))
    assert violation == FieldViolation("email", CONFUSABLE_EMAIL_DESCRIPTION)


def test_ascii_letters_are_one_script_so_ascii_never_mixes() -> None:
    # normalize_email skips the script check for ASCII: every ASCII letter is Latin, and
    # digits and punctuation belong to no script.
    letters = "".join(
        ch for ch in map(chr, range(128)) if unicode_scripts.alias(ch).upper() not in _SCRIPTLESS
    )
    assert unicode_scripts.unique_aliases(letters) == {"LATIN"}


def test_full_width_copy_has_the_original_lookup_key() -> None:
    original = "Gildong.Kim+tag@Example.com"
    copy = original.translate(FULL_WIDTH_ASCII)
    assert copy != original
    assert email_lookup_key(normalize_email(copy)) == email_lookup_key(normalize_email(original))


def test_email_lookup_key_of_ascii_is_its_lower_case() -> None:
    # Keys stored before NFKC was added stay valid for ASCII addresses.
    assert email_lookup_key(normalize_email("Hong.Gil-Dong@Example.COM")) == (
        "hong.gil-dong@example.com"
    )


def test_email_lookup_key_is_nfkc() -> None:
    assert email_lookup_key("ǰ@example.com") == unicodedata.normalize("NFKC", "ǰ@example.com")
    assert unicodedata.is_normalized("NFKC", email_lookup_key(normalize_email("Ǳ@example.com")))


# --- phone --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("010-1234-5678", "+821012345678"),
        ("01012345678", "+821012345678"),
        ("010 1234 5678", "+821012345678"),
        ("010.1234.5678", "+821012345678"),
        ("+82 10-1234-5678", "+821012345678"),
        ("+82 10 1234 5678", "+821012345678"),
        ("+821012345678", "+821012345678"),
        ("+82 (0)10 1234 5678", "+821012345678"),
        ("+82 010-1234-5678", "+821012345678"),
        ("０１０－１２３４－５６７８", "+821012345678"),
        ("010–1234–5678", "+821012345678"),
        (" 010-1234-5678 ", "+821012345678"),
        ("011-123-4567", "+82111234567"),
        ("(02) 123-4567", "+8221234567"),
        ("02-1234-5678", "+82212345678"),
        ("031-123-4567", "+82311234567"),
        ("+1 650-253-0000", "+16502530000"),
    ],
)
def test_normalize_phone_accepts(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize(
    ("raw", "description"),
    [
        ("", "is required"),
        ("  ", "is required"),
        ("12345", "must be a valid phone number"),
        ("010-1234", "must be a valid phone number"),
        ("9001011234567", "must be a valid phone number"),
        ("+82", "must be a valid phone number"),
        ("010-ABCD-EFGH", "may contain only digits, spaces, +, -, ( and )"),
        ("tel:+82-10-1234-5678", "may contain only digits, spaces, +, -, ( and )"),
        ("010-1234-5678 ext. 9", "may contain only digits, spaces, +, -, ( and )"),
        ("010-1234-5678#9", "may contain only digits, spaces, +, -, ( and )"),
        ("0" * 33, f"must be at most {MAX_PHONE_INPUT_LENGTH} characters"),
    ],
)
def test_normalize_phone_rejects(raw: str, description: str) -> None:
    assert violation_of(lambda: normalize_phone(raw)) == FieldViolation("phone_number", description)


@pytest.mark.parametrize(
    ("raw", "mobile"),
    [
        ("010-1234-5678", True),
        ("011-123-4567", True),
        ("019-1234-5678", True),
        ("+82 10-1234-5678", True),
        ("02-123-4567", False),
        ("031-123-4567", False),
        ("070-1234-5678", False),
        ("0505-123-4567", False),
        ("080-123-4567", False),
        ("1588-1234", False),
        ("012-1234-5678", False),  # M2M numbers
        ("+81 90-1234-5678", False),  # a mobile, but no Korean verification reaches it
        ("+1 650-253-0000", False),
    ],
)
def test_normalize_phone_mobile_only(raw: str, mobile: bool) -> None:
    call = lambda: normalize_phone(raw, field="guardian.phone_number", mobile_only=True)  # noqa: E731
    if mobile:
        assert call() == normalize_phone(raw)
    else:
        assert violation_of(call) == FieldViolation(
            "guardian.phone_number", "must be a Korean mobile phone number"
        )


@given(
    prefix=st.sampled_from(["10", "11", "16", "17", "18", "19"]),
    middle=st.from_regex(r"[0-9]{3,4}", fullmatch=True),
    last=st.from_regex(r"[0-9]{4}", fullmatch=True),
)
def test_every_korean_mobile_form_gives_the_same_e164(prefix: str, middle: str, last: str) -> None:
    forms = [
        f"0{prefix}-{middle}-{last}",
        f"0{prefix}{middle}{last}",
        f"0{prefix} {middle} {last}",
        f"+82 {prefix} {middle} {last}",
        f"+82 {prefix}-{middle}-{last}",
        f"+82{prefix}{middle}{last}",
    ]
    try:
        e164 = normalize_phone(forms[0])
    except ValidationFailed:
        return  # not an allocated range; the other forms are the same number
    assert e164 == f"+82{prefix}{middle}{last}"
    assert [normalize_phone(form) for form in forms] == [e164] * len(forms)


# --- name ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("김민수", "김민수"),
        ("남궁민수", "남궁민수"),
        (unicodedata.normalize("NFD", "김민수"), "김민수"),
        ("  Kim   Minsu ", "Kim Minsu"),
        ("Kim\u3000Minsu", "Kim Minsu"),  # ideographic space from a Korean IME
        ("Kim Min-su", "Kim Min-su"),
        ("O'Brien", "O'Brien"),
        ("O’Brien", "O'Brien"),
        ("'t Hooft", "'t Hooft"),
        ("마이클·조던", "마이클·조던"),
        ("J. R. R. Tolkien", "J. R. R. Tolkien"),
        ("José Ñúñez", "José Ñúñez"),
        (unicodedata.normalize("NFD", "José"), "José"),
        ("Nguyễn Văn An", "Nguyễn Văn An"),
        ("山田太郎", "山田太郎"),
        ("Ἀλέξανδρος", "Ἀλέξανδρος"),
        ("محمد", "محمد"),
        ("देवनागरी", "देवनागरी"),  # combining vowel signs
        ("가" * MAX_NAME_LENGTH, "가" * MAX_NAME_LENGTH),
    ],
)
def test_validate_name_accepts(raw: str, normalized: str) -> None:
    assert validate_name(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "description"),
    [
        ("", "is required"),
        (" \t\n", "is required"),
        ("가" * (MAX_NAME_LENGTH + 1), f"must be at most {MAX_NAME_LENGTH} characters"),
        ("김민수2", "must not contain digits"),
        ("Kim１", "must not contain digits"),
        ("Henry Ⅷ", "must not contain digits"),
        ("Kim\x00", "may contain only letters, spaces, and . - ' ·"),
        ("Kim\u200bMinsu", "may contain only letters, spaces, and . - ' ·"),
        ("Kim\u202eMinsu", "may contain only letters, spaces, and . - ' ·"),
        ("Kim_Minsu", "may contain only letters, spaces, and . - ' ·"),
        ("<script>", "may contain only letters, spaces, and . - ' ·"),
        ("kim@example.com", "may contain only letters, spaces, and . - ' ·"),
        ("Kim 😀", "may contain only letters, spaces, and . - ' ·"),
        ("...", "must contain a letter"),
        ("- ·", "must contain a letter"),
    ],
)
def test_validate_name_rejects(raw: str, description: str) -> None:
    assert violation_of(lambda: validate_name(raw)) == FieldViolation("name", description)


# --- password -----------------------------------------------------------------------------------

USER = ["minsu.kim@example.com", "Kim Minsu"]


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "Tr0ub4dor&3",
        "x7!Kq9#pLm2$",
        "바다가보이는언덕위의작은집",
        "a" * 60 + "x7!Kq9#pLm2$vQ" * 3,  # strength past the first 100 characters is not needed
        "x7!Kq9#pLm2$" + "a" * (MAX_PASSWORD_LENGTH - 12),
    ],
)
def test_validate_password_accepts(password: str) -> None:
    validate_password(password, user_inputs=USER)


@pytest.mark.parametrize(
    ("password", "description"),
    [
        ("", f"must be at least {MIN_PASSWORD_LENGTH} characters"),
        ("x7!Kq9#", f"must be at least {MIN_PASSWORD_LENGTH} characters"),
        ("김" * 7, f"must be at least {MIN_PASSWORD_LENGTH} characters"),
        ("x" * (MAX_PASSWORD_LENGTH + 1), f"must be at most {MAX_PASSWORD_LENGTH} characters"),
        ("password", GUESSABLE),
        ("password1", GUESSABLE),
        ("12345678", GUESSABLE),
        ("qwertyuiop", GUESSABLE),
        ("a" * 100, GUESSABLE),
    ],
)
def test_validate_password_rejects(password: str, description: str) -> None:
    violation = violation_of(lambda: validate_password(password, user_inputs=USER))
    assert violation == FieldViolation("password", description)


def test_password_length_counts_code_points() -> None:
    # 8 Hangul syllables are 24 bytes in UTF-8 but 8 characters: long enough.
    violation = violation_of(lambda: validate_password("김" * 8, user_inputs=[]))
    assert violation.description.startswith("is too easy to guess")


@pytest.mark.parametrize(
    "password", ["kimminsu1990", "minsukim1990", "minsu.kim@example.com", "Minsu.Kim"]
)
def test_password_built_from_the_users_own_name_or_email_is_refused(password: str) -> None:
    validate_password(password, user_inputs=[])  # strong enough for a stranger
    with pytest.raises(ValidationFailed):
        validate_password(password, user_inputs=USER)


def test_password_check_is_consistent_across_threads() -> None:
    """Concurrent checks never see each other's user inputs (the user's name and email)."""
    cases = [
        ("kimminsu1990", ["kim@example.com", "Kim Minsu"]),
        ("kimminsu1990", ["lee@example.com", "Lee Jun"]),
        ("leejun19900", ["lee@example.com", "Lee Jun"]),
        ("leejun19900", ["kim@example.com", "Kim Minsu"]),
    ]

    def accepted(case: tuple[str, list[str]]) -> bool:
        try:
            validate_password(case[0], user_inputs=case[1])
        except ValidationFailed:
            return False
        return True

    expected = [accepted(case) for case in cases]
    assert expected == [False, True, False, True]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(accepted, cases * 25))
    assert results == expected * 25


# --- RRN ----------------------------------------------------------------------------------------


def test_check_no_rrn_flags_each_field_with_an_rrn() -> None:
    fields = {
        "name": "김민수",
        "email": "9001011234567@example.com",
        "phone_number": "900101-1234567",
        "guardian.phone_number": "010-1234-5678",
    }
    assert check_no_rrn(fields) == [
        FieldViolation("email", RRN_DESCRIPTION),
        FieldViolation("phone_number", RRN_DESCRIPTION),
    ]
    assert check_no_rrn({}) == []


@pytest.mark.parametrize("phone", ["+8201048485959", "+8201012345678", "＋8201048485959"])
def test_a_phone_number_with_its_country_code_is_a_phone_number_whatever_its_digits(
    phone: str,
) -> None:
    """`+82` with the national 0 kept reads `820104…` as a birth date: in a phone field, a
    Korean mobile number written so is a phone number (stored as E.164), elsewhere it still
    counts as a 주민등록번호."""
    assert normalize_phone(phone).startswith("+8210")
    assert check_no_rrn({"phone_number": phone, "guardian.phone_number": phone}) == []
    assert check_no_rrn({"name": phone}) == [FieldViolation("name", RRN_DESCRIPTION)]


@pytest.mark.parametrize(
    "text",
    [
        "8201048485959",  # no +: phonenumbers would take it for +82 010-4848-5959
        "820104-1234567",
        "+820104-1234567",  # grouped as a 주민등록번호, not as a phone number
        "+431201-1484576",  # a valid Austrian number holding all thirteen digits of one
    ],
)
def test_without_the_plus_or_a_valid_number_rrn_digits_in_a_phone_field_are_refused(
    text: str,
) -> None:
    assert check_no_rrn({"phone_number": text}) == [FieldViolation("phone_number", RRN_DESCRIPTION)]


# --- Violations ---------------------------------------------------------------------------------


def test_violations_returns_values_when_everything_is_valid() -> None:
    with Violations() as v:
        email = v.check(lambda: normalize_email("Hong@Example.com"), default="")
        phone = v.check(lambda: normalize_phone("010-1234-5678"))
        v.extend(check_no_rrn({"email": email}))
    assert email == "Hong@example.com"
    assert phone == "+821012345678"
    assert not v


def test_violations_reports_every_bad_field_at_once() -> None:
    with pytest.raises(ValidationFailed) as caught, Violations() as v:
        v.extend(check_no_rrn({"name": "900101-1234567"}))
        email = v.check(lambda: normalize_email("nope"), default="")
        name = v.check(lambda: validate_name("900101-1234567"), default="")
        v.check(lambda: normalize_phone("010-1234-5678"))
        v.check(lambda: validate_password("short", user_inputs=[email, name]))
        assert email == ""
        v.add("consents.terms_version", "must be the current version")
    assert caught.value.violations == (
        FieldViolation("name", RRN_DESCRIPTION),
        FieldViolation("email", "must be a valid email address"),
        FieldViolation("name", "must not contain digits"),
        FieldViolation("password", f"must be at least {MIN_PASSWORD_LENGTH} characters"),
        FieldViolation("consents.terms_version", "must be the current version"),
    )


def test_violations_merges_a_validation_failed_raised_in_the_block() -> None:
    with pytest.raises(ValidationFailed) as caught, Violations() as v:
        v.add("a", "is required")
        raise ValidationFailed([FieldViolation("b", "is required")])
    assert [x.field for x in caught.value.violations] == ["a", "b"]


def test_violations_lets_other_exceptions_through() -> None:
    with pytest.raises(KeyError), Violations() as v:
        v.add("a", "is required")
        raise KeyError("boom")


def test_violations_skips_exact_repeats() -> None:
    v = Violations()
    v.add("a", "is required")
    v.add("a", "is required")
    assert v.violations == (FieldViolation("a", "is required"),)
    with pytest.raises(ValidationFailed):
        v.raise_if_any()


def test_check_does_not_swallow_programming_errors() -> None:
    def broken() -> str:
        raise TypeError("bug")

    with pytest.raises(TypeError), Violations() as v:
        v.check(broken)


# --- arbitrary text: a validator returns or raises ValidationFailed, nothing else ---------------


def returns_or_fails_validation(call: Callable[[], object]) -> None:
    try:
        call()
    except ValidationFailed as failure:
        assert failure.violations
        for violation in failure.violations:
            assert violation.description in KNOWN_DESCRIPTIONS


@given(st.text(max_size=300))
def test_normalize_email_total(text: str) -> None:
    returns_or_fails_validation(lambda: normalize_email(text))


@given(st.from_regex(r"[^@\s]{1,70}@[a-z0-9.\-]{1,70}", fullmatch=True))
def test_normalize_email_total_on_address_like_text(text: str) -> None:
    returns_or_fails_validation(lambda: normalize_email(text))


@given(st.text(max_size=40) | st.text(alphabet="0123456789+-() .", max_size=40))
def test_normalize_phone_total(text: str) -> None:
    returns_or_fails_validation(lambda: normalize_phone(text))


@given(st.text(max_size=80))
def test_validate_name_total(text: str) -> None:
    returns_or_fails_validation(lambda: validate_name(text))


@given(st.text(max_size=80))
def test_validate_name_output_is_clean(text: str) -> None:
    try:
        name = validate_name(text)
    except ValidationFailed:
        return
    assert name == name.strip()
    assert 1 <= len(name) <= MAX_NAME_LENGTH
    assert unicodedata.is_normalized("NFC", name)
    assert validate_name(name) == name


@settings(deadline=None, max_examples=60)
@given(
    password=st.text(max_size=300),
    user_inputs=st.lists(st.text(max_size=40), max_size=3),
)
def test_validate_password_total(password: str, user_inputs: list[str]) -> None:
    returns_or_fails_validation(lambda: validate_password(password, user_inputs=user_inputs))


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=40), max_size=5))
def test_check_no_rrn_total(fields: dict[str, str]) -> None:
    violations = check_no_rrn(fields)
    assert all(v.description == RRN_DESCRIPTION for v in violations)
    assert len(violations) <= len(fields)
