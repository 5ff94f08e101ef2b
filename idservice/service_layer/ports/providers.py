"""The identity-provider port: fetch a finished verification (본인인증) by id."""

from __future__ import annotations

from abc import ABC, abstractmethod

from idservice.domain.identity import VerifiedPerson


class IdentityProvider(ABC):
    """A source of finished identity verifications, looked up server-to-server."""

    # "portone" or "sandbox": the value of IDSERVICE_IDENTITY_PROVIDER that selects it.
    name: str

    @abstractmethod
    def fetch(self, verification_id: str, *, timeout: float) -> VerifiedPerson:
        """The person verified under `verification_id`.

        `timeout` is the number of seconds left in the caller's deadline; the provider never
        spends longer. Raises DomainError: VALIDATION_FAILED (malformed id; see
        `idservice.domain.identity.check_verification_id`), VERIFICATION_NOT_FOUND,
        VERIFICATION_NOT_COMPLETED or UPSTREAM_UNAVAILABLE.
        """

    def close(self) -> None:  # noqa: B027 -- optional hook; providers without resources keep it
        """Release pooled connections; the provider must not be used afterwards."""
