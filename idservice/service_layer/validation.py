"""Validates and normalises request fields; a use case gathers every bad field into one error.

Each validator takes the raw value and a `field` name, returns the normalised value, and raises
`ValidationFailed` naming that field otherwise. Descriptions say what to send instead and never
echo the value, which may be personal data.

A use case checks all of its fields and reports them together with `Violations`::

    with Violations() as v:
        v.extend(check_no_rrn({"email": cmd.email, "name": cmd.name}))
        email = v.check(lambda: normalize_email(cmd.email), default="")
        name = v.check(lambda: validate_name(cmd.name), default="")
        phone = v.check(lambda: normalize_phone(cmd.phone_number), default="")
        v.check(lambda: validate_password(cmd.password, user_inputs=[email, name]))
    # Reached only when every check passed; otherwise one ValidationFailed listing every field
    # was raised as the block ended.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Final, TypeVar, overload

import phonenumbers
from confusable_homoglyphs import categories as unicode_scripts
from confusable_homoglyphs import confusables
from email_validator import EmailNotValidError, validate_email
from zxcvbn_rs_py import zxcvbn

from idservice.domain.errors import FieldViolation, ValidationFailed, invalid
from idservice.domain.rrn import looks_like_rrn

T = TypeVar("T")
log = logging.getLogger(__name__)

# RFC 5321 §4.5.3.1.3 limits a path to 256 octets including the angle brackets, which leaves
# 254 for the address (RFC 3696 erratum 1690); email-validator applies the same bound.
MAX_EMAIL_LENGTH = 254
# Look-alike addresses: NFKC folds compatibility forms (full-width "ｈｏｎｇ＠…", ligatures, circled
# letters) into the plain characters they show, so a copy cannot take a second account. Letters
# of different scripts that look alike (a Cyrillic "і" among Latin letters) do not fold, so an
# address part that mixes scripts confusably is refused. Characters of no particular script
# (digits, ".", "-", "_", combining marks) are left out of that comparison.
EMAIL_NORMAL_FORM: Final = "NFKC"
_SCRIPTLESS: Final = frozenset({"COMMON", "INHERITED", "UNKNOWN"})
CONFUSABLE_EMAIL_DESCRIPTION: Final = (
    "must not mix look-alike letters of different scripts (e.g. Latin and Cyrillic)"
)
# A plain ASCII address (dot-atom local part, hostname labels without "--", an alphabetic
# top-level label): its lookup key is its lower case, found without email-validator (see
# `login_email_key`). "--" is left out because an "xn--" label is punycode, which
# email-validator turns into Unicode.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*"
_PLAIN_ASCII_EMAIL: Final = re.compile(
    rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>(?:{_LABEL}\.)+[A-Za-z]+)", re.ASCII
)
# RFC 5321 §4.5.3.1.1 and §4.5.3.1.2: a local part of at most 64 octets, a label of at most 63.
MAX_LOCAL_PART_LENGTH = 64
MAX_LABEL_LENGTH = 63

# E.164 allows 15 digits; 32 characters leaves room for "+82 (0)10-1234-5678"-style
# punctuation while keeping the parser away from arbitrarily long input.
MAX_PHONE_INPUT_LENGTH = 32
# Numbers are parsed as Korean unless they start with "+" (contract §2: any common Korean form).
PHONE_DEFAULT_REGION = "KR"
# After NFKC: ASCII digits and the punctuation people type in phone numbers. Letters are refused
# so that vanity numbers ("010-ABCD-…"), "tel:" URIs and extensions are not silently rewritten.
_PHONE_CHARS = re.compile(r"[0-9+(). \-\u2010-\u2015\u2212]+")

# Names: 50 characters holds any Korean name (at most 5 syllables in practice) and long
# romanised or foreign names, while bounding what we store and show.
MAX_NAME_LENGTH = 50
# Besides letters (and the combining marks some scripts need): space, ".", "-", "'" and "·"
# (the middle dot used in Korean transliterations of foreign names, e.g. 마이클·조던).
_NAME_PUNCTUATION = frozenset(" .-'\u00b7")
# iOS "smart punctuation" turns ' into ’ as people type; it is the same apostrophe.
_APOSTROPHE_VARIANTS = str.maketrans({"\u2019": "'", "\u02bc": "'"})
_WHITESPACE_RUN = re.compile(r"\s+")

# NIST SP 800-63B §5.1.1.2: at least 8 characters; verifiers should permit at least 64, and we
# allow 256 (long passphrases are encouraged). Length counts code points ("each Unicode code
# point SHALL be counted as a single character").
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
# NIST SP 800-63B §5.1.1.2 requires comparing against commonly used, expected or compromised
# values, including context-specific words such as the user's name; zxcvbn does that. Score 3 is
# "safely unguessable: moderate protection from offline slow-hash scenario" (zxcvbn README).
MIN_PASSWORD_SCORE = 3
# zxcvbn's matching is super-linear in the length (it refuses > 72 characters by default), and
# 100 characters that are hard to guess already make the whole password hard to guess.
ZXCVBN_MAX_CHARS = 100
# Pieces of the user's name/email shorter than this are not useful penalty words: a one-letter
# "word" would only lower the estimate of unrelated passwords.
MIN_USER_INPUT_PIECE = 2
_USER_INPUT_SPLIT = re.compile(r"[\s._+\-@·]+")

RRN_DESCRIPTION = "must not contain a resident registration number"


def normalize_email(value: str, *, field: str = "email", strict: bool = True) -> str:
    """The address in normalised form: NFKC, domain lowercased (IDNA), local part's case kept.

    Syntax only (no DNS): `email_validator.validate_email(..., check_deliverability=False)`,
    `strict` (the default) also holding the local part to RFC 5321's 64 characters; a login
    looks addresses up without it, so one stored before that rule still signs in.
    NFKC comes first (a full-width copy is the same address), then surrounding whitespace is
    dropped. Special-use domains (`.test`, `.local`, `localhost`) are refused by
    email-validator. A local part or domain label that mixes scripts with look-alike letters
    (Latin with a Cyrillic "і") is refused; one script alone (Latin, Hangul, …) is fine, and
    so are scripts side by side whose letters do not look alike (Latin beside Hangul).
    Store `email_lookup_key()` of the result for uniqueness.
    """
    text = unicodedata.normalize(EMAIL_NORMAL_FORM, value).strip()
    if not text:
        raise invalid(field, "is required")
    if len(text) > MAX_EMAIL_LENGTH:
        raise invalid(field, f"must be at most {MAX_EMAIL_LENGTH} characters")
    try:
        normalized = validate_email(text, check_deliverability=False, strict=strict).normalized
    except EmailNotValidError:
        # email-validator's messages quote the offending characters: not for our answers.
        raise invalid(field, "must be a valid email address") from None
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise invalid(field, f"must be at most {MAX_EMAIL_LENGTH} characters")
    local, _, domain = normalized.rpartition("@")
    if any(_mixes_scripts_confusably(part) for part in (local, *domain.split("."))):
        raise invalid(field, CONFUSABLE_EMAIL_DESCRIPTION)
    return normalized


def login_email_key(value: str) -> str:
    """The lookup key of an address a person types to log in: `email_lookup_key` of
    `normalize_email`, without email-validator's cost for a plain ASCII address.

    For a plain ASCII address (`_PLAIN_ASCII_EMAIL`, within the length limits) the key is its
    lower case: email-validator keeps an ASCII local part as typed and lowercases an ASCII
    domain, and the key folds case (tests/unit/test_login_email_key.py checks that the two
    agree). A plain address email-validator refuses for its domain (a special-use one such as
    `.test`) gets a key too, which no account holds: an accepted address's key never ends in
    such a domain, so the login fails as for an unknown address. The length limits matter:
    case folding can lengthen a key (`ß` → `ss`), so an accepted address may have a key with a
    label past 63 characters; typed as ASCII, that key is not plain, and email-validator
    refuses it here as it would have. Anything else goes through `normalize_email` and may
    raise its `ValidationFailed`.
    """
    text = unicodedata.normalize(EMAIL_NORMAL_FORM, value).strip()
    plain = _PLAIN_ASCII_EMAIL.fullmatch(text) if len(text) <= MAX_EMAIL_LENGTH else None
    if (
        plain is not None
        and len(plain["local"]) <= MAX_LOCAL_PART_LENGTH
        and all(len(label) <= MAX_LABEL_LENGTH for label in plain["domain"].split("."))
    ):
        return text.lower()
    return email_lookup_key(normalize_email(value, strict=False))


def _mixes_scripts_confusably(text: str) -> bool:
    """True when `text` holds letters of two or more scripts and one of them looks like a letter
    of another (confusable-homoglyphs, from Unicode's confusables.txt and Scripts.txt)."""
    if text.isascii():
        return False  # ASCII letters are all Latin: one script cannot mix
    letters = "".join(ch for ch in text if unicode_scripts.alias(ch).upper() not in _SCRIPTLESS)
    scripts: set[str] = unicode_scripts.unique_aliases(letters)
    if len(scripts) < 2:
        return False
    # Each script in turn as the one imitated: do the letters of the others look like its own?
    return any(
        bool(confusables.is_confusable(letters, preferred_aliases=[script]))
        for script in sorted(scripts)
    )


def email_lookup_key(normalized: str) -> str:
    """The case-insensitive key of a normalised address, for uniqueness and login look-ups.

    NFKC, case folded, NFKC again: case folding can leave a string that is no longer normalised
    (e.g. "ǰ"). For an ASCII address this is just its lower case.
    """
    folded = unicodedata.normalize(EMAIL_NORMAL_FORM, normalized).casefold()
    return unicodedata.normalize(EMAIL_NORMAL_FORM, folded)


# A Korean mobile number in E.164: 010, 011 and 016–019 (012 numbers are for machines).
_KOREAN_MOBILE = re.compile(r"\+821[016789][0-9]{7,8}")


def normalize_phone(
    value: str,
    *,
    field: str = "phone_number",
    require_valid: bool = True,
    mobile_only: bool = False,
) -> str:
    """The number in E.164 (`+821012345678`); accepts any common Korean form or a `+` number.

    E.g. `010-1234-5678`, `01012345678`, `010 1234 5678`, `+82 10-1234-5678`, `(02) 123-4567`,
    full-width digits. The number must be valid for its region (phonenumbers' metadata).
    `mobile_only`: a Korean mobile number (010, 011, 016–019), for a contact that must receive
    a text and pass Korean mobile-phone identity verification: a landline, 070, 050x, 080 or
    15xx number, an M2M 012 number or a foreign one is refused.
    """
    if len(value) > MAX_PHONE_INPUT_LENGTH:
        raise invalid(field, f"must be at most {MAX_PHONE_INPUT_LENGTH} characters")
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        raise invalid(field, "is required")
    if _PHONE_CHARS.fullmatch(text) is None:
        raise invalid(field, "may contain only digits, spaces, +, -, ( and )")
    try:
        number = phonenumbers.parse(text, PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise invalid(field, "must be a valid phone number") from None
    # A number a carrier verified is real even when the library's metadata lags behind
    # (newly assigned blocks): callers pass require_valid=False for verified numbers.
    if require_valid and not phonenumbers.is_valid_number(number):
        raise invalid(field, "must be a valid phone number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if mobile_only and not (
        _KOREAN_MOBILE.fullmatch(e164)
        and phonenumbers.number_type(number) is phonenumbers.PhoneNumberType.MOBILE
    ):
        raise invalid(field, "must be a Korean mobile phone number")
    return e164


def validate_name(value: str, *, field: str = "name") -> str:
    """The name NFC-normalised, trimmed, with each run of whitespace made one space.

    1–50 characters; letters of any script (Hangul included) with their combining marks,
    spaces, `.`, `-`, `'` (`’` is read as `'`) and `·`; at least one letter; no digits, no
    control or other characters.
    """
    text = unicodedata.normalize("NFC", value).translate(_APOSTROPHE_VARIANTS)
    text = _WHITESPACE_RUN.sub(" ", text).strip()
    if not text:
        raise invalid(field, "is required")
    if len(text) > MAX_NAME_LENGTH:
        raise invalid(field, f"must be at most {MAX_NAME_LENGTH} characters")
    categories = [unicodedata.category(ch) for ch in text]
    if any(category.startswith("N") for category in categories):
        raise invalid(field, "must not contain digits")
    if not all(
        category.startswith(("L", "M")) or ch in _NAME_PUNCTUATION
        for ch, category in zip(text, categories, strict=True)
    ):
        raise invalid(field, "may contain only letters, spaces, and . - ' ·")
    if not any(category.startswith("L") for category in categories):
        raise invalid(field, "must contain a letter")
    return text


def check_password_length(password: str, *, field: str = "password") -> str:
    """The length part of `validate_password` (8–256 code points): the password, if it holds."""
    length = len(password)
    if length < MIN_PASSWORD_LENGTH:
        raise invalid(field, f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if length > MAX_PASSWORD_LENGTH:
        raise invalid(field, f"must be at most {MAX_PASSWORD_LENGTH} characters")
    return password


def validate_password(
    password: str, *, user_inputs: Sequence[str], field: str = "password"
) -> None:
    """NIST SP 800-63B §5.1.1.2: 8–256 characters, no composition rules, not guessable.

    `user_inputs` are the user's own words (pass the email and the name): zxcvbn penalises
    them, and also the email's local part, the pieces of each, and the pieces run together in
    either order (`Kim Minsu` → `kim`, `minsu`, `kimminsu`, `minsukim`). Only the first 100
    characters are scored.
    """
    check_password_length(password, field=field)
    scored = password[:ZXCVBN_MAX_CHARS]
    words = _penalised_words(user_inputs)
    # zxcvbn-rs (the Rust port, through zxcvbn-rs-py): the same scoring as Dropbox's zxcvbn at a
    # tenth of the pure-Python port's CPU, with no module-global state between threads.
    if int(zxcvbn(scored, user_inputs=words).score) < MIN_PASSWORD_SCORE:
        raise invalid(
            field,
            "is too easy to guess: use a longer passphrase of unrelated words, "
            "without your name or email",
        )


def _penalised_words(user_inputs: Iterable[str]) -> list[str]:
    """Each input, an email's local part, their pieces and joined pieces, without repeats."""
    words: dict[str, None] = {}  # ordered set
    for raw in user_inputs:
        text = raw.strip()
        if not text:
            continue
        words[text] = None
        local, at, _domain = text.rpartition("@")
        if at and local:
            words[local] = None
        pieces = [p for p in _USER_INPUT_SPLIT.split(local if at else text) if p]
        words.update((p, None) for p in pieces if len(p) >= MIN_USER_INPUT_PIECE)
        # A name shows up in passwords run together, in either order: "kimminsu", "minsukim".
        if len(pieces) > 1:
            words["".join(pieces)] = None
            words["".join(reversed(pieces))] = None
    return list(words)


def check_no_rrn(fields: Mapping[str, str]) -> list[FieldViolation]:
    """One violation per field whose value looks like a 주민등록번호 (korea-rules.md, CI/DI 1).

    A phone field (`phone_number`, at any path) holding a Korean mobile number written `+82 0…`
    is a phone number (`is_phone_number_text`): stored as E.164, never as the text.
    """
    return [
        FieldViolation(field, RRN_DESCRIPTION)
        for field, value in fields.items()
        if looks_like_rrn(value)
        and not (field.rpartition(".")[2] == PHONE_FIELD and is_phone_number_text(value))
    ]


PHONE_FIELD = "phone_number"


def is_phone_number_text(value: str) -> bool:
    """Whether `value` is a Korean mobile number written `+82 0…`: the national 0 kept after
    the country code, a common way of writing one, whose digits read as a 주민등록번호 of
    someone born in January 1982 (`+8201048485959`: `820104` and `8485959`). Nothing else
    is: without the `+` phonenumbers would read `820104-1234567`, a 주민등록번호 as people
    write it, as +82 010-4123-4567, and another country's code could stand for the first
    digits of one (`+431201-1484576` is a valid Austrian number holding all thirteen)."""
    text = unicodedata.normalize("NFKC", value).strip()
    if not _KOREAN_MOBILE_WITH_NATIONAL_ZERO.fullmatch(text):
        return False
    try:
        number = phonenumbers.parse(text, PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return False
    return number.country_code == KOREA_COUNTRY_CODE and phonenumbers.number_type(number) in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )


KOREA_COUNTRY_CODE = 82
# `+82`, the national 0 and a mobile prefix, then the subscriber's digits, in groups as written.
_KOREAN_MOBILE_WITH_NATIONAL_ZERO = re.compile(
    r"\+82[ -]?\(?0\)?1[016789][ -]?[0-9]{3,4}[ -]?[0-9]{4}"
)


class Violations:
    """Collects the violations of several checks and raises one `ValidationFailed` at the end.

    Use as a context manager. `check(fn)` runs a validator; if it raises `ValidationFailed`,
    its violations are kept and `check` returns `default` (so later checks still run), else it
    returns the validator's result. `add`/`extend` record violations found another way. When
    the block ends, one `ValidationFailed` listing every violation is raised if there are any.
    A `ValidationFailed` raised directly in the block is merged into it; any other exception
    propagates untouched.
    """

    def __init__(self) -> None:
        self._violations: list[FieldViolation] = []

    @property
    def violations(self) -> tuple[FieldViolation, ...]:
        """The violations collected so far, in the order found."""
        return tuple(self._violations)

    def __bool__(self) -> bool:
        return bool(self._violations)

    def add(self, field: str, description: str) -> None:
        """Record one violation."""
        self.extend([FieldViolation(field, description)])

    def extend(self, violations: Iterable[FieldViolation]) -> None:
        """Record several violations, skipping exact repeats."""
        for violation in violations:
            if violation not in self._violations:
                self._violations.append(violation)

    @overload
    def check(self, validator: Callable[[], T]) -> T | None: ...

    @overload
    def check(self, validator: Callable[[], T], default: T) -> T: ...

    def check(self, validator: Callable[[], T], default: T | None = None) -> T | None:
        """Run `validator`; on `ValidationFailed` record its violations and return `default`."""
        try:
            return validator()
        except ValidationFailed as failure:
            self.extend(failure.violations)
            return default

    def raise_if_any(self) -> None:
        """Raise one `ValidationFailed` with everything collected, if anything was."""
        if self._violations:
            raise ValidationFailed(self._violations)

    def __enter__(self) -> Violations:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, ValidationFailed):
            self.extend(exc.violations)
            raise ValidationFailed(self._violations) from None
        if exc is None:
            self.raise_if_any()
