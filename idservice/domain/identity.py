"""The person an identity verification (본인인증) vouches for, with the CI/DI rules it must meet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from idservice.domain.errors import invalid

# korea-rules.md "Identity verification, CI and DI" 2: CI and DI are opaque strings of at most
# 128 characters (CI is 88 base64 characters, DI commonly 64, other lengths exist).
MAX_IDENTITY_KEY_LENGTH = 128


class InvalidVerifiedPersonError(ValueError):
    """A verification result that breaks an invariant; the message never holds the values."""


def check_identity_keys(ci: str | None, di: str | None) -> None:
    """Require at least one of CI/DI, each a non-empty printable string of ≤ 128 characters.

    korea-rules.md "Identity verification, CI and DI" 2 and contract §2 (ci or di may be absent,
    not both): without either there is no way to enforce one person, one account.
    """
    if ci is None and di is None:
        raise InvalidVerifiedPersonError("neither CI nor DI is present")
    for label, value in (("CI", ci), ("DI", di)):
        if value is None:
            continue
        if not value:
            raise InvalidVerifiedPersonError(f"{label} is empty")
        if len(value) > MAX_IDENTITY_KEY_LENGTH:
            raise InvalidVerifiedPersonError(
                f"{label} is longer than {MAX_IDENTITY_KEY_LENGTH} characters"
            )
        # Control characters would corrupt blind-index inputs and log lines; real CIs are base64.
        if not value.isprintable():
            raise InvalidVerifiedPersonError(f"{label} contains non-printable characters")


@dataclass(frozen=True, slots=True, repr=False)
class VerifiedPerson:
    """What a provider verified. Every field is personal data: the repr shows none of it."""

    name: str
    # As the provider gave it (PortOne: digits only); normalising to E.164 is the caller's job.
    phone_number: str
    birth_date: date
    # "MALE", "FEMALE" or "OTHER" when the provider says; None when it does not.
    gender: str | None
    is_foreigner: bool
    ci: str | None
    di: str | None

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidVerifiedPersonError("name is empty")
        if not self.phone_number:
            raise InvalidVerifiedPersonError("phone number is empty")
        check_identity_keys(self.ci, self.di)

    def __repr__(self) -> str:
        # Reprs end up in logs and tracebacks; only the presence of CI/DI is safe to show.
        ci = "present" if self.ci is not None else "absent"
        di = "present" if self.di is not None else "absent"
        return f"VerifiedPerson(ci={ci}, di={di})"


# Generous for PortOne ids (merchant-chosen, e.g. "identity-verification-<uuid>") and for sandbox
# ids carrying a name, a date, a phone and a seed; bounds the upstream URL length.
MAX_VERIFICATION_ID_LENGTH = 200

# The id becomes one URL path segment: these would end or restructure it even if quoted by
# a careless hop, so they are refused rather than escaped.
_FORBIDDEN_ID_CHARACTERS = frozenset("/?#")
# "." and ".." are removed as dot segments by URL normalisation and would address another path.
_DOT_SEGMENTS = frozenset({".", ".."})


def check_verification_id(verification_id: str) -> str:
    """Return `verification_id` if it is 1..200 printable characters without / ? # or spaces.

    Raises VALIDATION_FAILED on the field `verification_id`. The description never echoes the
    value: a sandbox id carries a name and a phone number.
    """
    if not isinstance(verification_id, str) or not verification_id:
        raise invalid("verification_id", "is required")
    if len(verification_id) > MAX_VERIFICATION_ID_LENGTH:
        raise invalid("verification_id", f"must be at most {MAX_VERIFICATION_ID_LENGTH} characters")
    if (
        not verification_id.isprintable()
        or any(c.isspace() for c in verification_id)
        or any(c in _FORBIDDEN_ID_CHARACTERS for c in verification_id)
        or verification_id in _DOT_SEGMENTS
    ):
        raise invalid(
            "verification_id",
            "must be printable characters without whitespace, '/', '?' or '#'",
        )
    return verification_id
