"""Accounts: encrypted personal fields, blind indexes, the login-attempt gate, re-join holds."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    update,
)
from sqlalchemy.exc import IntegrityError

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import encrypted_columns as ec
from idservice.adapters.db import tables as t
from idservice.adapters.db.errors import unique_column
from idservice.adapters.db.repositories import account_statements as q
from idservice.adapters.db.repositories.account_rows import (
    first_account,
    standing_from_row,
)
from idservice.domain.accounts import Account, Consents
from idservice.domain.lockout import ATTEMPT_IN_FLIGHT_TTL, LockoutPolicy, LoginGate
from idservice.service_layer.ports import PasswordCredentials, UniqueViolation


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
                q.ADD.rowcount(self._c, row)
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
    ) -> bool:
        """Write only the given fields, so concurrent corrections of other fields survive; False
        (nothing written) when the account is gone or withdrawn."""
        values: dict[str, object] = {"updated_at": now}
        for column, value in (
            (ec.ACCOUNT_NAME, name),
            (ec.ACCOUNT_PHONE, phone_number),
            (ec.ACCOUNT_BIRTH_DATE, birth_date.isoformat() if birth_date else None),
        ):
            if value is not None:
                values[column.column] = column.encrypt(self._cipher, account_id, value)
        result = self._c.execute(
            update(t.accounts).where(t.accounts.c.id == account_id, q.LIVE).values(values)
        )
        return bool(result.rowcount == 1)

    def adopt_ci(self, account_id: str, ci: str, *, now: datetime) -> bool:
        values = {
            "ci_ct": ec.ACCOUNT_CI.encrypt(self._cipher, account_id, ci),
            "ci_index": self.ci_index(ci),
            "updated_at": now,
        }
        statement = (
            update(t.accounts)
            .where(t.accounts.c.id == account_id, t.accounts.c.ci_index.is_(None))
            .values(values)
        )
        try:
            with self._c.begin_nested():
                return self._c.execute(statement).rowcount == 1
        except IntegrityError as exc:
            if unique_column(exc, self._UNIQUE) != "ci_index":
                raise
            raise UniqueViolation("ci_index") from None

    def delete_pending(self, account_id: str) -> bool:
        """Destroy an account still waiting for guardian consent (never any other account).

        Its consent requests go with it (ON DELETE CASCADE); it never had sessions.
        """
        result = self._c.execute(q.DELETE_PENDING, {"account_id": account_id})
        return bool(result.rowcount == 1)

    def activate(self, account_id: str, *, now: datetime) -> bool:
        """PENDING_GUARDIAN_CONSENT -> ACTIVE (the guardian consented)."""
        result = self._c.execute(q.ACTIVATE, {"account_id": account_id, "now": now})
        return bool(result.rowcount == 1)

    def delete(self, account_id: str) -> bool:
        """Destroy the account row; sessions, SNS links and consent requests cascade."""
        result = self._c.execute(q.DELETE, {"account_id": account_id})
        return bool(result.rowcount == 1)

    def replace_password_hash(
        self, account_id: str, *, expected: str, new: str | None, now: datetime
    ) -> bool:
        """Swap the hash only if it is still `expected` (None: keep it, just lock the row).

        False means the password changed since it was checked: the check no longer holds. The
        row lock also orders this transaction against a concurrent ChangePassword.
        """
        if new is None:
            key = {"account_id": account_id, "expected": expected}
            changed = q.KEEP_HASH.rowcount(self._c, key)
        else:
            changed = q.SWAP_HASH.rowcount(
                self._c,
                {"account_id": account_id, "expected": expected, "new_hash": new, "now": now},
            )
        return changed == 1

    def begin_login_attempt(
        self, account_id: str, *, now: datetime, policy: LockoutPolicy
    ) -> LoginGate:
        """Admit a password attempt before its outcome is known, or say why not.

        One conditional UPDATE applies `LockoutPolicy.admits`: failures so far plus attempts
        still in flight must stay under the threshold. In-flight marks expire after
        ATTEMPT_IN_FLIGHT_TTL in case a process dies between begin and end.
        """
        admitted = q.ADMIT_ATTEMPT.rowcount(
            self._c,
            {
                "account_id": account_id,
                "now": now,
                "threshold": policy.threshold,
                "in_flight_until": now + ATTEMPT_IN_FLIGHT_TTL,
            },
        )
        if admitted == 1:
            return LoginGate(admitted=True)
        row = q.LOCKED_UNTIL.first(self._c, {"account_id": account_id})
        until = None if row is None else row["locked_until"]
        if isinstance(until, datetime) and until > now:
            return LoginGate(admitted=False, locked_until=until)
        return LoginGate(admitted=False)

    def end_login_attempt(
        self, account_id: str, *, succeeded: bool, now: datetime, policy: LockoutPolicy
    ) -> None:
        """Record an admitted attempt's outcome; the failure that reaches the threshold locks."""
        if succeeded:
            q.ATTEMPT_SUCCEEDED.rowcount(self._c, {"account_id": account_id})
            return
        q.ATTEMPT_FAILED.rowcount(
            self._c,
            {
                "account_id": account_id,
                "threshold": policy.threshold,
                "lock_until": policy.lock_until(now),
            },
        )

    # -- reads ---------------------------------------------------------------------------
    def get(self, account_id: str, *, for_update: bool = False) -> Account | None:
        query = q.BY_ID_FOR_UPDATE if for_update else q.BY_ID
        return first_account(query.all(self._c, {"account_id": account_id}), self._cipher)

    def get_by_email(self, email_key: str) -> Account | None:
        index = self.email_index(email_key)
        return first_account(q.BY_EMAIL.all(self._c, {"email_index": index}), self._cipher)

    def credentials_by_email(self, email_key: str) -> PasswordCredentials | None:
        index = self.email_index(email_key)
        row = q.CREDENTIALS_BY_EMAIL.first(self._c, {"email_index": index})
        if row is None:
            return None
        standing = standing_from_row(row, self._cipher)
        if standing is None:
            return None
        return PasswordCredentials(standing=standing, password_hash=row["password_hash"])

    def find_by_identity(self, *, ci: str | None, di: str | None) -> Account | None:
        params = self._identity_params(ci=ci, di=di)
        if not params:
            return None
        rows = q.BY_IDENTITY[bool(ci), bool(di)].all(self._c, params)
        return first_account(rows, self._cipher)

    # -- re-join holds -------------------------------------------------------------------
    def rejoin_hold_until(
        self, *, ci: str | None, di: str | None, now: datetime
    ) -> datetime | None:
        """End of the re-join cooldown of a withdrawn person with this CI or DI, if running."""
        params: dict[str, object] = self._identity_params(ci=ci, di=di)
        if not params:
            return None
        params["now"] = now
        row = q.HOLD_UNTIL[bool(ci), bool(di)].first(self._c, params)
        assert row is not None  # a SELECT of two subqueries has one row
        held = [value for value in row.values() if isinstance(value, datetime)]
        return max(held) if held else None

    def purge_rejoin_holds(self, *, now: datetime) -> int:
        """Release CI/DI blind indexes whose re-join cooldown is over (withdrawn remains too)."""
        held = self._c.execute(q.PURGE_HOLDS, {"now": now}).rowcount
        remains = self._c.execute(q.PURGE_REMAINS, {"now": now}).rowcount
        return held + remains

    def release_expired_hold(self, *, ci: str | None, di: str | None, now: datetime) -> None:
        params: dict[str, object] = self._identity_params(ci=ci, di=di)
        if not params:
            return
        params["now"] = now
        q.RELEASE_EXPIRED_HOLD[bool(ci), bool(di)].rowcount(self._c, params)

    def withdraw(self, account_id: str, *, now: datetime, hold_until: datetime) -> bool:
        key = {"account_id": account_id}
        row = self._c.execute(q.WITHDRAW_READ, key).first()
        if row is None:
            return False
        for query in q.WITHDRAW_CASCADE:
            self._c.execute(query, key)
        if row.ci_index is None and row.di_index is None:
            self._c.execute(q.DELETE, key)
            return True
        self._c.execute(
            q.WITHDRAW_TO_REMAINS, {"account_id": account_id, "now": now, "held_until": hold_until}
        )
        return True

    def save_consents(self, account_id: str, consents: Consents, *, now: datetime) -> None:
        self._c.execute(
            q.SAVE_CONSENTS,
            {
                "account_id": account_id,
                "marketing": consents.marketing_opt_in,
                "marketing_at": consents.marketing_updated_at,
                "suspended": consents.processing_suspended,
                "third_party": consents.third_party_opt_in,
                "third_party_at": consents.third_party_updated_at,
                "now": now,
            },
        )

    def marketing_reconfirmation_due(
        self, *, now: datetime, opted_in_before: datetime, limit: int
    ) -> list[tuple[str, datetime, datetime | None]]:
        rows = self._c.execute(
            q.RECONFIRMATION_DUE, {"opted_in_before": opted_in_before, "limit": limit}
        ).all()
        return [(row.id, row.marketing_updated_at, row.marketing_reminded_at) for row in rows]

    def mark_reminded(self, account_id: str, *, opted_in_at: datetime, due: datetime) -> bool:
        result = self._c.execute(
            q.MARK_REMINDED, {"account_id": account_id, "opted_in_at": opted_in_at, "due": due}
        )
        return bool(result.rowcount == 1)

    def add_rejoin_hold(
        self, hold_id: str, *, ci: str | None, di: str | None, until: datetime
    ) -> None:
        self._c.execute(
            q.ADD_REJOIN_HOLD,
            {
                "id": hold_id,
                "ci_index": self.ci_index(ci) if ci else None,
                "di_index": self.di_index(di) if di else None,
                "hold_until": until,
            },
        )

    def _identity_params(self, *, ci: str | None, di: str | None) -> dict[str, object]:
        """The parameters of the `q.identity` shape `(bool(ci), bool(di))`; empty for neither."""
        params: dict[str, object] = {}
        if ci:
            params["ci_index"] = self.ci_index(ci)
        if di:
            params["di_index"] = self.di_index(di)
        return params

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
            "attempts_in_flight": 0,
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
