"""SNS identities linked to accounts, and the signup tickets of SNS logins that found none."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import encrypted_columns as ec
from idservice.adapters.db import tables as t
from idservice.adapters.db.errors import unique_column
from idservice.domain.sns import SnsProfile, SnsProvider
from idservice.service_layer.ports import SnsLink, StoredTicket, UniqueViolation

_ACCOUNT_PROVIDER = "account_provider"


class SqlSnsIdentityRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def subject_index(self, provider: SnsProvider, subject: str) -> str:
        return self._cipher.blind_index(f"{provider.value}:{subject}", purpose="sns-subject")

    def add(self, link: SnsLink) -> None:
        """Insert; UniqueViolation('subject_index') or ('account_provider') on a duplicate."""
        enc = self._cipher
        values = {
            "id": link.id,
            "account_id": link.account_id,
            "provider": link.provider.value,
            "subject_index": self.subject_index(link.provider, link.subject),
            "subject_ct": ec.SNS_SUBJECT.encrypt(enc, link.id, link.subject),
            "nickname_ct": ec.SNS_NICKNAME.encrypt(enc, link.id, link.nickname),
            "picture_ct": ec.SNS_PICTURE.encrypt(enc, link.id, link.picture_url),
            "created_at": link.created_at,
            "last_login_at": link.last_login_at,
        }
        try:
            with self._c.begin_nested():
                self._c.execute(insert(t.sns_identities).values(**values))
        except IntegrityError as exc:
            # PostgreSQL names the constraint, SQLite the columns; a foreign-key failure is
            # neither and stays an integrity error.
            column = unique_column(exc, ("subject_index", "account_provider", ".provider"))
            if column is None:
                raise
            if column != "subject_index" and self.find(link.provider, link.subject) is not None:
                # SQLite may report the (account, provider) index first when both are taken.
                column = "subject_index"
            raise UniqueViolation(
                "subject_index" if column == "subject_index" else _ACCOUNT_PROVIDER
            ) from None

    def find(self, provider: SnsProvider, subject: str) -> SnsLink | None:
        s = t.sns_identities.c
        row = self._c.execute(
            select(t.sns_identities).where(s.subject_index == self.subject_index(provider, subject))
        ).first()
        return None if row is None else self._link(row._mapping)

    def of_account(self, account_id: str) -> list[SnsLink]:
        s = t.sns_identities.c
        rows = self._c.execute(
            select(t.sns_identities).where(s.account_id == account_id).order_by(s.provider)
        ).all()
        return [self._link(row._mapping) for row in rows]

    def touch(self, link_id: str, *, nickname: str, picture_url: str, now: datetime) -> bool:
        enc = self._cipher
        result = self._c.execute(
            update(t.sns_identities)
            .where(t.sns_identities.c.id == link_id)
            .values(
                nickname_ct=ec.SNS_NICKNAME.encrypt(enc, link_id, nickname),
                picture_ct=ec.SNS_PICTURE.encrypt(enc, link_id, picture_url),
                last_login_at=now,
            )
        )
        return bool(result.rowcount == 1)

    def remove(self, account_id: str, provider: SnsProvider) -> bool:
        s = t.sns_identities.c
        result = self._c.execute(
            delete(t.sns_identities).where(s.account_id == account_id, s.provider == provider.value)
        )
        return bool(result.rowcount == 1)

    def _link(self, m: Any) -> SnsLink:
        link_id: str = m["id"]

        def dec(column: ec.EncryptedColumn) -> str:
            value = m[column.column]
            return "" if value is None else column.decrypt(self._cipher, link_id, value)

        return SnsLink(
            id=link_id,
            account_id=m["account_id"],
            provider=SnsProvider(m["provider"]),
            subject=dec(ec.SNS_SUBJECT),
            nickname=dec(ec.SNS_NICKNAME),
            picture_url=dec(ec.SNS_PICTURE),
            created_at=m["created_at"],
            last_login_at=m["last_login_at"],
        )


class SqlSignupTicketRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def add(
        self, ticket_hash: str, profile: SnsProfile, *, now: datetime, expires_at: datetime
    ) -> None:
        document = json.dumps(
            {
                "provider": profile.provider.value,
                "subject": profile.subject,
                "email": profile.email,
                "name": profile.name,
                "phone_number": profile.phone_number,
                "birth_date": profile.birth_date.isoformat() if profile.birth_date else None,
                "ci": profile.ci,
                "nickname": profile.nickname,
                "picture_url": profile.picture_url,
            },
            ensure_ascii=False,
        )
        k = t.sns_signup_tickets.c
        subject_index = self._cipher.blind_index(
            f"{profile.provider.value}:{profile.subject}", purpose="sns-subject"
        )
        # One unused ticket per person: logging in again replaces it (no pile of profiles).
        self._c.execute(
            delete(t.sns_signup_tickets).where(
                k.subject_index == subject_index, k.used_at.is_(None)
            )
        )
        self._c.execute(
            insert(t.sns_signup_tickets).values(
                ticket_hash=ticket_hash,
                subject_index=subject_index,
                profile_ct=ec.SIGNUP_TICKET_PROFILE.encrypt(self._cipher, ticket_hash, document),
                created_at=now,
                expires_at=expires_at,
            )
        )

    def get(self, ticket_hash: str, *, now: datetime) -> StoredTicket | None:
        k = t.sns_signup_tickets.c
        row = self._c.execute(
            select(k.profile_ct, k.expires_at).where(
                k.ticket_hash == ticket_hash,
                k.used_at.is_(None),
                k.expires_at > now,
                k.profile_ct.is_not(None),
            )
        ).first()
        if row is None:
            return None
        data = json.loads(ec.SIGNUP_TICKET_PROFILE.decrypt(self._cipher, ticket_hash, row[0]))
        birth = data["birth_date"]
        profile = SnsProfile(
            provider=SnsProvider(data["provider"]),
            subject=data["subject"],
            email=data["email"],
            name=data["name"],
            phone_number=data["phone_number"],
            birth_date=date.fromisoformat(birth) if birth else None,
            ci=data["ci"],
            nickname=data["nickname"],
            picture_url=data["picture_url"],
        )
        return StoredTicket(profile=profile, expires_at=row[1])

    def consume(self, ticket_hash: str, *, now: datetime) -> bool:
        k = t.sns_signup_tickets.c
        result = self._c.execute(
            update(t.sns_signup_tickets)
            .where(k.ticket_hash == ticket_hash, k.used_at.is_(None), k.expires_at > now)
            .values(used_at=now, profile_ct=None)
        )
        return bool(result.rowcount == 1)

    def purge_expired(self, *, now: datetime) -> int:
        """Delete tickets past their life (a used one holds no profile any more)."""
        k = t.sns_signup_tickets.c
        return self._c.execute(delete(t.sns_signup_tickets).where(k.expires_at <= now)).rowcount
