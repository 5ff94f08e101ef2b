"""Sandbox identity verification for development and load tests: the person is read from the id.

Ids look like `sandbox:<name>:<YYYY-MM-DD>:<phone>:<seed>[:<attempt>]` (contract §2,
IdentityService). CI and DI depend on the seed alone, so the same person can be verified again
with a new `<attempt>` and is recognised as the same person. Refused in production by the
composition root, not here.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime

import phonenumbers

from idservice.domain.age import parse_birth_date, seoul_today
from idservice.domain.errors import ValidationFailed, invalid
from idservice.domain.identity import VerifiedPerson, check_verification_id
from idservice.service_layer.ports import IdentityProvider

SANDBOX_PREFIX = "sandbox"
# Domain-separation labels: a CI and a DI from the same seed must not be derivable from each other.
CI_LABEL = b"idservice-sandbox-ci\0"
DI_LABEL = b"idservice-sandbox-di\0"

# name, birth date, phone, seed, and the optional attempt.
_MIN_PARTS = 4
_MAX_PARTS = 5
# Digits with an optional leading "+" and hyphens ("01012345678", "010-1234-5678",
# "+821012345678"); normalising it is the caller's job, as with a real provider.
_PHONE = re.compile(r"\+?[0-9](?:[0-9-]*[0-9])?")

_FORMAT = "must be sandbox:<name>:<YYYY-MM-DD>:<phone>:<seed>[:<attempt>]"


def sandbox_ci(seed: str) -> str:
    """The sandbox CI for `seed`: base64 of SHA-512, 88 characters like a real CI."""
    return base64.b64encode(hashlib.sha512(CI_LABEL + seed.encode()).digest()).decode("ascii")


def sandbox_di(seed: str) -> str:
    """The sandbox DI for `seed`: hex of SHA-256, 64 characters like a common real DI."""
    return hashlib.sha256(DI_LABEL + seed.encode()).hexdigest()


def _is_valid_phone(phone: str) -> bool:
    """Whether phonenumbers' metadata knows the number (national numbers read as Korean)."""
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(phone, "KR"))
    except phonenumbers.NumberParseException:
        return False


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SandboxIdentityProvider(IdentityProvider):
    """Verifies whoever the id describes, with no network; never for production."""

    name = "sandbox"

    def __init__(self, *, clock: Callable[[], datetime] = _utc_now) -> None:
        # The clock decides which birth dates are in the future (Seoul's today).
        self._clock = clock

    def __repr__(self) -> str:
        return "SandboxIdentityProvider()"

    def fetch(self, verification_id: str, *, timeout: float) -> VerifiedPerson:
        """Parse the person out of `verification_id`; `timeout` is irrelevant without I/O."""
        check_verification_id(verification_id)
        prefix, _, rest = verification_id.partition(":")
        parts = rest.split(":")
        if prefix != SANDBOX_PREFIX or not _MIN_PARTS <= len(parts) <= _MAX_PARTS:
            raise invalid("verification_id", _FORMAT)
        if any(not part for part in parts):
            raise invalid("verification_id", f"{_FORMAT}, every part non-empty")
        name, birth_text, phone, seed = parts[:_MIN_PARTS]
        try:
            birth_date = parse_birth_date(
                birth_text, today=seoul_today(self._clock()), field="verification_id"
            )
        except ValidationFailed as error:
            description = "; ".join(v.description for v in error.violations)
            raise invalid("verification_id", f"birth date {description}") from None
        if _PHONE.fullmatch(phone) is None:
            raise invalid("verification_id", "phone must be digits, optionally with '+' and '-'")
        if not _is_valid_phone(phone):
            # A carrier verifies a number that exists: `12345` would become `+8212345`.
            raise invalid("verification_id", "phone must be a valid phone number")
        return VerifiedPerson(
            name=name,
            phone_number=phone,
            birth_date=birth_date,
            gender=None,
            is_foreigner=False,
            ci=sandbox_ci(seed),
            di=sandbox_di(seed),
        )
