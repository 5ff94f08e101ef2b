"""Provider ports: identity verification (본인인증) and sign-in with Google and Kakao."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from idservice.domain.identity import VerifiedPerson
from idservice.domain.sns import SnsProfile, SnsProvider


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


@dataclass(frozen=True, slots=True, repr=False)
class SnsCredential:
    """What the app got from the provider: an ID token with its nonce, or an authorization
    code with its PKCE verifier and redirect URI; for Kakao, optionally its access token."""

    id_token: str = field(default="")
    nonce: str = ""
    authorization_code: str = ""
    code_verifier: str = ""
    redirect_uri: str = ""
    kakao_access_token: str = ""

    def __repr__(self) -> str:
        kind = "id_token" if self.id_token else "authorization_code"
        return f"SnsCredential({kind})"


class SnsIdentityProvider(ABC):
    """Google or Kakao: turns a credential into the person the provider vouches for."""

    provider: SnsProvider

    @abstractmethod
    def authenticate(self, credential: SnsCredential, *, timeout: float) -> SnsProfile:
        """Verify the credential (ID token, or code exchanged first) and read the profile.

        The profile is what the provider said, not yet validated as caller input. Raises
        DomainError SNS_TOKEN_INVALID (any failed check of the token or code) or
        UPSTREAM_UNAVAILABLE (the provider cannot be reached in `timeout` seconds, or answered
        something malformed).
        """

    def close(self) -> None:  # noqa: B027 -- optional hook
        """Release pooled connections."""
