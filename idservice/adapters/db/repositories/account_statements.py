"""The accounts repository's statements, built once: each call then hits SQLAlchemy's
compiled cache without rebuilding or re-keying its statement, or (the hot ones, compiled.py)
skips SQLAlchemy's execution path."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from idservice.adapters.db import tables as t
from idservice.adapters.db.compiled import CompiledStatement
from idservice.adapters.db.repositories.account_rows import (
    ACCOUNT_COLUMNS,
    STANDING_COLUMNS,
    with_sns,
)
from idservice.domain.accounts import AccountStatus

A = t.accounts.c

# Reads see live accounts only; a withdrawn account's remains just hold its CI/DI indexes.
LIVE = A.withdrawn_at.is_(None)


def at(name: str) -> BindParameter[datetime]:
    """A datetime parameter converted by the columns' UTC type wherever it stands."""
    return bindparam(name, type_=t.UtcDateTime())


# Statements are built once, here: those of logins and sign-ups run on the driver's cursor
# (compiled.py), the others hit SQLAlchemy's compiled cache without rebuilding or re-keying. A
# parameter of an UPDATE is never named after a column of its table (SQLAlchemy would take it
# for one more column to set).
_BY_ID = (
    select(*ACCOUNT_COLUMNS)
    .select_from(with_sns(t.accounts))
    .where(A.id == bindparam("account_id"), LIVE)
)
BY_ID = CompiledStatement(_BY_ID)
# PostgreSQL locks the account row (not the nullable side of the outer join); SQLite's writers
# are serialised already (BEGIN IMMEDIATE).
BY_ID_FOR_UPDATE = CompiledStatement(_BY_ID.with_for_update(of=t.accounts))
BY_EMAIL = CompiledStatement(
    select(*ACCOUNT_COLUMNS)
    .select_from(with_sns(t.accounts))
    .where(A.email_index == bindparam("email_index"), LIVE)
)
# A password login's read: the standing and the hash, no SNS join, one decryption.
CREDENTIALS_BY_EMAIL = CompiledStatement(
    select(*STANDING_COLUMNS, A.password_hash).where(
        A.email_index == bindparam("email_index"), LIVE
    )
)
# An account is inserted with every column but those of later events (`_to_row` gives them).
LATER = frozenset({"attempts_expire_at", "marketing_reminded_at", "withdrawn_at", "hold_until"})
ADD_COLUMNS = tuple(column.name for column in t.accounts.c if column.name not in LATER)
ADD = CompiledStatement(insert(t.accounts), columns=ADD_COLUMNS)
ADD_REJOIN_HOLD = insert(t.rejoin_holds)

PENDING = A.status == AccountStatus.PENDING_GUARDIAN_CONSENT.value
DELETE_PENDING = delete(t.accounts).where(A.id == bindparam("account_id"), PENDING)
ACTIVATE = (
    update(t.accounts)
    .where(A.id == bindparam("account_id"), PENDING)
    .values(status=AccountStatus.ACTIVE.value, updated_at=at("now"))
)
DELETE = delete(t.accounts).where(A.id == bindparam("account_id"))

# The hash swap: compare-and-set on the hash; `KEEP_HASH` only locks the row.
HASH_IS_EXPECTED = (A.id == bindparam("account_id"), A.password_hash == bindparam("expected"))
KEEP_HASH = CompiledStatement(
    update(t.accounts).where(*HASH_IS_EXPECTED).values(password_hash=bindparam("expected"))
)
SWAP_HASH = CompiledStatement(
    update(t.accounts)
    .where(*HASH_IS_EXPECTED)
    .values(password_hash=bindparam("new_hash"), updated_at=at("now"))
)

# The login gate (`LockoutPolicy`): the threshold and the lock's end are parameters.
IN_FLIGHT = case((A.attempts_expire_at > at("now"), A.attempts_in_flight), else_=0)
ADMIT_ATTEMPT = CompiledStatement(
    update(t.accounts)
    .where(
        A.id == bindparam("account_id"),
        or_(A.locked_until.is_(None), A.locked_until <= at("now")),
        A.failed_logins + IN_FLIGHT < bindparam("threshold"),
    )
    .values(attempts_in_flight=IN_FLIGHT + 1, attempts_expire_at=at("in_flight_until"))
)
LOCKED_UNTIL = CompiledStatement(select(A.locked_until).where(A.id == bindparam("account_id")))
SETTLED = case((A.attempts_in_flight > 0, A.attempts_in_flight - 1), else_=0)
ATTEMPT_SUCCEEDED = CompiledStatement(
    update(t.accounts)
    .where(A.id == bindparam("account_id"))
    .values(attempts_in_flight=SETTLED, failed_logins=0, locked_until=None)
)
REACHES_LOCK = A.failed_logins + 1 >= bindparam("threshold")
ATTEMPT_FAILED = CompiledStatement(
    update(t.accounts)
    .where(A.id == bindparam("account_id"))
    .values(
        attempts_in_flight=SETTLED,
        failed_logins=case((REACHES_LOCK, 0), else_=A.failed_logins + 1),
        locked_until=case((REACHES_LOCK, at("lock_until")), else_=A.locked_until),
    )
)


