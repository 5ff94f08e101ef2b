"""What the use cases need, assembled once by the composition root (bootstrap)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from idservice.config import Settings
from idservice.domain.model import LockoutPolicy

if TYPE_CHECKING:
    # The use cases are typed against the SQL adapters; they only call their methods.
    from idservice.adapters.crypto import FieldCipher
    from idservice.adapters.db.unit_of_work import SqlUnitOfWork
    from idservice.adapters.hashing import PasswordHasher
    from idservice.adapters.identity.base import IdentityProvider
    from idservice.adapters.tokens import AccessTokenIssuer


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Services:
    """Dependencies of every use case; tests build one with real adapters."""

    settings: Settings
    uow: Callable[..., SqlUnitOfWork]
    hasher: PasswordHasher
    tokens: AccessTokenIssuer
    cipher: FieldCipher
    identity_providers: Mapping[str, IdentityProvider]
    clock: Callable[[], datetime] = utc_now

    @property
    def lockout(self) -> LockoutPolicy:
        return LockoutPolicy(self.settings.lockout_threshold, self.settings.lockout_duration)
