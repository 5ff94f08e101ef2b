"""What a provider says is validated like caller input (identity verification, Google, Kakao).

A provider's answer that fails is the provider's fault, not the caller's: a WARNING names the
fields (never the values) and the call answers UPSTREAM_UNAVAILABLE, so nothing is stored and
nothing answers INTERNAL.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from typing import TypeVar
from urllib.parse import urlsplit

from idservice.domain.age import parse_birth_date
from idservice.domain.errors import DomainError, Reason, ValidationFailed, invalid
from idservice.domain.identity import (
    MAX_IDENTITY_KEY_LENGTH,
    InvalidVerifiedPersonError,
    VerifiedPerson,
    check_identity_keys,
)
from idservice.domain.rrn import looks_like_rrn
from idservice.domain.sns import SnsProfile, SnsProvider
from idservice.service_layer.validation import (
    RRN_DESCRIPTION,
    Violations,
    check_no_rrn,
    normalize_email,
    normalize_phone,
    validate_name,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
# Nicknames are shown back to the person; Kakao allows 20 characters, Google's names are longer.
MAX_NICKNAME_LENGTH = 100
# Profile picture URLs are kept, not fetched; long signed CDN URLs stay well under this.
MAX_PICTURE_URL_LENGTH = 2048

# The gender codes a VerifiedPerson may carry (idservice.domain.identity).
PROVIDER_GENDERS = frozenset({"MALE", "FEMALE", "OTHER"})
# Control characters (newline, NUL, …), format characters and lone surrogates: no provider sends
# them in a real name, phone or code, and a surrogate cannot even be encrypted (not UTF-8).
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def validate_provider_person(
    person: VerifiedPerson, *, today: date, from_caller: bool = False, provider: str = ""
) -> VerifiedPerson:
    """The person an identity provider vouched for, checked like caller input and normalised.

    Name as `validate_name` (and without control characters: a newline from a provider is a
    malformed answer, not a typing slip), phone as `normalize_phone(..., require_valid=False)`
    (E.164), birth date a real day from 1900-01-01 to `today` in Seoul (korea-rules Age 7), no
    string shaped like a resident registration number (korea-rules CI/DI 1), gender one of
    PortOne's codes or none, CI/DI per korea-rules CI/DI 2. CI and DI are opaque identifiers and
    skip the RRN check, like the other opaque values (docs/decisions.md): about one 64-hex DI
    in 2,000 holds 13 digits in a row shaped like one.

    A provider's answer that fails is the provider's fault, not the caller's: a WARNING names
    the fields (never the values) and the call answers UPSTREAM_UNAVAILABLE, so nothing is
    stored. With `from_caller` (the sandbox reads the person out of the caller's
    `verification_id`) it is the caller's input: VALIDATION_FAILED on `verification_id`.
    `provider` names the provider in that answer's ErrorInfo, as its other failures do.
    """
    try:
        return _checked_provider_person(person, today=today)
    except ValidationFailed as failure:
        if from_caller:
            described = "; ".join(f"{v.field} {v.description}" for v in failure.violations)
            raise invalid("verification_id", described) from None
        fields = ", ".join(dict.fromkeys(v.field for v in failure.violations))
        log.warning(
            "identity provider answered a verified person with invalid fields (%s); "
            "answering unavailable",
            fields,
        )
        raise DomainError(
            Reason.UPSTREAM_UNAVAILABLE,
            "identity verification provider is unavailable",
            metadata={"provider": provider} if provider else None,
        ) from None


def _provider_text(v: Violations, field: str, value: object) -> str | None:
    """`value` if it is a string without control characters or an RRN, else None (recorded)."""
    if not isinstance(value, str):
        v.add(field, "must be a string")
        return None
    if any(unicodedata.category(ch) in _UNPRINTABLE_CATEGORIES for ch in value):
        v.add(field, "must not contain control characters")
        return None
    if check_no_rrn({field: value}):
        v.add(field, RRN_DESCRIPTION)
        return None
    return value


def _checked_provider_person(person: VerifiedPerson, *, today: date) -> VerifiedPerson:
    with Violations() as v:
        name: str | None = None
        raw_name = _provider_text(v, "name", person.name)
        if raw_name is not None:
            name = v.check(lambda: validate_name(raw_name, field="name"), default=None)
        phone: str | None = None
        raw_phone = _provider_text(v, "phone_number", person.phone_number)
        if raw_phone is not None:
            phone = v.check(
                lambda: normalize_phone(raw_phone, field="phone_number", require_valid=False),
                default=None,
            )
        birth: date | None = None
        if isinstance(person.birth_date, date) and not isinstance(person.birth_date, datetime):
            birth = v.check(
                lambda: parse_birth_date(person.birth_date.isoformat(), today=today),
                default=None,
            )
        else:
            v.add("birth_date", "must be a date")
        gender = person.gender
        if gender is not None:
            code = _provider_text(v, "gender", gender)
            if code is not None and code not in PROVIDER_GENDERS:
                v.add("gender", "must be MALE, FEMALE or OTHER when given")
        if not isinstance(person.is_foreigner, bool):
            v.add("is_foreigner", "must be true or false")
        for field, key in (("ci", person.ci), ("di", person.di)):
            if key is None:
                continue
            if not isinstance(key, str):
                v.add(field, "must be a string")
                continue
            try:
                check_identity_keys(key, None)  # the same rules for either key
            except InvalidVerifiedPersonError:
                v.add(field, f"must be 1 to {MAX_IDENTITY_KEY_LENGTH} printable characters")
        if person.ci is None and person.di is None:
            v.add("ci", "or di is required")
    assert name is not None and phone is not None and birth is not None  # else raised above
    return VerifiedPerson(
        name=name,
        phone_number=phone,
        birth_date=birth,
        gender=gender,
        is_foreigner=person.is_foreigner,
        ci=person.ci,
        di=person.di,
    )


def validate_sns_profile(profile: SnsProfile, *, today: date) -> SnsProfile:
    """An SNS provider's profile checked like caller input and normalised (E.164 phone,
    normalised email); UPSTREAM_UNAVAILABLE when any field fails."""
    return _as_provider_answer(
        lambda: _checked_sns_profile(profile, today=today), f"{profile.provider.value} profile"
    )


def _as_provider_answer(check: Callable[[], T], source: str) -> T:
    try:
        return check()
    except ValidationFailed as failure:
        fields = ", ".join(dict.fromkeys(v.field for v in failure.violations))
        log.warning("%s has invalid fields (%s); answering unavailable", source, fields)
        raise DomainError(
            Reason.UPSTREAM_UNAVAILABLE, "the provider's answer is not usable; retry later"
        ) from None


def _checked_sns_profile(profile: SnsProfile, *, today: date) -> SnsProfile:
    with Violations() as v:
        texts = {
            name: _provider_text(v, name, value)
            for name, value in (
                ("email", profile.email),
                ("phone_number", profile.phone_number),
            )
        }
        email = texts["email"] or ""
        if email:
            email = v.check(lambda: normalize_email(email), default="")
        phone = texts["phone_number"] or ""
        if phone:
            phone = v.check(lambda: normalize_phone(phone, require_valid=False), default="")
        given = profile.birth_date
        birth = (
            v.check(lambda: parse_birth_date(given.isoformat(), today=today), default=None)
            if given is not None
            else None
        )
        name = _profile_name(v, profile)
        if profile.ci is not None:
            try:
                check_identity_keys(profile.ci, None)
            except InvalidVerifiedPersonError:
                v.add("ci", f"must be 1 to {MAX_IDENTITY_KEY_LENGTH} printable characters")
    return SnsProfile(
        provider=profile.provider,
        subject=profile.subject,
        email=email,
        name=name,
        phone_number=phone,
        birth_date=birth,
        ci=profile.ci,
        nickname=_display_text(profile, "nickname", profile.nickname, MAX_NICKNAME_LENGTH),
        picture_url=_picture(profile),
        signed_in_at=profile.signed_in_at,
    )


def _profile_name(v: Violations, profile: SnsProfile) -> str:
    """Kakao's `name` is the account holder's real name: one that fails is a bad answer. Google's
    is a free-form display name ("Minsu 2"): one that is no valid name is simply not taken."""
    if not profile.name:
        return ""
    if profile.provider is SnsProvider.GOOGLE:
        try:
            return validate_name(_plain(profile.name))
        except (ValidationFailed, ValueError):
            log.info("google display name is not usable as a name; left out")
            return ""
    raw = _provider_text(v, "name", profile.name)
    return v.check(lambda: validate_name(raw), default="") if raw else ""


def _plain(value: str) -> str:
    if any(unicodedata.category(ch) in _UNPRINTABLE_CATEGORIES for ch in value) or looks_like_rrn(
        value
    ):
        raise ValueError("not plain text")
    return value


def _display_text(profile: SnsProfile, field: str, value: str, limit: int) -> str:
    """Nickname and picture are only shown back to the person: a bad one is left out (with a
    log line naming the field) instead of failing a login over it."""
    if not value:
        return ""
    try:
        plain = _plain(value)
    except ValueError:
        plain = ""
    if not plain or len(plain) > limit:
        log.info("%s %s is not usable; left out", profile.provider.value, field)
        return ""
    return plain


def _picture(profile: SnsProfile) -> str:
    url = _display_text(profile, "picture_url", profile.picture_url, MAX_PICTURE_URL_LENGTH)
    if url and not _is_https_url(url):
        log.info("%s picture_url is not an https URL; left out", profile.provider.value)
        return ""
    return url


def _is_https_url(value: str) -> bool:
    if len(value) > MAX_PICTURE_URL_LENGTH or not value.isascii():
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.netloc)
