"""How an account is read: its columns with its SNS providers in one statement, and the
decryption of a row into an `Account` (shared by the account and session repositories)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, TypedDict

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import encrypted_columns as ec
from idservice.adapters.db import tables as t
from idservice.domain.accounts import (
    Account,
    AccountProfile,
    AccountStatus,
    Consents,
    sign_in_methods,
)
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
# What its owner is shown (`first_profile`): no CI, DI or password hash, only whether it has one.
HAS_PASSWORD = "has_password"  # noqa: S105 - a column label, not a secret
PROFILE_COLUMNS = (
    *(t.accounts.c[name] for name in (*_STANDING, "email_ct", "name_ct", "phone_ct")),
    *(t.accounts.c[name] for name in (*_CONSENTS, "created_at")),
    t.accounts.c.password_hash.is_not(None).label(HAS_PASSWORD),
    t.sns_identities.c.provider.label(SNS_PROVIDER),
)
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


def first_account(rows: Iterable[Mapping[str, Any]], cipher: FieldCipher) -> Account | None:
    """The first account among row mappings of `ACCOUNT_COLUMNS` (its SNS providers from all
    its rows)."""
    first, providers = _first_with_providers(rows)
    return None if first is None else account_from_row(first, cipher, providers)


def first_profile(rows: Iterable[Mapping[str, Any]], cipher: FieldCipher) -> AccountProfile | None:
    """The first account among row mappings of `PROFILE_COLUMNS`, as its owner is shown it."""
    r, providers = _first_with_providers(rows)
    if r is None:
        return None
    methods = sign_in_methods(has_password=bool(r[HAS_PASSWORD]), sns=providers)
    return AccountProfile(**_shown(r, cipher), sign_in_methods=tuple(methods))


def _first_with_providers(rows: Iterable[Mapping[Any, Any]]) -> tuple[Any, tuple[str, ...]]:
    """The first account's row mapping (None if no row has one) and its SNS providers, sorted
    (row mappings of an account joined with its links: one row per link)."""
    account_id: str | None = None
    first: Any = None
    providers: list[str] = []
    for m in rows:
        if m["id"] is None:
            continue  # an outer join found no account
        if account_id is None:
            account_id, first = m["id"], m
        elif m["id"] != account_id:
            continue
        if m[SNS_PROVIDER] is not None:
            providers.append(m[SNS_PROVIDER])
    return first, tuple(sorted(providers))


def _decrypted(r: Any, cipher: FieldCipher, column: ec.EncryptedColumn) -> str | None:
    value = r[column.column]
    return None if value is None else column.decrypt(cipher, r["id"], value)


class _Shown(TypedDict):
    """The fields an `Account` and its `AccountProfile` share."""

    id: str
    status: AccountStatus
    email: str | None
    name: str
    phone_number: str
    birth_date: date
    identity_verified: bool
    consents: Consents
    created_at: datetime


def _shown(r: Any, cipher: FieldCipher) -> _Shown:
    """The fields an account and its profile share, from a row mapping (personal ones
    decrypted)."""
    birth = _decrypted(r, cipher, ec.ACCOUNT_BIRTH_DATE)
    assert birth is not None
    return _Shown(
        id=r["id"],
        status=AccountStatus(r["status"]),
        email=_decrypted(r, cipher, ec.ACCOUNT_EMAIL),
        name=_decrypted(r, cipher, ec.ACCOUNT_NAME) or "",
        phone_number=_decrypted(r, cipher, ec.ACCOUNT_PHONE) or "",
        birth_date=date.fromisoformat(birth),
        identity_verified=bool(r["identity_verified"]),
        consents=consents_from_row(r),
        created_at=r["created_at"],
    )


def account_from_row(r: Any, cipher: FieldCipher, sns_providers: tuple[str, ...]) -> Account:
    """An account from its row's mapping (decrypted personal fields)."""
    return Account(
        **_shown(r, cipher),
        ci=_decrypted(r, cipher, ec.ACCOUNT_CI),
        di=_decrypted(r, cipher, ec.ACCOUNT_DI),
        password_hash=r["password_hash"],
        failed_logins=r["failed_logins"],
        locked_until=r["locked_until"],
        sns_providers=sns_providers,
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
