"""Signed-in sessions: a session lives until it expires or is revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class RevokeReason(StrEnum):
    """Why a session ended before its time (kept for support for a day)."""

    LOGOUT = "logout"
    PASSWORD_CHANGED = "password_changed"
    REFRESH_REUSE = "refresh_reuse"
    # A Google or Kakao sign-in was unlinked: the sessions it opened end with it.
    SIGN_IN_UNLINKED = "sign_in_unlinked"


@dataclass(slots=True)
class Session:
    """A signed-in session; its refresh tokens rotate."""

    id: str
    account_id: str
    amr: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now