def identity(table: Table, *, ci: bool, di: bool) -> ColumnElement[bool]:
    """The row has this CI blind index or this DI one (parameters `ci_index`, `di_index`)."""
    conditions = []
    if ci:
        conditions.append(table.c.ci_index == bindparam("ci_index"))
    if di:
        conditions.append(table.c.di_index == bindparam("di_index"))
    return or_(*conditions)


# One statement per shape of a CI/DI lookup, by (has CI, has DI).
IDENTITY_SHAPES = ((True, False), (False, True), (True, True))
BY_IDENTITY = {
    (ci, di): CompiledStatement(
        select(*ACCOUNT_COLUMNS)
        .select_from(with_sns(t.accounts))
        .where(identity(t.accounts, ci=ci, di=di), LIVE)
    )
    for ci, di in IDENTITY_SHAPES
}
# One statement: the latest running hold among re-join holds and among withdrawn remains.
HOLD_UNTIL = {
    (ci, di): CompiledStatement(
        select(
            *(
                select(func.max(table.c.hold_until))
                .where(identity(table, ci=ci, di=di), table.c.hold_until > at("now"))
                .scalar_subquery()
                .label(table.name)
                for table in (t.rejoin_holds, t.accounts)
            )
        )
    )
    for ci, di in IDENTITY_SHAPES
}
EXPIRED_REMAINS = (A.withdrawn_at.is_not(None), A.hold_until <= at("now"))
RELEASE_EXPIRED_HOLD = {
    (ci, di): CompiledStatement(
        delete(t.accounts).where(identity(t.accounts, ci=ci, di=di), *EXPIRED_REMAINS)
    )
    for ci, di in IDENTITY_SHAPES
}
PURGE_HOLDS = delete(t.rejoin_holds).where(t.rejoin_holds.c.hold_until <= at("now"))
PURGE_REMAINS = delete(t.accounts).where(*EXPIRED_REMAINS)

WITHDRAW_READ = (
    select(A.ci_index, A.di_index).where(A.id == bindparam("account_id"), LIVE).with_for_update()
)
# Everything under the account goes (sessions, SNS links, consent requests cascade). The
# sessions' refresh tokens go first, on their own: a refresh locks its token's row and then its
# session's (the successor's foreign key), so a withdrawal taking the session's row first and
# its tokens by cascade would deadlock with a refresh on PostgreSQL. A successor written while
# the withdrawal waited goes with its session (the cascade sees it).
WITHDRAW_CASCADE = (
    delete(t.refresh_tokens).where(
        t.refresh_tokens.c.session_id.in_(
            select(t.sessions.c.id).where(t.sessions.c.account_id == bindparam("account_id"))
        )
    ),
    *(
        delete(table).where(table.c.account_id == bindparam("account_id"))
        for table in (t.sessions, t.sns_identities, t.guardian_consent_requests)
    ),
)
# What a withdrawn account keeps: its CI/DI blind indexes until its re-join hold ends.
WITHDRAW_TO_REMAINS = (
    update(t.accounts)
    .where(A.id == bindparam("account_id"))
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
        withdrawn_at=at("now"),
        hold_until=at("held_until"),
        updated_at=at("now"),
    )
)
SAVE_CONSENTS = (
    update(t.accounts)
    .where(A.id == bindparam("account_id"))
    .values(
        marketing_opt_in=bindparam("marketing"),
        marketing_updated_at=at("marketing_at"),
        processing_suspended=bindparam("suspended"),
        third_party_opt_in=bindparam("third_party"),
        third_party_updated_at=at("third_party_at"),
        updated_at=at("now"),
    )
)
# `marketing_reminded_at` is the anniversary last reminded: the next is two years on. The
# oldest of an opt-in's time and its last reminder first: rows whose next anniversary is a day
# or two off (the bound is coarse) come after every row that is due.
_REMINDER_ANCHOR = case(
    (A.marketing_reminded_at > A.marketing_updated_at, A.marketing_reminded_at),
    else_=A.marketing_updated_at,
)
RECONFIRMATION_DUE = (
    select(A.id, A.marketing_updated_at, A.marketing_reminded_at)
    .where(
        LIVE,
        A.marketing_opt_in.is_(True),
        A.marketing_updated_at <= at("opted_in_before"),
        or_(
            A.marketing_reminded_at.is_(None),
            A.marketing_reminded_at <= at("opted_in_before"),
        ),
    )
    .order_by(_REMINDER_ANCHOR, A.id)
    .limit(bindparam("limit", type_=Integer()))
)
# Compare-and-set: of two purges racing (several processes), one records the reminder; and only
# for the opt-in that was read (a re-confirmation since starts a new two years).
MARK_REMINDED = (
    update(t.accounts)
    .where(
        A.id == bindparam("account_id"),
        A.marketing_opt_in.is_(True),
        A.marketing_updated_at == at("opted_in_at"),
        or_(A.marketing_reminded_at.is_(None), A.marketing_reminded_at < at("due")),
    )
    .values(marketing_reminded_at=at("due"))
)
