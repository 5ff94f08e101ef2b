"""Google Sign-In: an OpenID Connect provider whose ID token carries the profile."""

from __future__ import annotations

import time
from collections.abc import Callable

from idservice.adapters.sns.http import Deadline
from idservice.adapters.sns.oidc import OidcProvider, OidcSettings, VerifiedIdToken
from idservice.domain.sns import SnsProfile, SnsProvider

DEFAULT_DISCOVERY_URL = "https://accounts.google.com/.well-known/openid-configuration"
# Google's documents announce https://accounts.google.com; its tokens may still carry the older
# scheme-less form (Google Identity docs, "Validate an ID token").
LEGACY_ISSUER = "accounts.google.com"


class GoogleProvider(OidcProvider):
    def __init__(
        self,
        *,
        discovery_url: str,
        client_ids: tuple[str, ...],
        client_secret: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            OidcSettings(
                provider=SnsProvider.GOOGLE,
                discovery_url=discovery_url,
                client_ids=client_ids,
                client_secret=client_secret,
                extra_issuers=(LEGACY_ISSUER,),
            ),
            clock=clock,
        )

    def profile(
        self, token: VerifiedIdToken, *, access_token: str, exchanged: bool, deadline: Deadline
    ) -> SnsProfile:
        """email only when `email_verified` is true; name, and picture kept with the link."""
        verified = token.claims.get("email_verified") is True
        name = token.text("name")
        return SnsProfile(
            provider=SnsProvider.GOOGLE,
            subject=token.subject,
            email=token.text("email") if verified else "",
            name=name,
            nickname=name,
            picture_url=token.text("picture"),
        )
