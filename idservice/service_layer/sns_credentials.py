"""The shape of an SNS credential as the caller sent it, checked before any provider call."""

from __future__ import annotations

import re

from idservice.domain.sns import BEARER_TOKEN, SnsProvider
from idservice.service_layer.ports import SnsCredential
from idservice.service_layer.validation import Violations

# Bounds on what the caller may hand us; real values are far shorter.
MAX_TOKEN_LENGTH = 16 * 1024
MAX_NONCE_LENGTH = 512
MAX_CODE_LENGTH = 2048
MAX_REDIRECT_URI_LENGTH = 2048
# RFC 7636 §4.1: a code_verifier is 43 to 128 characters of [A-Z a-z 0-9 - . _ ~].
MIN_VERIFIER_LENGTH = 43
MAX_VERIFIER_LENGTH = 128
_VERIFIER_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
# RFC 6749 §3.1.2: a redirection URI is an absolute URI (RFC 3986 §4.3: a scheme, no fragment),
# such as `https://app.example/cb` or an app's own `com.example.app:/oauth2redirect`; ASCII
# without spaces, as a URI is.
_REDIRECT_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+")


def check_credential(credential: SnsCredential, *, provider: SnsProvider) -> None:
    """One of {id_token (+ nonce), authorization_code + code_verifier + redirect_uri}, each
    within bounds; `kakao_access_token` only for Kakao. VALIDATION_FAILED names every bad field.
    """
    c = credential
    with Violations() as v:
        if bool(c.id_token) == bool(c.authorization_code):
            v.add("id_token", "give either id_token or authorization_code")
        for field, value, limit in (
            ("id_token", c.id_token, MAX_TOKEN_LENGTH),
            ("nonce", c.nonce, MAX_NONCE_LENGTH),
            ("authorization_code", c.authorization_code, MAX_CODE_LENGTH),
            ("redirect_uri", c.redirect_uri, MAX_REDIRECT_URI_LENGTH),
            ("kakao_access_token", c.kakao_access_token, MAX_TOKEN_LENGTH),
        ):
            if len(value) > limit or not value.isprintable():
                v.add(field, f"must be at most {limit} printable characters")
        if c.authorization_code:
            if not c.redirect_uri:
                v.add("redirect_uri", "is required with authorization_code")
            elif (
                len(c.redirect_uri) <= MAX_REDIRECT_URI_LENGTH
                and c.redirect_uri.isprintable()  # else named above, once
                and (not _REDIRECT_URI.fullmatch(c.redirect_uri) or "#" in c.redirect_uri)
            ):
                v.add("redirect_uri", "must be an absolute URI without a fragment")
            verifier = c.code_verifier
            if (
                not (MIN_VERIFIER_LENGTH <= len(verifier) <= MAX_VERIFIER_LENGTH)
                or not set(verifier) <= _VERIFIER_CHARACTERS
            ):
                v.add("code_verifier", "must be an RFC 7636 code verifier (PKCE S256)")
        access = c.kakao_access_token
        if (
            access
            and len(access) <= MAX_TOKEN_LENGTH
            and access.isprintable()  # else named above, once
            and not BEARER_TOKEN.fullmatch(access)
        ):
            v.add("kakao_access_token", "must be an OAuth bearer token (RFC 6750 b64token)")
        if c.kakao_access_token and provider is not SnsProvider.KAKAO:
            v.add("kakao_access_token", "is for Kakao only")
