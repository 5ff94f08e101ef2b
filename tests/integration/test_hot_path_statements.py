"""The hot calls stay one read (plus the writes a refresh needs): SQL statements per call are
counted on the real engine (SQLite and PostgreSQL) with SQLAlchemy's `before_cursor_execute`
event, so a change that adds a query, a ping or a second unit of work to these paths fails here.

Statements only: a transaction's COMMIT or ROLLBACK goes through the driver, not a cursor. On
SQLite a write unit of work's `BEGIN IMMEDIATE` is a statement and is counted (the unit of work
sends it straight to the driver as SQLAlchemy begins its transaction, so it is counted from the
`begin` event).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import pytest
from sqlalchemy import Engine, event

from idservice.bootstrap import App
from idservice.domain.age import AgePolicy
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.age_check import CheckAge
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.ports import UnitOfWork, UnitOfWorkFactory
from idservice.service_layer.profile import GetAccount
from idservice.service_layer.sessions import (
    IntrospectToken,
    IssuedSession,
    Logout,
    RefreshSession,
    refresh_session,
)
from tests.support.client import STRONG_PASSWORD, Client

R = TypeVar("R")


@contextmanager
def statements_of_this_thread(*, whole: bool = False) -> Iterator[list[str]]:
    """The SQL statements any engine runs on the calling thread while the block runs (the
    server's other threads, such as the connection-log writer, are not counted): their first
    word, or with `whole` their text."""
    seen: list[str] = []
    me = threading.get_ident()

    def before_cursor_execute(*args: Any) -> None:
        if threading.get_ident() == me:
            text = str(args[2])
            seen.append(text if whole else text.split(None, 1)[0].upper())

    def begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get("readonly")
        if threading.get_ident() == me and conn.dialect.name == "sqlite" and not readonly:
            seen.append("BEGIN")

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    event.listen(Engine, "begin", begin)
    try:
        yield seen
    finally:
        event.remove(Engine, "begin", begin)
        event.remove(Engine, "before_cursor_execute", before_cursor_execute)


def counted(call: Callable[[], R]) -> tuple[R, list[str]]:
    call()  # the first call may warm caches; the second is the steady state
    with statements_of_this_thread() as seen:
        result = call()
    return result, seen


@pytest.fixture
def signed_up(client: Client) -> tuple[str, str, str]:
    response = client.sign_up()
    session = response.session
    return response.account.id, session.access_token, session.refresh_token


def test_token_reads_are_one_statement(app: App, signed_up: tuple[str, str, str]) -> None:
    account_id, access_token, _ = signed_up

    introspection, seen = counted(lambda: app.handle(IntrospectToken(access_token=access_token)))
    assert introspection.active and introspection.account_id == account_id
    assert seen == ["SELECT"]

    account, seen = counted(lambda: app.handle(GetAccount(access_token=access_token)))
    assert account.id == account_id
    assert seen == ["SELECT"]

    answer, seen = counted(
        lambda: app.handle(CheckAge(policy=AgePolicy.KR_ADULT, access_token=access_token))
    )
    assert answer.allowed
    assert seen == ["SELECT"]


def test_a_refresh_is_one_atomic_write(app: App, signed_up: tuple[str, str, str]) -> None:
    account_id, _, refresh_token = signed_up
    tokens = [refresh_token]

    def refresh() -> str:
        issued = app.handle(RefreshSession(refresh_token=tokens[-1]))
        tokens.append(issued.refresh_token)
        return issued.account_id

    refreshed, seen = counted(refresh)
    assert refreshed == account_id
    # The token marked used while it, its session and its account may give tokens, the
    # session and account read for the next access token, and the next refresh token: on
    # SQLite three statements in a transaction, on PostgreSQL one statement (`WITH used AS
    # (UPDATE …), successor AS (INSERT …) SELECT …`) without BEGIN and COMMIT.
    if app.settings.database_url.startswith("sqlite"):
        assert seen == ["BEGIN", "UPDATE", "SELECT", "INSERT"]
    else:
        assert seen == ["WITH"]


def test_a_refresh_that_loses_the_race_revokes_the_session(
    app: App, signed_up: tuple[str, str, str]
) -> None:
    """Another refresh with the same token wins just before this one's write: this one writes
    nothing in its single write, finds the token used in its second path, and revokes the
    session as a reuse, so the winner's new token is dead too."""
    _, _, refresh_token = signed_up
    deps = app.deps
    won: list[IssuedSession] = []

    def racing_uow(*, readonly: bool = False, single_write: bool = False) -> UnitOfWork:
        if single_write and not won:
            won.append(app.handle(RefreshSession(refresh_token=refresh_token)))
        return deps.uow(readonly=readonly, single_write=single_write)

    with pytest.raises(DomainError) as lost:
        refresh_session(
            RefreshSession(refresh_token=refresh_token),
            uow=cast(UnitOfWorkFactory, racing_uow),
            tokens=deps.tokens,
            cipher=deps.cipher,
            clock=deps.clock,
        )
    assert lost.value.reason is Reason.TOKEN_INVALID
    with pytest.raises(DomainError) as dead:
        app.handle(RefreshSession(refresh_token=won[0].refresh_token))
    assert dead.value.reason is Reason.TOKEN_INVALID


PERSONAL_COLUMN = re.compile(r"\b(\w+_ct)\b")
PASSWORD_HASH = re.compile(r"accounts\.password_hash(?: IS NOT NULL)?")


def personal_columns(call: Callable[[], object]) -> set[str]:
    """The encrypted (`*_ct`) columns the call's statements name."""
    call()
    with statements_of_this_thread(whole=True) as seen:
        call()
    return {name for text in seen for name in PERSONAL_COLUMN.findall(text)}


def test_the_hot_reads_take_no_personal_column_they_do_not_need(
    app: App, signed_up: tuple[str, str, str]
) -> None:
    _, access_token, refresh_token = signed_up
    tokens = [refresh_token]

    def refresh() -> None:
        tokens.append(app.handle(RefreshSession(refresh_token=tokens[-1])).refresh_token)

    assert personal_columns(lambda: app.handle(IntrospectToken(access_token=access_token))) == set()
    # What its owner is shown: no CI or DI, and of the password hash only whether there is one.
    get_account = GetAccount(access_token=access_token)
    shown = personal_columns(lambda: app.handle(get_account))
    assert shown == {"birth_date_ct", "email_ct", "name_ct", "phone_ct"}
    with statements_of_this_thread(whole=True) as seen:
        app.handle(get_account)
    hash_reads = [m.group(0) for text in seen for m in PASSWORD_HASH.finditer(text)]
    assert hash_reads == ["accounts.password_hash IS NOT NULL"]
    # The age of the account, and the age band of the next access token: the birth date only.
    check_age = CheckAge(policy=AgePolicy.KR_ADULT, access_token=access_token)
    assert personal_columns(lambda: app.handle(check_age)) == {"birth_date_ct"}
    assert personal_columns(refresh) == {"birth_date_ct"}


def test_a_revoked_session_is_seen_at_once(app: App, signed_up: tuple[str, str, str]) -> None:
    """Nothing about the session is kept between calls: the next call after a logout fails."""
    _, access_token, refresh_token = signed_up
    assert app.handle(IntrospectToken(access_token=access_token)).active
    app.handle(GetAccount(access_token=access_token))
    app.handle(Logout(refresh_token=refresh_token))
    assert not app.handle(IntrospectToken(access_token=access_token)).active
    with pytest.raises(DomainError) as raised:
        app.handle(GetAccount(access_token=access_token))
    assert raised.value.reason is Reason.TOKEN_INVALID


def test_a_password_login_reads_the_birth_date_only(app: App, client: Client) -> None:
    # The hash, the standing and the birth date (the access token's age band): no other
    # personal column is read or decrypted to log in.
    client.sign_up(email="Reads.Little@Example.com")
    login = PasswordLogin(email="reads.little@example.COM", password=STRONG_PASSWORD)
    assert personal_columns(lambda: app.handle(login)) == {"birth_date_ct"}
