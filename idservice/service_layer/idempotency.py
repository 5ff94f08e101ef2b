"""Idempotent calls: the same key and body return the first result; another body is refused.

Keys are stored only as keyed hashes, bodies as a keyed fingerprint, results encrypted. Secrets
in a stored result (a session's tokens) are sealed under the caller's raw key, which the database
never holds: a copy of it with the data keys yields no live token unless the key can be guessed.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from idservice.domain.errors import DomainError, Reason, invalid
from idservice.service_layer.ports import (
    SecretsCipher,
    TokenPurpose,
    UnitOfWork,
    UnitOfWorkFactory,
)

# How long a key returns the first result (the mobile backend retries within seconds; a day
# covers app restarts and queued retries).
IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_IDEMPOTENCY_KEY_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Operation:
    """An idempotent operation: its name scopes keys, its purposes separate the hashes."""

    name: str
    key_purpose: TokenPurpose
    body_purpose: TokenPurpose


SIGNUP = Operation("signup", TokenPurpose.SIGNUP_KEY, TokenPurpose.SIGNUP_BODY)


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A caller's key for one operation, with the keyed hashes stored in its place."""

    operation: Operation
    raw: str = field(repr=False)
    hash: str
    fingerprint: str

    @property
    def sealing_context(self) -> str:
        return f"idempotency-session:{self.hash}"


def key_reused(message: str = "the idempotency key was used with another request") -> DomainError:
    return DomainError(Reason.IDEMPOTENCY_KEY_REUSED, message)


def key_for(
    raw: str, *, operation: Operation, body: Mapping[str, object], cipher: SecretsCipher
) -> IdempotencyKey | None:
    """The key of a call (None when the caller sent none); `body` leaves out the key itself.

    Leave secrets out of `body` too: a fast keyed hash of a password would be guessable from a
    database copy; check such values against their slow hash on a replay instead.
    """
    if not raw:
        return None
    if len(raw) > MAX_IDEMPOTENCY_KEY_LENGTH or not raw.isprintable():
        raise invalid(
            "idempotency_key", f"must be 1..{MAX_IDEMPOTENCY_KEY_LENGTH} printable characters"
        )
    canonical = json.dumps(dict(body), sort_keys=True, ensure_ascii=False)
    return IdempotencyKey(
        operation=operation,
        raw=raw,
        hash=cipher.token_hash(raw, purpose=operation.key_purpose),
        fingerprint=cipher.token_hash(canonical, purpose=operation.body_purpose),
    )


def recall(
    key: IdempotencyKey, *, now: datetime, uow: UnitOfWorkFactory
) -> dict[str, object] | None:
    """The first result stored under `key`, if any; IDEMPOTENCY_KEY_REUSED for another body."""
    with uow(readonly=True) as tx:
        stored = tx.idempotency.get(key.hash, operation=key.operation.name, now=now)
    if stored is None:
        return None
    if not hmac.compare_digest(stored.fingerprint, key.fingerprint):
        raise key_reused()
    document: dict[str, object] = json.loads(stored.response)
    return document


def remember(
    tx: UnitOfWork, key: IdempotencyKey, document: Mapping[str, object], *, now: datetime
) -> None:
    """Store the first result in the call's own transaction (UniqueViolation if one won)."""
    tx.idempotency.put(
        key.hash,
        operation=key.operation.name,
        fingerprint=key.fingerprint,
        response=json.dumps(dict(document)).encode(),
        now=now,
        ttl=IDEMPOTENCY_TTL,
    )


def seal(key: IdempotencyKey, plaintext: str, *, cipher: SecretsCipher) -> str:
    """`plaintext` sealed so that only a caller holding the raw key can open it."""
    return cipher.seal(plaintext, secret=key.raw, context=key.sealing_context)


def unseal(key: IdempotencyKey, sealed: object, *, cipher: SecretsCipher) -> str | None:
    """What `seal` sealed under this key; None if there is nothing it can open."""
    if not isinstance(sealed, str):
        return None
    try:
        return cipher.unseal(sealed, secret=key.raw, context=key.sealing_context)
    except ValueError:
        return None
