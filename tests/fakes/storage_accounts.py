"""The in-memory AccountRepository: the same answers as `SqlAccountRepository`."""

from __future__ import annotations

import copy
import dataclasses
from datetime import date, datetime

from idservice.domain.accounts import Account, AccountStatus, Consents
from idservice.domain.lockout import ATTEMPT_IN_FLIGHT_TTL, LockoutPolicy, LoginGate
from idservice.service_layer.ports import AccountStanding, PasswordCredentials, UniqueViolation
from tests.fakes.storage_state import (
    AccountRow,
    FakeIntegrityError,
    FakeState,
    HoldRow,
    StateAccess,
    utc,
    utc_or_none,
)


def stored_account(account: Account) -> Account:
    """What an insert keeps: empty optional strings become NULL, SNS links are not stored."""
    a = copy.deepcopy(account)
    consents = dataclasses.replace(
        a.consents,
        accepted_at=utc(a.consents.accepted_at),
        marketing_updated_at=utc(a.consents.marketing_updated_at),
        third_party_updated_at=utc_or_none(a.consents.third_party_updated_at),
    )
    return dataclasses.replace(
        a,
        email=a.email or None,
        ci=a.ci or None,
        di=a.di or None,
        created_at=utc(a.created_at),
        locked_until=utc_or_none(a.locked_until),
        sns_providers=(),
        consents=consents,
    )


def loaded_account(state: FakeState, row: AccountRow) -> Account:
    """What a read returns: a copy, with `sns_providers` from the account's linked identities."""
    account = copy.deepcopy(row.account)
    account.sns_providers = state.sns_providers(account.id)
    return account


def _matches_identity(
    ci: str | None, di: str | None, row_ci: str | None, row_di: str | None
) -> bool:
    return bool((ci and row_ci == ci) or (di and row_di == di))


