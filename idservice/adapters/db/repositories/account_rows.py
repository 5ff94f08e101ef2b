"""How an account is read: its columns with its SNS providers in one statement, and the
decryption of a row into an `Account` (shared by the account and session repositories)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy import Row

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import encrypted_columns as ec
from idservice.adapters.db import tables as t
from idservice.domain.accounts import Account, AccountStatus, Consents
from idservice.service_layer.ports import AccountStanding

# An account is read with its SNS providers in one statement: the account's columns and one
# linked provider per row (one row with a NULL provider when it has none).
SNS_PROVIDER = "sns_provider"
# The account's choices (`consents_from_row`): no personal data.
_CONSENTS = (
    "terms_version",
    "privacy_policy_version",
    "terms_accepted_at",
    "marketing_opt_in",
    "marketing_updated_at",
    "processing_suspended",
    "third_party_opt_in",
    "third_party_updated_at",
)
# Who the account is and its standing (`standing_from_row`: one decryption, the birth date).
_STANDING = ("id", "status", "birth_date_ct", "identity_verified")
# Only what `account_from_row` reads (each column read is a conversion per call).
_READ = (
    *_STANDING,
    "email_ct",
    "name_ct",
    "phone_ct",
    "ci_ct",
    "di_ct",
    "password_hash",
    "failed_logins",
    "locked_until",
    *_CONSENTS,
    "created_at",
)
ACCOUNT_COLUMNS = (
    *(t.accounts.c[name] for name in _READ),
    t.sns_identities.c.provider.label(SNS_PROVIDER),
)
STANDING_COLUMNS = tuple(t.accounts.c[name] for name in _STANDING)
# With the id, so a row says whether the outer join found a live account.
CONSENT_COLUMNS = tuple(t.accounts.c[name] for name in ("id", *_CONSENTS))


def with_sns(accounts: Any) -> Any:
    """`accounts` (the table or a join ending on it) with the account's SNS links outer-joined."""
    return accounts.outerjoin(t.sns_identities, t.sns_identities.c.account_id == t.accounts.c.id)


def standing_from_row(r: Any, cipher: FieldCipher) -> AccountStanding | None:
    """The `AccountStanding` of a row mapping with `STANDING_COLUMNS` (the birth date
    decrypted); None when the row's outer join found no live account."""
    account_id: str | None = r["id"]
    if account_id is None:
        return None
    birth = ec.ACCOUNT_BIRTH_DATE.decrypt(cipher, account_id, r["birth_date_ct"])
    return AccountStanding(
        id=account_id,
        status=AccountStatus(r["status"]),
        birth_date=date.fromisoformat(birth),
        identity_verified=bool(r["identity_verified"]),
    )


def first_account(rows: Iterable[Row[Any]], cipher: FieldCipher) -> Account | None:
    """The first account among rows of `ACCOUNT_COLUMNS` (its SNS providers from all its rows)."""
    account_id: str | None = None
    first: Any = None
    providers: list[str] = []
    for row in rows:
        m = row._mapping
        if m["id"] is None:
            continue  # an outer join found no account
        if account_id is None:
            account_id, first = m["id"], m
        elif m["id"] != account_id:
            continue
        if m[SNS_PROVIDER] is not None:
            providers.append(m[SNS_PROVIDER])
    if first is None:
        return None
    return account_from_row(first, cipher, tuple(sorted(providers)))


def account_from_row(r: Any, cipher: FieldCipher, sns_providers: tuple[str, ...]) -> Account:
    """An account from its row's mapping (decrypted personal fields)."""
    account_id: str = r["id"]

    def dec(column: ec.EncryptedColumn) -> str | None:
        value = r[column.column]
        return None if value is None else column.decrypt(cipher, account_id, value)

    birth = dec(ec.ACCOUNT_BIRTH_DATE)
    assert birth is not None
    return Account(
        id=account_id,
        status=AccountStatus(r["status"]),
        email=dec(ec.ACCOUNT_EMAIL),
        name=dec(ec.ACCOUNT_NAME) or "",
        phone_number=dec(ec.ACCOUNT_PHONE) or "",
        birth_date=date.fromisoformat(birth),
        identity_verified=bool(r["identity_verified"]),
        ci=dec(ec.ACCOUNT_CI),
        di=dec(ec.ACCOUNT_DI),
        password_hash=r["password_hash"],
        failed_logins=r["failed_logins"],
        locked_until=r["locked_until"],
        created_at=r["created_at"],
        sns_providers=sns_providers,
        consents=consents_from_row(r),
    )


def consents_from_row(r: Any) -> Consents:
    """The account's choices from a row mapping with `CONSENT_COLUMNS` (no decryption)."""
    return Consents(
        terms_version=r["terms_version"],
        privacy_policy_version=r["privacy_policy_version"],
        accepted_at=r["terms_accepted_at"],
        marketing_opt_in=bool(r["marketing_opt_in"]),
        marketing_updated_at=r["marketing_updated_at"],
        processing_suspended=bool(r["processing_suspended"]),
        third_party_opt_in=bool(r["third_party_opt_in"]),
        third_party_updated_at=r["third_party_updated_at"],
    )
