"""Completed verifications: the person encrypted, referenced by a hashed single-use token."""

from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import Connection, bindparam, select, update

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import VERIFICATION_PERSON
from idservice.adapters.db.repositories.insert_new import InsertNew
from idservice.domain.identity import VerifiedPerson
from idservice.service_layer.ports import StoredVerification, UniqueViolation

_v = t.verifications.c
# Built once, so each call hits SQLAlchemy's compiled cache without rebuilding the statement.
# Parameters named after the columns fill them in; a used verification (its source) is skipped.
_ADD = InsertNew(t.verifications, ("source_hash",))
_GET_BY_TOKEN = select(t.verifications).where(_v.token_hash == bindparam("token_hash"))
_CONSUME = (
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
        row = self._c.execute(_GET_BY_TOKEN, {"token_hash": token_hash}).first()
        if row is None or row.person_ct is None:
            return None
        m = row._mapping
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
        result = self._c.execute(_CONSUME, {"token": token_hash, "now": now})
        return bool(result.rowcount == 1)

    def purge_expired(self, *, now: datetime) -> int:
        """Destroy the person of verifications never used in time; the replay guard stays."""
        result = self._c.execute(
            update(t.verifications)
            .where(_v.expires_at <= now, _v.person_ct.is_not(None))
            .values(person_ct=None)
        )
        return result.rowcount
