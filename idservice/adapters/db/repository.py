"""Repositories over SQLAlchemy Core: plaintext records in, ciphertext and blind indexes stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from idservice.adapters.crypto import FieldCipher, FieldDecryptError
from idservice.adapters.db import tables as t
from idservice.domain.errors import DomainError, Reason
from idservice.domain.identity import VerifiedPerson
from idservice.domain.model import (
    Account,
    AccountStatus,
    Consents,
    LockoutPolicy,
    OutboxEvent,
    Session,
)
from idservice.service_layer.ports import (
    IdempotentResult,
    PendingEvent,
    RefreshRecord,
    StoredVerification,
    UniqueViolation,
)


def _unique_column(error: IntegrityError, columns: tuple[str, ...]) -> str | None:
    text = str(error.orig)
    for column in columns:
        if column in text:
            return column
    return None


def account_context(column: str, account_id: str) -> str:
    """Associated data of an account field: binds the ciphertext to its column and row."""
    return f"accounts.{column}:{account_id}"


# An admitted password attempt that never reports back (a crashed process) stops counting
# after this long; real attempts finish in well under a second.
ATTEMPT_IN_FLIGHT_TTL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class LoginGate:
    """Whether a password attempt may be checked now; if not, whether a lock is the reason."""

    admitted: bool
    locked_until: datetime | None = None


class AccountRepository:
    """Accounts; the database's unique indexes decide email and CI/DI uniqueness."""

    _UNIQUE = ("email_index", "ci_index", "di_index")

    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    # -- indexes -------------------------------------------------------------------------
    def email_index(self, email_key: str) -> str:
        return self._cipher.blind_index(email_key, purpose="email")

    def ci_index(self, ci: str) -> str:
        return self._cipher.blind_index(ci, purpose="ci")

    def di_index(self, di: str) -> str:
        return self._cipher.blind_index(di, purpose="di")

    # -- writes --------------------------------------------------------------------------
    def add(self, account: Account, *, email_key: str | None) -> None:
        """Insert; raises UniqueViolation('email_index'|'ci_index'|'di_index') on a duplicate."""
        row = self._to_row(account, email_key=email_key)
        row["created_at"] = account.created_at
        try:
            with self._c.begin_nested():
                self._c.execute(insert(t.accounts).values(**row))
        except IntegrityError as exc:
            column = _unique_column(exc, self._UNIQUE)
            if column is None:
                raise
            raise UniqueViolation(column) from None

    def save_profile(
        self,
        account_id: str,
        *,
        name: str | None = None,
        phone_number: str | None = None,
        birth_date: date | None = None,
        now: datetime,
    ) -> None:
        """Write only the given fields, so concurrent corrections of other fields survive."""
        enc = self._encrypt_field
        values: dict[str, object] = {"updated_at": now}
        if name is not None:
            values["name_ct"] = enc(account_id, "name", name)
        if phone_number is not None:
            values["phone_ct"] = enc(account_id, "phone", phone_number)
        if birth_date is not None:
            values["birth_date_ct"] = enc(account_id, "birth_date", birth_date.isoformat())
        self._c.execute(update(t.accounts).where(t.accounts.c.id == account_id).values(values))

    def delete_pending(self, account_id: str) -> bool:
        """Destroy an account still waiting for guardian consent (never any other account).

        Its consent requests go with it (ON DELETE CASCADE); it never had sessions.
        """
        a = t.accounts.c
        result = self._c.execute(
            delete(t.accounts).where(
                a.id == account_id, a.status == AccountStatus.PENDING_GUARDIAN_CONSENT.value
            )
        )
        return bool(result.rowcount == 1)

    def replace_password_hash(
        self, account_id: str, *, expected: str, new: str | None, now: datetime
    ) -> bool:
        """Swap the hash only if it is still `expected` (None: keep it, just lock the row).

        False means the password changed since it was checked: the check no longer holds. The
        row lock also orders this transaction against a concurrent ChangePassword.
        """
        a = t.accounts.c
        values: dict[str, object] = (
            {"password_hash": expected}
            if new is None
            else {"password_hash": new, "updated_at": now}
        )
        result = self._c.execute(
            update(t.accounts).where(a.id == account_id, a.password_hash == expected).values(values)
        )
        return bool(result.rowcount == 1)

    def begin_login_attempt(
        self, account_id: str, *, now: datetime, policy: LockoutPolicy
    ) -> LoginGate:
        """Admit a password attempt before its outcome is known, or say why not.

        Failures so far plus attempts still in flight must stay under the threshold, so no
        burst of concurrent guesses can check more passwords than the lock allows (korea-rules
        Storage 2). In-flight marks expire after ATTEMPT_IN_FLIGHT_TTL in case a process dies
        between begin and end.
        """
        a = t.accounts.c
        in_flight = case((a.attempts_expire_at > now, a.attempts_in_flight), else_=0)
        admitted = self._c.execute(
            update(t.accounts)
            .where(
                a.id == account_id,
                or_(a.locked_until.is_(None), a.locked_until <= now),
                a.failed_logins + in_flight < policy.threshold,
            )
            .values(
                attempts_in_flight=in_flight + 1,
                attempts_expire_at=now + ATTEMPT_IN_FLIGHT_TTL,
            )
        ).rowcount
        if admitted == 1:
            return LoginGate(admitted=True)
        until = self._c.execute(select(a.locked_until).where(a.id == account_id)).scalar()
        if isinstance(until, datetime) and until > now:
            return LoginGate(admitted=False, locked_until=until)
        return LoginGate(admitted=False)

    def end_login_attempt(
        self, account_id: str, *, succeeded: bool, now: datetime, policy: LockoutPolicy
    ) -> None:
        """Record an admitted attempt's outcome; the failure that reaches the threshold locks."""
        a = t.accounts.c
        in_flight = case((a.attempts_in_flight > 0, a.attempts_in_flight - 1), else_=0)
        if succeeded:
            values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        else:
            reaches = a.failed_logins + 1 >= policy.threshold
            values = {
                "failed_logins": case((reaches, 0), else_=a.failed_logins + 1),
                "locked_until": case((reaches, now + policy.duration), else_=a.locked_until),
            }
        self._c.execute(
            update(t.accounts)
            .where(a.id == account_id)
            .values(attempts_in_flight=in_flight, **values)
        )

    # -- reads ---------------------------------------------------------------------------
    def get(self, account_id: str) -> Account | None:
        row = self._c.execute(select(t.accounts).where(t.accounts.c.id == account_id)).first()
        return None if row is None else self._from_row(row._mapping)

    def get_by_email(self, email_key: str) -> Account | None:
        index = self.email_index(email_key)
        row = self._c.execute(select(t.accounts).where(t.accounts.c.email_index == index)).first()
        return None if row is None else self._from_row(row._mapping)

    def find_by_identity(self, *, ci: str | None, di: str | None) -> Account | None:
        conditions = []
        if ci:
            conditions.append(t.accounts.c.ci_index == self.ci_index(ci))
        if di:
            conditions.append(t.accounts.c.di_index == self.di_index(di))
        if not conditions:
            return None
        row = self._c.execute(select(t.accounts).where(or_(*conditions))).first()
        return None if row is None else self._from_row(row._mapping)

    def rejoin_hold_until(
        self, *, ci: str | None, di: str | None, now: datetime
    ) -> datetime | None:
        """End of the re-join cooldown of a withdrawn person with this CI or DI, if running."""
        conditions = []
        if ci:
            conditions.append(t.rejoin_holds.c.ci_index == self.ci_index(ci))
        if di:
            conditions.append(t.rejoin_holds.c.di_index == self.di_index(di))
        if not conditions:
            return None
        value = self._c.execute(
            select(func.max(t.rejoin_holds.c.hold_until)).where(
                and_(or_(*conditions), t.rejoin_holds.c.hold_until > now)
            )
        ).scalar()
        return value if isinstance(value, datetime) else None

    def purge_rejoin_holds(self, *, now: datetime) -> int:
        """Release CI/DI blind indexes whose re-join cooldown is over."""
        return self._c.execute(
            delete(t.rejoin_holds).where(t.rejoin_holds.c.hold_until <= now)
        ).rowcount

    def add_rejoin_hold(
        self, hold_id: str, *, ci: str | None, di: str | None, until: datetime
    ) -> None:
        self._c.execute(
            insert(t.rejoin_holds).values(
                id=hold_id,
                ci_index=self.ci_index(ci) if ci else None,
                di_index=self.di_index(di) if di else None,
                hold_until=until,
            )
        )

    # -- mapping -------------------------------------------------------------------------
    def _encrypt_field(self, account_id: str, column: str, value: str) -> str:
        return self._cipher.encrypt(value, context=account_context(column, account_id))

    def _decrypt_field(self, account_id: str, column: str, value: str | None) -> str | None:
        if value is None:
            return None
        return self._cipher.decrypt(value, context=account_context(column, account_id))

    def _to_row(self, a: Account, *, email_key: str | None) -> dict[str, Any]:
        enc = self._encrypt_field
        return {
            "id": a.id,
            "status": a.status.value,
            "email_ct": enc(a.id, "email", a.email) if a.email else None,
            "email_index": self.email_index(email_key) if email_key else None,
            "name_ct": enc(a.id, "name", a.name),
            "phone_ct": enc(a.id, "phone", a.phone_number),
            "birth_date_ct": enc(a.id, "birth_date", a.birth_date.isoformat()),
            "identity_verified": a.identity_verified,
            "ci_ct": enc(a.id, "ci", a.ci) if a.ci else None,
            "ci_index": self.ci_index(a.ci) if a.ci else None,
            "di_ct": enc(a.id, "di", a.di) if a.di else None,
            "di_index": self.di_index(a.di) if a.di else None,
            "password_hash": a.password_hash,
            "failed_logins": a.failed_logins,
            "locked_until": a.locked_until,
            "terms_version": a.consents.terms_version,
            "privacy_policy_version": a.consents.privacy_policy_version,
            "terms_accepted_at": a.consents.accepted_at,
            "marketing_opt_in": a.consents.marketing_opt_in,
            "marketing_updated_at": a.consents.marketing_updated_at,
            "processing_suspended": a.consents.processing_suspended,
            "updated_at": a.created_at,
        }

    def _from_row(self, r: Any) -> Account:
        account_id: str = r["id"]
        dec = self._decrypt_field
        birth = dec(account_id, "birth_date", r["birth_date_ct"])
        assert birth is not None
        return Account(
            id=account_id,
            status=AccountStatus(r["status"]),
            email=dec(account_id, "email", r["email_ct"]),
            name=dec(account_id, "name", r["name_ct"]) or "",
            phone_number=dec(account_id, "phone", r["phone_ct"]) or "",
            birth_date=date.fromisoformat(birth),
            identity_verified=bool(r["identity_verified"]),
            ci=dec(account_id, "ci", r["ci_ct"]),
            di=dec(account_id, "di", r["di_ct"]),
            password_hash=r["password_hash"],
            failed_logins=r["failed_logins"],
            locked_until=r["locked_until"],
            created_at=r["created_at"],
            consents=Consents(
                terms_version=r["terms_version"],
                privacy_policy_version=r["privacy_policy_version"],
                accepted_at=r["terms_accepted_at"],
                marketing_opt_in=bool(r["marketing_opt_in"]),
                marketing_updated_at=r["marketing_updated_at"],
                processing_suspended=bool(r["processing_suspended"]),
            ),
        )


