"""Limits per end-user address, shared by every instance through the attempt counters.

An end-user address is known only when a trusted proxy names it (`x-forwarded-for`); without
one every call comes from a few internal services and load tests, and nothing is limited per
address. The counters store a keyed hash of the address (an IPv6 address by its /64, what one
subscriber gets), never the address. Each limit is a fixed window: past `limit` calls in it, the
address is refused with RATE_LIMITED until the window ends, and RetryInfo says when that is.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.ports import (
    SecretsCipher,
    TokenPurpose,
    UnitOfWork,
    UnitOfWorkFactory,
)

logger = logging.getLogger(__name__)

IPV6_SUBSCRIBER_PREFIX = 64


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` counted calls per `window`."""

    limit: int
    window: timedelta


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The limits per end-user address (configured as IDSERVICE_RATE_LIMIT_*)."""

    # PasswordLogin: failed logins (a wrong password or an unknown email).
    failed_logins: RateLimit = RateLimit(20, timedelta(minutes=1))
    # CompleteVerification: every call (each is a call to the provider).
    verifications: RateLimit = RateLimit(30, timedelta(minutes=1))
    # Approve/RejectConsentRequest: consent codes tried, right or wrong, on any request.
    consent_codes: RateLimit = RateLimit(20, timedelta(minutes=10))
    # ResendConsentNotification: every call (each may send a message to someone's phone).
    consent_resends: RateLimit = RateLimit(10, timedelta(minutes=10))


class Scope(StrEnum):
    """What a counter counts (the counters' `scope` column)."""

    FAILED_LOGINS = "login-address"
    VERIFICATIONS = "verification-address"
    CONSENT_CODES = "consent-code"
    CONSENT_RESENDS = "resend-address"


@dataclass(frozen=True, slots=True)
class Counted:
    """One counted call of an address, which `release` can take back."""

    scope: Scope
    key: str
    at: datetime


def address_key(address: str, *, cipher: SecretsCipher) -> str:
    """The keyed hash a counter stores for an end-user address; "" when there is none."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        normalized = address
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            normalized = str(ip.ipv4_mapped)
        elif isinstance(ip, ipaddress.IPv6Address):
            network = ipaddress.IPv6Network((ip, IPV6_SUBSCRIBER_PREFIX), strict=False)
            normalized = str(network)
        else:
            normalized = str(ip)
    return cipher.token_hash(normalized, purpose=TokenPurpose.CLIENT_ADDRESS)


def rate_limited(until: datetime | None, now: datetime, message: str) -> DomainError:
    """RESOURCE_EXHAUSTED RATE_LIMITED with the wait until `until` (at least a second)."""
    wait = max((until - now).total_seconds(), 1.0) if until else 1.0
    return DomainError(Reason.RATE_LIMITED, message, retry_after_seconds=wait)


def hit(
    tx: UnitOfWork, scope: Scope, key: str, limit: RateLimit, *, now: datetime
) -> DomainError | None:
    """Count one call of `key` in the caller's transaction; the refusal to raise once it has
    committed (the count is the refusal's only write), or None when admitted."""
    gate = tx.attempt_counters.hit(
        scope.value, key, now=now, window=limit.window, limit=limit.limit, block_for=None
    )
    if gate.admitted:
        return None
    return rate_limited(gate.blocked_until, now, _MESSAGES[scope])


def count_address(
    uow: UnitOfWorkFactory,
    scope: Scope,
    address: str,
    limit: RateLimit,
    *,
    now: datetime,
    cipher: SecretsCipher,
) -> Counted | None:
    """Count one call of an end-user address in a transaction of its own, before the call does
    any other work; raise RATE_LIMITED past the limit. None when there is no address."""
    key = address_key(address, cipher=cipher)
    if not key:
        return None
    with uow() as tx:
        refusal = hit(tx, scope, key, limit, now=now)
        tx.commit()
    if refusal is not None:
        raise refusal
    return Counted(scope, key, now)


def release(uow: UnitOfWorkFactory, counted: Counted | None) -> None:
    """Take back a counted call that turned out not to count (e.g. a successful login).

    Best effort: the call's own work has already committed, and its answer matters more than a
    count one too high in a window that ends within minutes.
    """
    if counted is None:
        return
    try:
        with uow() as tx:
            tx.attempt_counters.release(counted.scope.value, counted.key, counted_at=counted.at)
            tx.commit()
    except Exception as exc:  # see above; the type is logged, never the address
        logger.warning("an attempt counter was not released: %s", type(exc).__name__)


_MESSAGES = {
    Scope.FAILED_LOGINS: "too many failed logins from this address; wait before trying again",
    Scope.VERIFICATIONS: "too many verifications from this address; wait before trying again",
    Scope.CONSENT_CODES: "too many consent codes were tried; wait before trying again",
    Scope.CONSENT_RESENDS: "too many consent messages were asked for; wait before asking again",
}
