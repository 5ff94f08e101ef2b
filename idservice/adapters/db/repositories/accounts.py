"""Accounts: encrypted personal fields, blind indexes, the login-attempt gate, re-join holds."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import encrypted_columns as ec
from idservice.adapters.db import tables as t
from idservice.adapters.db.errors import unique_column
from idservice.adapters.db.repositories.account_rows import (
    ACCOUNT_COLUMNS,
    first_account,
    with_sns,
)
from idservice.domain.accounts import Account, AccountStatus, Consents
from idservice.domain.lockout import ATTEMPT_IN_FLIGHT_TTL, LockoutPolicy, LoginGate
from idservice.service_layer.ports import UniqueViolation

# Reads see live accounts only; a withdrawn account's remains just hold its CI/DI indexes.
_LIVE = t.accounts.c.withdrawn_at.is_(None)

# Built once: the statements of the hot reads hit SQLAlchemy's compiled cache without being
# rebuilt or re-keyed on every call.
_BY_ID = (
    select(*ACCOUNT_COLUMNS)
    .select_from(with_sns(t.accounts))
    .where(t.accounts.c.id == bindparam("account_id"), _LIVE)
)
# PostgreSQL locks the account row (not the nullable side of the outer join); SQLite's writers
# are serialised already (BEGIN IMMEDIATE).
_BY_ID_FOR_UPDATE = _BY_ID.with_for_update(of=t.accounts)
_BY_EMAIL = (
    select(*ACCOUNT_COLUMNS)
    .select_from(with_sns(t.accounts))
    .where(t.accounts.c.email_index == bindparam("email_index"), _LIVE)
)


class SqlAccountRepository:
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
            column = unique_column(exc, self._UNIQUE)
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
        values: dict[str, object] = {"updated_at": now}
        for column, value in (
            (ec.ACCOUNT_NAME, name),
            (ec.ACCOUNT_PHONE, phone_number),
            (ec.ACCOUNT_BIRTH_DATE, birth_date.isoformat() if birth_date else None),
        ):
            if value is not None:
                values[column.column] = column.encrypt(self._cipher, account_id, value)
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

    def activate(self, account_id: str, *, now: datetime) -> bool:
        """PENDING_GUARDIAN_CONSENT -> ACTIVE (the guardian consented)."""
        a = t.accounts.c
        result = self._c.execute(
            update(t.accounts)
            .where(a.id == account_id, a.status == AccountStatus.PENDING_GUARDIAN_CONSENT.value)
            .values(status=AccountStatus.ACTIVE.value, updated_at=now)
        )
        return bool(result.rowcount == 1)

    def delete(self, account_id: str) -> bool:
        """Destroy the account row; sessions, SNS links and consent requests cascade."""
        result = self._c.execute(delete(t.accounts).where(t.accounts.c.id == account_id))
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

        One conditional UPDATE applies `LockoutPolicy.admits`: failures so far plus attempts
        still in flight must stay under the threshold. In-flight marks expire after
        ATTEMPT_IN_FLIGHT_TTL in case a process dies between begin and end.
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
                "locked_until": case((reaches, policy.lock_until(now)), else_=a.locked_until),
            }
        self._c.execute(
            update(t.accounts)
            .where(a.id == account_id)
            .values(attempts_in_flight=in_flight, **values)
        )

    # -- reads ---------------------------------------------------------------------------
    def get(self, account_id: str, *, for_update: bool = False) -> Account | None:
        query = _BY_ID_FOR_UPDATE if for_update else _BY_ID
        rows = self._c.execute(query, {"account_id": account_id}).all()
        return first_account(rows, self._cipher)

    def get_by_email(self, email_key: str) -> Account | None:
        index = self.email_index(email_key)
        rows = self._c.execute(_BY_EMAIL, {"email_index": index}).all()
        return first_account(rows, self._cipher)

    def find_by_identity(self, *, ci: str | None, di: str | None) -> Account | None:
        conditions = self._identity_conditions(t.accounts, ci=ci, di=di)
        if not conditions:
            return None
        query = select(*ACCOUNT_COLUMNS).select_from(with_sns(t.accounts))
        rows = self._c.execute(query.where(or_(*conditions), _LIVE)).all()
        return first_account(rows, self._cipher)

    # -- re-join holds -------------------------------------------------------------------
    def rejoin_hold_until(
        self, *, ci: str | None, di: str | None, now: datetime
    ) -> datetime | None:
        """End of the re-join cooldown of a withdrawn person with this CI or DI, if running."""
        held = []
        for table in (t.rejoin_holds, t.accounts):
            conditions = self._identity_conditions(table, ci=ci, di=di)
            if not conditions:
                return None
            value = self._c.execute(
                select(func.max(table.c.hold_until)).where(
                    and_(or_(*conditions), table.c.hold_until > now)
                )
            ).scalar()
            if isinstance(value, datetime):
                held.append(value)
        return max(held) if held else None

    def purge_rejoin_holds(self, *, now: datetime) -> int:
        """Release CI/DI blind indexes whose re-join cooldown is over (withdrawn remains too)."""
        held = self._c.execute(
            delete(t.rejoin_holds).where(t.rejoin_holds.c.hold_until <= now)
        ).rowcount
        a = t.accounts.c
        remains = self._c.execute(
            delete(t.accounts).where(a.withdrawn_at.is_not(None), a.hold_until <= now)
        ).rowcount
        return held + remains

    def release_expired_hold(self, *, ci: str | None, di: str | None, now: datetime) -> None:
        conditions = self._identity_conditions(t.accounts, ci=ci, di=di)
        if not conditions:
            return
        a = t.accounts.c
        self._c.execute(
            delete(t.accounts).where(
                or_(*conditions), a.withdrawn_at.is_not(None), a.hold_until <= now
            )
        )

    def withdraw(self, account_id: str, *, now: datetime, hold_until: datetime) -> bool:
        a = t.accounts.c
        row = self._c.execute(
            select(a.ci_index, a.di_index).where(a.id == account_id, _LIVE).with_for_update()
        ).first()
        if row is None:
            return False
        # Everything under the account goes (sessions, SNS links, consent requests cascade).
        for table in (t.sessions, t.sns_identities, t.guardian_consent_requests):
            self._c.execute(delete(table).where(table.c.account_id == account_id))
        if row.ci_index is None and row.di_index is None:
            self._c.execute(delete(t.accounts).where(a.id == account_id))
            return True
        self._c.execute(
            update(t.accounts)
            .where(a.id == account_id)
            .values(
                status="withdrawn",
                email_ct=None,
                email_index=None,
                name_ct=None,
                phone_ct=None,
                birth_date_ct=None,
                ci_ct=None,
                di_ct=None,
                password_hash=None,
                marketing_opt_in=False,
                third_party_opt_in=False,
                withdrawn_at=now,
                hold_until=hold_until,
                updated_at=now,
            )
        )
        return True

    def save_consents(self, account_id: str, consents: Consents, *, now: datetime) -> None:
        self._c.execute(
            update(t.accounts)
            .where(t.accounts.c.id == account_id)
            .values(
                marketing_opt_in=consents.marketing_opt_in,
                marketing_updated_at=consents.marketing_updated_at,
                processing_suspended=consents.processing_suspended,
                third_party_opt_in=consents.third_party_opt_in,
                third_party_updated_at=consents.third_party_updated_at,
                updated_at=now,
            )
        )

    def marketing_reconfirmation_due(
        self, *, now: datetime, opted_in_before: datetime, limit: int
    ) -> list[tuple[str, datetime]]:
        a = t.accounts.c
        rows = self._c.execute(
            select(a.id, a.marketing_updated_at)
            .where(
                _LIVE,
                a.marketing_opt_in.is_(True),
                a.marketing_updated_at <= opted_in_before,
                or_(
                    a.marketing_reminded_at.is_(None),
                    a.marketing_reminded_at < a.marketing_updated_at,
                ),
            )
            .order_by(a.marketing_updated_at)
            .limit(limit)
        ).all()
        return [(row.id, row.marketing_updated_at) for row in rows]

    def mark_reminded(self, account_id: str, *, now: datetime) -> bool:
        a = t.accounts.c
        # Compare-and-set: of two purges racing (several processes), one records the reminder.
        result = self._c.execute(
            update(t.accounts)
            .where(
                a.id == account_id,
                a.marketing_opt_in.is_(True),
                or_(
                    a.marketing_reminded_at.is_(None),
                    a.marketing_reminded_at < a.marketing_updated_at,
                ),
            )
            .values(marketing_reminded_at=now)
        )
        return bool(result.rowcount == 1)

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

    def _identity_conditions(self, table: Any, *, ci: str | None, di: str | None) -> list[Any]:
        conditions = []
        if ci:
            conditions.append(table.c.ci_index == self.ci_index(ci))
        if di:
            conditions.append(table.c.di_index == self.di_index(di))
        return conditions

    # -- mapping -------------------------------------------------------------------------
    def _to_row(self, a: Account, *, email_key: str | None) -> dict[str, Any]:
        def enc(column: ec.EncryptedColumn, value: str) -> str:
            return column.encrypt(self._cipher, a.id, value)

        return {
            "id": a.id,
            "status": a.status.value,
            "email_ct": enc(ec.ACCOUNT_EMAIL, a.email) if a.email else None,
            "email_index": self.email_index(email_key) if email_key else None,
            "name_ct": enc(ec.ACCOUNT_NAME, a.name),
            "phone_ct": enc(ec.ACCOUNT_PHONE, a.phone_number),
            "birth_date_ct": enc(ec.ACCOUNT_BIRTH_DATE, a.birth_date.isoformat()),
            "identity_verified": a.identity_verified,
            "ci_ct": enc(ec.ACCOUNT_CI, a.ci) if a.ci else None,
            "ci_index": self.ci_index(a.ci) if a.ci else None,
            "di_ct": enc(ec.ACCOUNT_DI, a.di) if a.di else None,
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
            "third_party_opt_in": a.consents.third_party_opt_in,
            "third_party_updated_at": a.consents.third_party_updated_at,
            "updated_at": a.created_at,
        }
