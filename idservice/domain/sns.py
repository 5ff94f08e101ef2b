"""Sign-in with Google and Kakao: who a provider says the person is, and what we may take from it.

Privacy policy 제1조: most people arrive through Kakao or Google; their nickname and profile
picture are kept with the link. An SNS identity is never attached to an account because an email
matches (account takeover); it is linked only by a signed-in person or created by a SignUp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

# Issue of the SNS login: a signup ticket lives at most 15 minutes, long enough to verify
# identity and fill in a form.
SIGNUP_TICKET_MINUTES = 15
# RFC 6750 §2.1: a bearer token is a b64token, 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
# "+" / "/" ) *"=". A Kakao access token goes into an Authorization header as one.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# Kakao's `birthday_type` values; a lunar birthday is never a solar birth date.
KAKAO_SOLAR = "SOLAR"


class SnsProvider(StrEnum):
    """The SNS providers; the strings are contract sign-in method values."""

    GOOGLE = "google"
    KAKAO = "kakao"


@dataclass(frozen=True, slots=True, repr=False)
class SnsProfile:
    """What a provider vouched for about one person (after validation).

    `subject` is the provider's stable id of the person; `email` is set only when the provider
    says it is verified. Every other field may be empty: providers share what the person allowed.
    """

    provider: SnsProvider
    subject: str
    email: str = ""
    name: str = ""
    phone_number: str = ""
    birth_date: date | None = None
    ci: str | None = None
    nickname: str = ""
    picture_url: str = ""
    # When the person signed in at the provider: the ID token's `auth_time`, else its `iat`.
    signed_in_at: datetime | None = None

    def __repr__(self) -> str:
        # Reprs end up in logs and tracebacks: only which fields are present.
        present = [
            label
            for label, value in (
                ("email", self.email),
                ("name", self.name),
                ("phone", self.phone_number),
                ("birth_date", self.birth_date),
                ("ci", self.ci),
            )
            if value
        ]
        return f"SnsProfile({self.provider.value}, present={present})"


def kakao_birth_date(birthyear: str, birthday: str, birthday_type: str) -> date | None:
    """The solar birth date Kakao gives (`birthyear` YYYY, `birthday` MMDD), or None.

    None when the person shared no full date, or when it is lunar (`birthday_type` LUNAR): a
    lunar birthday is not the solar date and is never taken as one; `age_range` alone never
    proves an age either. A malformed value raises ValueError (the provider's answer is bad).
    """
    if not birthyear or not birthday or birthday_type != KAKAO_SOLAR:
        return None
    if not (len(birthyear) == 4 and len(birthday) == 4 and (birthyear + birthday).isdigit()):
        raise ValueError("Kakao birthyear/birthday are not YYYY and MMDD")
    if not (birthyear + birthday).isascii():
        raise ValueError("Kakao birthyear/birthday are not ASCII digits")
    return date(int(birthyear), int(birthday[:2]), int(birthday[2:]))
