"""The identity-provider port: fetch a finished verification by id as a VerifiedPerson."""

from __future__ import annotations

from abc import ABC, abstractmethod

from idservice.domain.errors import invalid
from idservice.domain.identity import VerifiedPerson

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


class IdentityProvider(ABC):
    """A source of finished identity verifications (본인인증), looked up server-to-server."""

    # "portone" or "sandbox": the value of IDSERVICE_IDENTITY_PROVIDER that selects it.
    name: str

    @abstractmethod
    def fetch(self, verification_id: str, *, timeout: float) -> VerifiedPerson:
        """The person verified under `verification_id`.

        `timeout` is the number of seconds left in the caller's deadline; the provider never
        spends longer. Raises DomainError: VALIDATION_FAILED (malformed id; see
        check_verification_id), VERIFICATION_NOT_FOUND, VERIFICATION_NOT_COMPLETED or
        UPSTREAM_UNAVAILABLE.
        """

    def close(self) -> None:  # noqa: B027 -- optional hook; providers without resources keep it
        """Release pooled connections; the provider must not be used afterwards."""