class FakeAccountRepository:
    """Accounts; the email key, CI and DI are unique as the SQL unique indexes make them."""

    def __init__(self, access: StateAccess) -> None:
        self._access = access

    # -- writes --------------------------------------------------------------------------
    def add(self, account: Account, *, email_key: str | None) -> None:
        state = self._access.write()
        stored = stored_account(account)
        if stored.id in state.accounts:
            raise FakeIntegrityError("pk_accounts")
        key = email_key or None
        rows = state.accounts.values()
        if key is not None and any(row.email_key == key for row in rows):
            raise UniqueViolation("email_index")
        if stored.ci is not None and any(row.account.ci == stored.ci for row in rows):
            raise UniqueViolation("ci_index")
        if stored.di is not None and any(row.account.di == stored.di for row in rows):
            raise UniqueViolation("di_index")
        state.accounts[stored.id] = AccountRow(account=stored, email_key=key)

    def save_profile(
        self,
        account_id: str,
        *,
        name: str | None = None,
        phone_number: str | None = None,
        birth_date: date | None = None,
        now: datetime,
    ) -> bool:
        utc(now)
        row = self._access.write().accounts.get(account_id)
        if row is None or not row.live:
            return False
        if name is not None:
            row.account.name = name
        if phone_number is not None:
            row.account.phone_number = phone_number
        if birth_date is not None:
            row.account.birth_date = birth_date
        return True

    def adopt_ci(self, account_id: str, ci: str, *, now: datetime) -> bool:
        utc(now)
        state = self._access.write()
        row = state.accounts.get(account_id)
        if row is None or row.account.ci is not None:
            return False
        if any(other.account.ci == ci for other in state.accounts.values()):
            raise UniqueViolation("ci_index")
        row.account.ci = ci
        return True

    def delete_pending(self, account_id: str) -> bool:
        state = self._access.write()
        row = state.accounts.get(account_id)
        if (
            row is None
            or not row.live
            or row.account.status is not AccountStatus.PENDING_GUARDIAN_CONSENT
        ):
            return False
        state.drop_account(account_id)
        return True

    def activate(self, account_id: str, *, now: datetime) -> bool:
        utc(now)
        row = self._access.write().accounts.get(account_id)
        if row is None or row.account.status is not AccountStatus.PENDING_GUARDIAN_CONSENT:
            return False
        row.account.status = AccountStatus.ACTIVE
        return True

    def delete(self, account_id: str) -> bool:
        state = self._access.write()
        if account_id not in state.accounts:
            return False
        state.drop_account(account_id)
        return True

    def replace_password_hash(
        self, account_id: str, *, expected: str, new: str | None, now: datetime
    ) -> bool:
        utc(now)
        row = self._access.write().accounts.get(account_id)
        if row is None or row.account.password_hash is None:
            return False
        if row.account.password_hash != expected:
            return False
        if new is not None:
            row.account.password_hash = new
        return True

    def begin_login_attempt(
        self, account_id: str, *, now: datetime, policy: LockoutPolicy
    ) -> LoginGate:
        now = utc(now)
        row = self._access.write().accounts.get(account_id)
        if row is None:
            return LoginGate(admitted=False)
        expires = row.attempts_expire_at
        in_flight = row.attempts_in_flight if expires is not None and expires > now else 0
        locked_until = row.account.locked_until
        locked = locked_until is not None and locked_until > now
        if not locked and row.account.failed_logins + in_flight < policy.threshold:
            row.attempts_in_flight = in_flight + 1
            row.attempts_expire_at = now + ATTEMPT_IN_FLIGHT_TTL
            return LoginGate(admitted=True)
        return LoginGate(admitted=False, locked_until=locked_until if locked else None)

    def end_login_attempt(
        self, account_id: str, *, succeeded: bool, now: datetime, policy: LockoutPolicy
    ) -> None:
        now = utc(now)
        row = self._access.write().accounts.get(account_id)
        if row is None:
            return
        row.attempts_in_flight = max(row.attempts_in_flight - 1, 0)
        account = row.account
        if succeeded:
            account.failed_logins, account.locked_until = 0, None
        elif policy.reaches_lock(account.failed_logins):
            account.failed_logins, account.locked_until = 0, policy.lock_until(now)
        else:
            account.failed_logins += 1

    # -- reads ---------------------------------------------------------------------------
    def get(self, account_id: str, *, for_update: bool = False) -> Account | None:
        # `for_update`: writers are serialised already (one write lock), as on SQLite.
        state = self._access.read()
        row = state.accounts.get(account_id)
        return None if row is None or not row.live else loaded_account(state, row)

    def get_by_email(self, email_key: str) -> Account | None:
        state = self._access.read()
        for row in state.accounts.values():
            if email_key and row.email_key == email_key and row.live:
                return loaded_account(state, row)
        return None

    def credentials_by_email(self, email_key: str) -> PasswordCredentials | None:
        account = self.get_by_email(email_key)
        if account is None:
            return None
        standing = AccountStanding(
            account.id, account.status, account.birth_date, account.identity_verified
        )
        return PasswordCredentials(standing=standing, password_hash=account.password_hash)

    def find_by_identity(self, *, ci: str | None, di: str | None) -> Account | None:
        state = self._access.read()
        for row in state.accounts.values():
            if row.live and _matches_identity(ci, di, row.account.ci, row.account.di):
                return loaded_account(state, row)
        return None

    # -- withdrawal and consents ---------------------------------------------------------
    def withdraw(self, account_id: str, *, now: datetime, hold_until: datetime) -> bool:
        state = self._access.write()
        row = state.accounts.get(account_id)
        if row is None or not row.live:
            return False
        ci, di = row.account.ci, row.account.di
        state.drop_account(account_id)  # sessions, links and consent requests go with it
        if ci is None and di is None:
            return True
        remains = copy.deepcopy(row.account)
        remains.email, remains.name, remains.phone_number = None, "", ""
        remains.password_hash = None
        # As the SQL one: the remains opt in to nothing (no reminder, no provision).
        remains.consents = dataclasses.replace(
            remains.consents, marketing_opt_in=False, third_party_opt_in=False
        )
        state.accounts[account_id] = AccountRow(
            account=remains, email_key=None, withdrawn_at=utc(now), hold_until=utc(hold_until)
        )
        return True

    def release_expired_hold(self, *, ci: str | None, di: str | None, now: datetime) -> None:
        now = utc(now)
        state = self._access.write()
        for account_id, row in list(state.accounts.items()):
            if (
                not row.live
                and row.hold_until is not None
                and row.hold_until <= now
                and _matches_identity(ci, di, row.account.ci, row.account.di)
            ):
                del state.accounts[account_id]

    def save_consents(self, account_id: str, consents: Consents, *, now: datetime) -> None:
        utc(now)
        row = self._access.write().accounts.get(account_id)
        if row is not None:
            row.account.consents = dataclasses.replace(
                copy.deepcopy(consents),
                marketing_updated_at=utc(consents.marketing_updated_at),
                third_party_updated_at=utc_or_none(consents.third_party_updated_at),
            )

    def marketing_reconfirmation_due(
        self, *, now: datetime, opted_in_before: datetime, limit: int
    ) -> list[tuple[str, datetime, datetime | None]]:
        before = utc(opted_in_before)
        due = [
            (account_id, row.account.consents.marketing_updated_at, row.marketing_reminded_at)
            for account_id, row in self._access.read().accounts.items()
            if row.live
            and row.account.consents.marketing_opt_in
            and row.account.consents.marketing_updated_at <= before
            and (row.marketing_reminded_at is None or row.marketing_reminded_at <= before)
        ]
        return sorted(due, key=lambda item: (max(item[1], item[2] or item[1]), item[0]))[:limit]

    def mark_reminded(self, account_id: str, *, opted_in_at: datetime, due: datetime) -> bool:
        row = self._access.write().accounts.get(account_id)
        if row is None or not row.account.consents.marketing_opt_in:
            return False
        if row.account.consents.marketing_updated_at != utc(opted_in_at):
            return False
        reminded = row.marketing_reminded_at
        if reminded is not None and reminded >= utc(due):
            return False
        row.marketing_reminded_at = utc(due)
        return True

    # -- re-join holds -------------------------------------------------------------------
    def rejoin_hold_until(
        self, *, ci: str | None, di: str | None, now: datetime
    ) -> datetime | None:
        now = utc(now)
        state = self._access.read()
        running = [
            hold.until
            for hold in state.rejoin_holds.values()
            if _matches_identity(ci, di, hold.ci, hold.di) and hold.until > now
        ] + [
            row.hold_until
            for row in state.accounts.values()
            if not row.live
            and row.hold_until is not None
            and row.hold_until > now
            and _matches_identity(ci, di, row.account.ci, row.account.di)
        ]
        return max(running, default=None)

    def add_rejoin_hold(
        self, hold_id: str, *, ci: str | None, di: str | None, until: datetime
    ) -> None:
        state = self._access.write()
        if hold_id in state.rejoin_holds:
            raise FakeIntegrityError("pk_rejoin_holds")
        state.rejoin_holds[hold_id] = HoldRow(ci=ci or None, di=di or None, until=utc(until))

    def purge_rejoin_holds(self, *, now: datetime) -> int:
        now = utc(now)
        state = self._access.write()
        ended = [hold_id for hold_id, hold in state.rejoin_holds.items() if hold.until <= now]
        for hold_id in ended:
            del state.rejoin_holds[hold_id]
        remains = [
            account_id
            for account_id, row in state.accounts.items()
            if not row.live and row.hold_until is not None and row.hold_until <= now
        ]
        for account_id in remains:
            del state.accounts[account_id]
        return len(ended) + len(remains)
