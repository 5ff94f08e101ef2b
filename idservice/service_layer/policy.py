"""The business settings use cases follow, taken from configuration once by bootstrap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from idservice.domain.lockout import LockoutPolicy
from idservice.service_layer.rate_limits import RateLimits


@dataclass(frozen=True, slots=True)
class Policy:
    """What the operator decides (contract §1); the rules themselves live in the domain."""

    terms_version: str = "2024-05-15"
    privacy_policy_version: str = "2024-05-15"
    require_identity_verification: bool = True
    # The configured identity provider, used when a call names none.
    identity_provider: str = "sandbox"
    refresh_token_ttl: timedelta = timedelta(days=30)
    guardian_consent_window: timedelta = timedelta(days=5)
    rejoin_cooldown: timedelta = timedelta(days=30)
    # 통신비밀보호법 시행령 제41조: connection-log entries are kept 3 months, then deleted.
    connection_log_retention: timedelta = timedelta(days=90)
    lockout: LockoutPolicy = LockoutPolicy(threshold=5, duration=timedelta(minutes=15))
    # 안전성 확보조치 기준 제8조: access-audit records are kept at least 2 years, then deleted.
    access_audit_retention: timedelta = timedelta(days=730)
    # Per end-user address, when a trusted proxy names it (service_layer/rate_limits.py).
    rate_limits: RateLimits = RateLimits()
