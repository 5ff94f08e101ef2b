"""Kakao Login: OpenID Connect, plus the Kakao API for the account's profile.

With a Kakao access token (from the mobile SDK, or from our own code exchange) the service first
checks that the token was issued to this app (`GET /v1/user/access_token_info`, `app_id`) and to
the same user as the ID token, then reads `GET /v2/user/me` (Kakao REST API, 사용자 정보 가져오기).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from idservice.adapters.sns.http import Deadline, token_invalid, unavailable
from idservice.adapters.sns.oidc import OidcProvider, OidcSettings, VerifiedIdToken
from idservice.domain.errors import DomainError, Reason
from idservice.domain.sns import SnsProfile, SnsProvider, kakao_birth_date

DEFAULT_DISCOVERY_URL = "https://kauth.kakao.com/.well-known/openid-configuration"
DEFAULT_API_BASE = "https://kapi.kakao.com"
TOKEN_INFO_PATH = "/v1/user/access_token_info"  # noqa: S105 - a path, not a secret
USER_ME_PATH = "/v2/user/me"


class _Malformed(Exception):
    """A Kakao answer that is not the documented shape (names the field, never the value)."""


class KakaoProvider(OidcProvider):
    def __init__(
        self,
        *,
        discovery_url: str,
        client_ids: tuple[str, ...],
        api_base: str,
        app_id: str | None,
        client_secret: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            OidcSettings(
                provider=SnsProvider.KAKAO,
                discovery_url=discovery_url,
                client_ids=client_ids,
                client_secret=client_secret,
            ),
            clock=clock,
        )
        self._api_base = api_base.rstrip("/")
        self._app_id = app_id

    def profile(
        self, token: VerifiedIdToken, *, access_token: str, exchanged: bool, deadline: Deadline
    ) -> SnsProfile:
        if not access_token:
            verified = token.claims.get("email_verified") not in (False, "false")
            # The ID token alone: what Kakao puts in it (OIDC claims of 카카오 로그인). Kakao puts
            # an email there only when it is valid and verified; one marked otherwise is dropped.
            return SnsProfile(
                provider=SnsProvider.KAKAO,
                subject=token.subject,
                email=token.text("email") if verified else "",
                nickname=token.text("nickname"),
                picture_url=token.text("picture"),
            )
        if not exchanged:
            # A token from the app could be any app's; one we exchanged ourselves is ours.
            self._check_token_owner(access_token, token.subject, deadline)
        # secure_resource=true: profile image URLs over https (Kakao's default is http).
        me, _ = self.get_json(
            self._api_base + USER_ME_PATH + "?secure_resource=true", deadline, bearer=access_token
        )
        try:
            return _profile_of(me, subject=token.subject)
        except _Malformed as exc:
            raise unavailable(self.provider, f"user/me: {exc}") from None

    def _check_token_owner(self, access_token: str, subject: str, deadline: Deadline) -> None:
        """The access token belongs to this app and to the ID token's user."""
        if not self._app_id:
            raise DomainError(
                Reason.PROVIDER_NOT_CONFIGURED,
                "Kakao access tokens need IDSERVICE_KAKAO_APP_ID",
                metadata={"provider": self.provider.value},
            )
        info, _ = self.get_json(self._api_base + TOKEN_INFO_PATH, deadline, bearer=access_token)
        app_id, user_id = info.get("app_id"), info.get("id")
        if not isinstance(app_id, int) or not isinstance(user_id, int):
            raise unavailable(self.provider, "access_token_info without app_id or id")
        if str(app_id) != self._app_id:
            raise token_invalid("Kakao access token of another app")
        if str(user_id) != subject:
            raise token_invalid("Kakao access token of another user")


def _profile_of(me: dict[str, Any], *, subject: str) -> SnsProfile:
    """The person in a /v2/user/me answer; fields the person did not share stay empty."""
    if not isinstance(me.get("id"), int) or str(me["id"]) != subject:
        raise _Malformed("id is not the ID token's subject")
    account = _object(me, "kakao_account")
    profile = _object(account, "profile")
    email = _text(account, "email")
    trusted_email = (
        account.get("is_email_verified") is True and account.get("is_email_valid") is True
    )
    try:
        birth = kakao_birth_date(
            _text(account, "birthyear"), _text(account, "birthday"), _text(account, "birthday_type")
        )
    except ValueError:
        raise _Malformed("birthyear/birthday") from None
    return SnsProfile(
        provider=SnsProvider.KAKAO,
        subject=subject,
        email=email if trusted_email else "",
        name=_text(account, "name"),
        phone_number=_text(account, "phone_number"),
        birth_date=birth,
        ci=_text(account, "ci") or None,
        nickname=_text(profile, "nickname"),
        picture_url=_text(profile, "profile_image_url"),
    )


def _object(container: dict[str, Any], name: str) -> dict[str, Any]:
    value = container.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(f"{name} is not an object")
    return value


def _text(container: dict[str, Any], name: str) -> str:
    value = container.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Malformed(f"{name} is not a string")
    return value
