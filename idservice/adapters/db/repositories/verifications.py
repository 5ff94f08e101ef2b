"""Completed verifications: the person encrypted, referenced by a hashed single-use token."""

from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import Connection, bindparam, select, update

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import tables as t
from idservice.adapters.db.compiled import CompiledStatement
from idservice.adapters.db.encrypted_columns import VERIFICATION_PERSON
from idservice.adapters.db.repositories.insert_new import InsertNew
from idservice.domain.identity import VerifiedPerson
from idservice.service_layer.ports import StoredVerification, UniqueViolation

_v = t.verifications.c
# Built once; the sign-up's run on the driver's cursor (compiled.py). A used verification (its
# source) is skipped on insert.
_ADD = InsertNew(
    t.verifications,
    ("source_hash",),
    columns=(
        "id",
        "provider",
        "source_hash",
        "token_hash",
        "person_ct",
        "created_at",
        "expires_at",
    ),
)
_GET_BY_TOKEN = CompiledStatement(
    select(t.verifications).where(_v.token_hash == bindparam("token_hash"))
)
_CONSUME = CompiledStatement(
    update(t.verifications)
    .where(
        _v.token_hash == bindparam("token"),
        _v.consumed_at.is_(None),
        _v.expires_at > bindparam("now", type_=t.UtcDateTime()),
    )
    .values(consumed_at=bindparam("now", type_=t.UtcDateTime()), person_ct=None)
)


class SqlVerificationRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def add(
        self,
        verification_id: str,
        *,
        provider: str,
        source_hash: str,
        token_hash: str,
        person: VerifiedPerson,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        """Insert; raises UniqueViolation('source_hash') when the verification was used before."""
        document = json.dumps(
            {
                "name": person.name,
                "phone_number": person.phone_number,
                "birth_date": person.birth_date.isoformat(),
                "gender": person.gender,
                "is_foreigner": person.is_foreigner,
                "ci": person.ci,
                "di": person.di,
            },
            ensure_ascii=False,
        )
        values = {
            "id": verification_id,
            "provider": provider,
            "source_hash": source_hash,
            "token_hash": token_hash,
            "person_ct": VERIFICATION_PERSON.encrypt(self._cipher, verification_id, document),
            "created_at": now,
            "expires_at": expires_at,
        }
        if not _ADD.execute(self._c, values):
            raise UniqueViolation("source_hash")

    def get_by_token(self, token_hash: str) -> StoredVerification | None:
        m = _GET_BY_TOKEN.first(self._c, {"token_hash": token_hash})
        if m is None or m["person_ct"] is None:
            return None
        data = json.loads(VERIFICATION_PERSON.decrypt(self._cipher, m["id"], m["person_ct"]))
        person = VerifiedPerson(
            name=data["name"],
            phone_number=data["phone_number"],
            birth_date=date.fromisoformat(data["birth_date"]),
            gender=data["gender"],
            is_foreigner=bool(data["is_foreigner"]),
            ci=data["ci"],
            di=data["di"],
        )
        return StoredVerification(
            id=m["id"],
            provider=m["provider"],
            person=person,
            expires_at=m["expires_at"],
            consumed_at=m["consumed_at"],
        )

    def consume(self, token_hash: str, *, now: datetime) -> bool:
        """Use the token once and drop the stored person; False if unknown, already used or
        expired."""
        return _CONSUME.rowcount(self._c, {"token": token_hash, "now": now}) == 1

    def purge_expired(self, *, now: datetime) -> int:
        """Destroy the person of verifications never used in time; the replay guard stays."""
        result = self._c.execute(
            update(t.verifications)
            .where(_v.expires_at <= now, _v.person_ct.is_not(None))
            .values(person_ct=None)
        )
        return result.rowcount