class SessionRepository:
    """Sessions and their rotating refresh tokens (stored as keyed hashes only)."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add(self, session: Session) -> None:
        self._c.execute(
            insert(t.sessions).values(
                id=session.id,
                account_id=session.account_id,
                amr=",".join(session.amr),
                created_at=session.created_at,
                expires_at=session.expires_at,
            )
        )

    def add_refresh_token(
        self, token_hash: str, *, session_id: str, now: datetime, expires_at: datetime
    ) -> None:
        self._c.execute(
            insert(t.refresh_tokens).values(
                token_hash=token_hash, session_id=session_id, created_at=now, expires_at=expires_at
            )
        )

    def get(self, session_id: str) -> Session | None:
        row = self._c.execute(select(t.sessions).where(t.sessions.c.id == session_id)).first()
        return None if row is None else self._session(row._mapping)

    def find_refresh(self, token_hash: str) -> RefreshRecord | None:
        row = self._c.execute(
            select(
                t.refresh_tokens.c.expires_at.label("token_expires_at"),
                t.refresh_tokens.c.used_at,
                t.sessions,
            )
            .join(t.sessions, t.sessions.c.id == t.refresh_tokens.c.session_id)
            .where(t.refresh_tokens.c.token_hash == token_hash)
        ).first()
        if row is None:
            return None
        m = row._mapping
        return RefreshRecord(
            session=self._session(m), expires_at=m["token_expires_at"], used_at=m["used_at"]
        )

    def mark_refresh_used(self, token_hash: str, *, now: datetime) -> bool:
        """Use a refresh token once; False when another call used it first."""
        result = self._c.execute(
            update(t.refresh_tokens)
            .where(
                t.refresh_tokens.c.token_hash == token_hash, t.refresh_tokens.c.used_at.is_(None)
            )
            .values(used_at=now)
        )
        return result.rowcount == 1

    def revoke(self, session_id: str, *, now: datetime, reason: str) -> bool:
        result = self._c.execute(
            update(t.sessions)
            .where(t.sessions.c.id == session_id, t.sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return result.rowcount == 1

    def revoke_others(
        self, account_id: str, *, keep: str | None, now: datetime, reason: str
    ) -> int:
        conditions = [t.sessions.c.account_id == account_id, t.sessions.c.revoked_at.is_(None)]
        if keep:
            conditions.append(t.sessions.c.id != keep)
        result = self._c.execute(
            update(t.sessions).where(*conditions).values(revoked_at=now, revoked_reason=reason)
        )
        return result.rowcount

    def purge_ended(self, *, now: datetime, revoked_before: datetime) -> int:
        """Delete expired sessions and those revoked before `revoked_before` (tokens cascade)."""
        ended = or_(t.sessions.c.expires_at <= now, t.sessions.c.revoked_at <= revoked_before)
        ids = select(t.sessions.c.id).where(ended)
        self._c.execute(delete(t.refresh_tokens).where(t.refresh_tokens.c.session_id.in_(ids)))
        return self._c.execute(delete(t.sessions).where(ended)).rowcount

    @staticmethod
    def _session(m: Any) -> Session:
        return Session(
            id=m["id"],
            account_id=m["account_id"],
            amr=tuple(a for a in str(m["amr"]).split(",") if a),
            created_at=m["created_at"],
            expires_at=m["expires_at"],
            revoked_at=m["revoked_at"],
        )


class VerificationRepository:
    """Completed verifications: the person encrypted, referenced by a hashed single-use token."""

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
            "person_ct": self._cipher.encrypt(
                document, context=f"verifications.person:{verification_id}"
            ),
            "created_at": now,
            "expires_at": expires_at,
        }
        try:
            with self._c.begin_nested():
                self._c.execute(insert(t.verifications).values(**values))
        except IntegrityError as exc:
            if _unique_column(exc, ("source_hash",)) is None:
                raise
            raise UniqueViolation("source_hash") from None

    def get_by_token(self, token_hash: str) -> StoredVerification | None:
        row = self._c.execute(
            select(t.verifications).where(t.verifications.c.token_hash == token_hash)
        ).first()
        if row is None or row.person_ct is None:
            return None
        m = row._mapping
        data = json.loads(
            self._cipher.decrypt(m["person_ct"], context=f"verifications.person:{m['id']}")
        )
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

    def consume(self, verification_id: str, *, now: datetime) -> bool:
        """Use the token once and drop the stored person; False if already used or expired."""
        result = self._c.execute(
            update(t.verifications)
            .where(
                t.verifications.c.id == verification_id,
                t.verifications.c.consumed_at.is_(None),
                t.verifications.c.expires_at > now,
            )
            .values(consumed_at=now, person_ct=None)
        )
        return result.rowcount == 1

    def purge_expired(self, *, now: datetime) -> int:
        """Destroy the person of verifications never used in time; the replay guard stays."""
        result = self._c.execute(
            update(t.verifications)
            .where(t.verifications.c.expires_at <= now, t.verifications.c.person_ct.is_not(None))
            .values(person_ct=None)
        )
        return result.rowcount


class GuardianConsentRepository:
    """Consent requests of children under 14; the guardian's name and contact are encrypted."""

    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def add(
        self,
        request_id: str,
        *,
        account_id: str,
        guardian_name: str,
        guardian_phone: str,
        code_hash: str,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        enc = self._cipher.encrypt
        self._c.execute(
            insert(t.guardian_consent_requests).values(
                id=request_id,
                account_id=account_id,
                guardian_name_ct=enc(guardian_name, context=f"consent.name:{request_id}"),
                guardian_phone_ct=enc(guardian_phone, context=f"consent.phone:{request_id}"),
                code_hash=code_hash,
                status="pending",
                created_at=now,
                expires_at=expires_at,
            )
        )

    def expired_pending(self, *, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(request id, child account id) of pending requests whose window has ended."""
        c = t.guardian_consent_requests.c
        rows = self._c.execute(
            select(c.id, c.account_id)
            .where(c.status == "pending", c.expires_at <= now)
            .order_by(c.expires_at)
            .limit(limit)
        ).all()
        return [(row.id, row.account_id) for row in rows]


class IdempotencyRepository:
    """Responses of idempotent calls, encrypted, by keyed hash of the caller's key."""

    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def get(self, key_hash: str, *, operation: str, now: datetime) -> IdempotentResult | None:
        row = self._c.execute(
            select(t.idempotency_keys).where(
                t.idempotency_keys.c.key_hash == key_hash,
                t.idempotency_keys.c.operation == operation,
                t.idempotency_keys.c.expires_at > now,
            )
        ).first()
        if row is None:
            return None
        m = row._mapping
        plain = self._cipher.decrypt(m["response_ct"], context=f"idempotency:{key_hash}")
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
        self._c.execute(
            delete(t.idempotency_keys).where(
                t.idempotency_keys.c.key_hash == key_hash, t.idempotency_keys.c.expires_at <= now
            )
        )
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(t.idempotency_keys).values(
                        key_hash=key_hash,
                        operation=operation,
                        fingerprint=fingerprint,
                        response_ct=self._cipher.encrypt(
                            response.hex(), context=f"idempotency:{key_hash}"
                        ),
                        created_at=now,
                        expires_at=now + ttl,
                    )
                )
        except IntegrityError:
            raise UniqueViolation("key_hash") from None

    def purge_expired(self, *, now: datetime) -> int:
        """Delete stored responses (they hold session tokens) once their key has expired."""
        return self._c.execute(
            delete(t.idempotency_keys).where(t.idempotency_keys.c.expires_at <= now)
        ).rowcount


class OutboxRepository:
    """Events written in the state change's transaction; payloads are encrypted (they hold PII)."""

    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def add(self, event: OutboxEvent) -> None:
        body = json.dumps(
            {
                "event_id": event.id,
                "type": event.type,
                "occurred_at": event.created_at.isoformat(),
                "data": event.payload,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        self._c.execute(
            insert(t.outbox).values(
                id=event.id,
                type=event.type,
                payload_ct=self._cipher.encrypt(body, context=f"outbox:{event.id}"),
                created_at=event.created_at,
                attempts=0,
                next_attempt_at=event.created_at,
            )
        )

    def due(
        self, *, now: datetime, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[tuple[str, datetime]]:
        """(id, created_at) of undelivered events due by `now`, oldest first.

        With `after` (a previous page's last (created_at, id)), only the events after it.
        """
        o = t.outbox.c
        query = select(o.id, o.created_at).where(o.delivered_at.is_(None), o.next_attempt_at <= now)
        if after is not None:
            query = query.where(tuple_(o.created_at, o.id) > tuple_(*after))
        rows = self._c.execute(query.order_by(o.created_at, o.id).limit(limit)).all()
        return [(row.id, row.created_at) for row in rows]

    def claim(self, event_id: str, *, now: datetime, until: datetime) -> PendingEvent | None:
        """Take a due event for delivery until `until` (a lease); None if another took it.

        A dispatcher that dies mid-delivery leaves the lease to run out, and the event is sent
        again (at least once; receivers de-duplicate by `event_id`).
        """
        o = t.outbox.c
        taken = self._c.execute(
            update(t.outbox)
            .where(o.id == event_id, o.delivered_at.is_(None), o.next_attempt_at <= now)
            .values(next_attempt_at=until)
        ).rowcount
        if taken != 1:
            return None
        row = self._c.execute(
            select(o.type, o.attempts, o.payload_ct).where(o.id == event_id)
        ).one()
        try:
            body: bytes | None = self._cipher.decrypt(
                row.payload_ct, context=f"outbox:{event_id}"
            ).encode("utf-8")
        except FieldDecryptError:
            body = None  # e.g. its key left the ring: reported, retried, never blocking others
        return PendingEvent(id=event_id, type=row.type, attempts=row.attempts, body=body)

    def mark_delivered(self, event_id: str, *, now: datetime) -> None:
        o = t.outbox.c
        self._c.execute(
            update(t.outbox)
            .where(o.id == event_id, o.delivered_at.is_(None))
            .values(delivered_at=now, attempts=o.attempts + 1)
        )

    def reschedule(
        self, event_id: str, *, lease: datetime, attempts: int, next_attempt_at: datetime
    ) -> bool:
        """Set the next attempt, only while the caller's lease is still the event's."""
        o = t.outbox.c
        result = self._c.execute(
            update(t.outbox)
            .where(o.id == event_id, o.delivered_at.is_(None), o.next_attempt_at == lease)
            .values(attempts=attempts, next_attempt_at=next_attempt_at)
        )
        return bool(result.rowcount == 1)

    def purge_delivered(self, *, before: datetime) -> int:
        """Delete events delivered before `before` (their payloads may hold personal data)."""
        o = t.outbox.c
        return self._c.execute(
            delete(t.outbox).where(o.delivered_at.is_not(None), o.delivered_at < before)
        ).rowcount

    def delete_matching(self, event_type: str, *, key: str, values: set[str]) -> int:
        """Delete the events of `event_type` whose data has `key` in `values` (destruction).

        Payloads are encrypted, so each candidate is decrypted once to be matched; one that
        cannot be decrypted is skipped (its key has left the ring: nobody can read it).
        """
        if not values:
            return 0
        o = t.outbox.c
        doomed = []
        for row in self._c.execute(select(o.id, o.payload_ct).where(o.type == event_type)):
            try:
                plain = self._cipher.decrypt(row.payload_ct, context=f"outbox:{row.id}")
            except FieldDecryptError:
                continue
            if json.loads(plain).get("data", {}).get(key) in values:
                doomed.append(row.id)
        if not doomed:
            return 0
        return self._c.execute(delete(t.outbox).where(o.id.in_(doomed))).rowcount


def database_unavailable() -> DomainError:
    return DomainError(Reason.DATABASE_UNAVAILABLE, "the database is unavailable; retry")
