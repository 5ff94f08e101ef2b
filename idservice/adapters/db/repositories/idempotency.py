"""Responses of idempotent calls, encrypted, by keyed hash of the caller's key."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, select

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import tables as t
from idservice.adapters.db.compiled import CompiledStatement
from idservice.adapters.db.encrypted_columns import IDEMPOTENT_RESPONSE
from idservice.adapters.db.repositories.insert_new import InsertNew
from idservice.service_layer.ports import IdempotentResult, UniqueViolation

_k = t.idempotency_keys.c
# Built once and run on the driver's cursor (compiled.py).
_GET = CompiledStatement(
    select(t.idempotency_keys).where(
        _k.key_hash == bindparam("key"),
        _k.operation == bindparam("op"),
        _k.expires_at > bindparam("now", type_=t.UtcDateTime()),
    )
)
_DELETE_EXPIRED_KEY = CompiledStatement(
    delete(t.idempotency_keys).where(
        _k.key_hash == bindparam("key"), _k.expires_at <= bindparam("now", type_=t.UtcDateTime())
    )
)
_PUT = InsertNew(
    t.idempotency_keys,
    ("key_hash",),
    columns=("key_hash", "operation", "fingerprint", "response_ct", "created_at", "expires_at"),
)


class SqlIdempotencyRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def get(self, key_hash: str, *, operation: str, now: datetime) -> IdempotentResult | None:
        m = _GET.first(self._c, {"key": key_hash, "op": operation, "now": now})
        if m is None:
            return None
        plain = IDEMPOTENT_RESPONSE.decrypt(self._cipher, key_hash, m["response_ct"])
        return IdempotentResult(fingerprint=m["fingerprint"], response=bytes.fromhex(plain))

    def put(
        self,
        key_hash: str,
        *,
        operation: str,
        fingerprint: str,
        response: bytes,
        now: datetime,
        ttl: timedelta,
    ) -> None:
        """Store; raises UniqueViolation('key_hash') when a concurrent call stored first."""
        # An expired record of the same key is replaced.
        _DELETE_EXPIRED_KEY.rowcount(self._c, {"key": key_hash, "now": now})
        row = {
            "key_hash": key_hash,
            "operation": operation,
            "fingerprint": fingerprint,
            "response_ct": IDEMPOTENT_RESPONSE.encrypt(self._cipher, key_hash, response.hex()),
            "created_at": now,
            "expires_at": now + ttl,
        }
        if not _PUT.execute(self._c, row):
            raise UniqueViolation("key_hash")

    def purge_expired(self, *, now: datetime) -> int:
        """Delete stored responses (they hold sealed session tokens) once their key expired."""
        return self._c.execute(delete(t.idempotency_keys).where(_k.expires_at <= now)).rowcount
