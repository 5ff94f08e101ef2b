"""Sessions and their rotating refresh tokens (stored as keyed hashes only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import tables as t
from idservice.adapters.db.compiled import CompiledStatement
from idservice.adapters.db.repositories.account_rows import (
    CONSENT_COLUMNS,
    PROFILE_COLUMNS,
    STANDING_COLUMNS,
    consents_from_row,
    first_profile,
    standing_from_row,
    with_sns,
)
from idservice.domain.accounts import AccountProfile, AccountStatus, Consents
from idservice.domain.sessions import RevokeReason, Session
from idservice.service_layer.ports import AccountStanding, RefreshRecord

# Session columns under their own names where a statement also reads the account's columns.
_PREFIX = "session_"
_SESSION_COLUMNS = tuple(c.label(f"{_PREFIX}{c.name}") for c in t.sessions.c)
# The session's account, outer-joined: a session whose account is gone still reads (as None).
_SESSION_LIVE_ACCOUNT = t.sessions.outerjoin(
    t.accounts,
    (t.accounts.c.id == t.sessions.c.account_id) & t.accounts.c.withdrawn_at.is_(None),
)
_SESSION_ACCOUNT = with_sns(_SESSION_LIVE_ACCOUNT)

# Built once, so no call rebuilds a statement.
_GET = select(t.sessions).where(t.sessions.c.id == bindparam("session_id"))
# The statements of the cheap calls (IntrospectToken, GetAccount, RefreshSession, and the
# sessions every login and sign-up opens) run on the driver's cursor (compiled.py).
_GET_WITH_PROFILE = CompiledStatement(
    select(*_SESSION_COLUMNS, *PROFILE_COLUMNS)
    .select_from(_SESSION_ACCOUNT)
    .where(t.sessions.c.id == bindparam("session_id"))
)
_GET_WITH_STANDING = CompiledStatement(
    select(*_SESSION_COLUMNS, *STANDING_COLUMNS)
    .select_from(_SESSION_LIVE_ACCOUNT)
    .where(t.sessions.c.id == bindparam("session_id"))
)
_GET_WITH_CONSENTS = CompiledStatement(
    select(*_SESSION_COLUMNS, *CONSENT_COLUMNS)
    .select_from(_SESSION_LIVE_ACCOUNT)
    .where(t.sessions.c.id == bindparam("session_id"))
)
_REFRESH_COLUMNS = (
    t.refresh_tokens.c.expires_at.label("token_expires_at"),
    t.refresh_tokens.c.used_at.label("token_used_at"),
)
_FIND_REFRESH = (
    select(*_REFRESH_COLUMNS, *_SESSION_COLUMNS)
    .join_from(t.refresh_tokens, t.sessions, t.sessions.c.id == t.refresh_tokens.c.session_id)
    .where(t.refresh_tokens.c.token_hash == bindparam("token_hash"))
)
_FIND_REFRESH_WITH_STANDING = CompiledStatement(
    select(*_REFRESH_COLUMNS, *_SESSION_COLUMNS, *STANDING_COLUMNS)
    .select_from(
        t.refresh_tokens.join(
            t.sessions, t.sessions.c.id == t.refresh_tokens.c.session_id
        ).outerjoin(
            t.accounts,
            (t.accounts.c.id == t.sessions.c.account_id) & t.accounts.c.withdrawn_at.is_(None),
        )
    )
    .where(t.refresh_tokens.c.token_hash == bindparam("token_hash"))
)
_NOW = bindparam("now", type_=t.UtcDateTime())
# Used once, and only while its session is live (not revoked, not expired): a logout that
# committed after the token was read still wins.
# A refresh token that may be used now: unused, its session live.
_USABLE_REFRESH = (
    t.refresh_tokens.c.token_hash == bindparam("hash"),
    t.refresh_tokens.c.used_at.is_(None),
    select(t.sessions.c.id)
    .where(
        t.sessions.c.id == t.refresh_tokens.c.session_id,
        t.sessions.c.revoked_at.is_(None),
        t.sessions.c.expires_at > _NOW,
    )
    .exists(),
)
_MARK_REFRESH_USED = CompiledStatement(
    update(t.refresh_tokens).where(*_USABLE_REFRESH).values(used_at=_NOW)
)
_ADD = CompiledStatement(
    insert(t.sessions), columns=("id", "account_id", "amr", "created_at", "expires_at")
)
# What a rotation requires beyond `_USABLE_REFRESH`: the token unexpired, and the session's
# account live and allowed tokens (`AccountStatus.may_sign_in`). Anything else goes to the
# refresh's second path, which tells the caller why.
_MAY_GET_TOKENS = or_(*(t.accounts.c.status == s.value for s in AccountStatus if s.may_sign_in))
_ROTATABLE_REFRESH = (
    t.refresh_tokens.c.token_hash == bindparam("hash"),
    t.refresh_tokens.c.used_at.is_(None),
    t.refresh_tokens.c.expires_at > _NOW,
    select(t.sessions.c.id)
    .join_from(t.sessions, t.accounts, t.accounts.c.id == t.sessions.c.account_id)
    .where(
        t.sessions.c.id == t.refresh_tokens.c.session_id,
        t.sessions.c.revoked_at.is_(None),
        t.sessions.c.expires_at > _NOW,
        t.accounts.c.withdrawn_at.is_(None),
        _MAY_GET_TOKENS,
    )
    .exists(),
)
_USE_FOR_ROTATION = update(t.refresh_tokens).where(*_ROTATABLE_REFRESH).values(used_at=_NOW)
_USE_FOR_ROTATION_SQLITE = CompiledStatement(_USE_FOR_ROTATION, dialect="sqlite")
# PostgreSQL: the use, the successor (expiring with its session) and what the next access
# token needs of the session and its account, in one statement, atomic on its own (a
# single-write unit of work runs it in autocommit: one round trip instead of a read, BEGIN, two
# writes and COMMIT). The successor is inserted, and a row returned, only when the use updated
# a row.
_USED = _USE_FOR_ROTATION.returning(t.refresh_tokens.c.session_id).cte("used")
_SUCCESSOR = (
    insert(t.refresh_tokens)
    .from_select(
        ["token_hash", "session_id", "created_at", "expires_at"],
        select(
            bindparam("successor", type_=t.refresh_tokens.c.token_hash.type),
            t.sessions.c.id,
            _NOW,
            t.sessions.c.expires_at,
        ).join_from(_USED, t.sessions, t.sessions.c.id == _USED.c.session_id),
    )
    .returning(t.refresh_tokens.c.session_id)
    .cte("successor")
)
_ROTATE_REFRESH_POSTGRES = CompiledStatement(
    select(*_SESSION_COLUMNS, *STANDING_COLUMNS).select_from(
        _SUCCESSOR.join(t.sessions, t.sessions.c.id == _SUCCESSOR.c.session_id).join(
            t.accounts, t.accounts.c.id == t.sessions.c.account_id
        )
    ),
    dialect="postgresql",
)
_ADD_REFRESH_TOKEN = CompiledStatement(
    insert(t.refresh_tokens), columns=("token_hash", "session_id", "created_at", "expires_at")
)
_OF_ACCOUNT = (
    select(t.sessions)
    .where(t.sessions.c.account_id == bindparam("account"))
    .order_by(t.sessions.c.created_at.desc(), t.sessions.c.id)
)
_REVOKED = {
    "revoked_at": bindparam("now", type_=t.UtcDateTime()),
    "revoked_reason": bindparam("reason"),
}
_REVOKE = (
    update(t.sessions)
    .where(t.sessions.c.id == bindparam("session_id"), t.sessions.c.revoked_at.is_(None))
    .values(_REVOKED)
)
_REVOKE_ALL = (
    update(t.sessions)
    .where(t.sessions.c.account_id == bindparam("account"), t.sessions.c.revoked_at.is_(None))
    .values(_REVOKED)
)
_REVOKE_OTHERS = _REVOKE_ALL.where(t.sessions.c.id != bindparam("keep"))


class SqlSessionRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def add(self, session: Session) -> None:
        _ADD.rowcount(
            self._c,
            {
                "id": session.id,
                "account_id": session.account_id,
                "amr": ",".join(session.amr),
                "created_at": session.created_at,
                "expires_at": session.expires_at,
            },
        )

    def add_refresh_token(
        self, token_hash: str, *, session_id: str, now: datetime, expires_at: datetime
    ) -> None:
        _ADD_REFRESH_TOKEN.rowcount(
            self._c,
            {
                "token_hash": token_hash,
                "session_id": session_id,
                "created_at": now,
                "expires_at": expires_at,
            },
        )

    def get(self, session_id: str) -> Session | None:
        row = self._c.execute(_GET, {"session_id": session_id}).first()
        return None if row is None else _session(row._mapping)

    def get_with_profile(self, session_id: str) -> tuple[Session, AccountProfile | None] | None:
        """One statement: the session and its live account as its owner is shown it (with the
        account's SNS providers; no CI, DI or password hash read)."""
        rows = _GET_WITH_PROFILE.all(self._c, {"session_id": session_id})
        if not rows:
            return None
        return _session(rows[0], _PREFIX), first_profile(rows, self._cipher)

    def get_with_standing(self, session_id: str) -> tuple[Session, AccountStanding | None] | None:
        """One statement: the session and its live account's standing (one column decrypted)."""
        m = _GET_WITH_STANDING.first(self._c, {"session_id": session_id})
        if m is None:
            return None
        return _session(m, _PREFIX), standing_from_row(m, self._cipher)

    def get_with_consents(self, session_id: str) -> tuple[Session, Consents | None] | None:
        """One statement: the session and its live account's choices, no personal column."""
        m = _GET_WITH_CONSENTS.first(self._c, {"session_id": session_id})
        if m is None:
            return None
        return _session(m, _PREFIX), None if m["id"] is None else consents_from_row(m)

    def of_account(self, account_id: str) -> list[Session]:
        rows = self._c.execute(_OF_ACCOUNT, {"account": account_id}).all()
        return [_session(row._mapping) for row in rows]

    def find_refresh(self, token_hash: str) -> RefreshRecord | None:
        row = self._c.execute(_FIND_REFRESH, {"token_hash": token_hash}).first()
        return None if row is None else _refresh_record(row._mapping)

    def find_refresh_with_standing(
        self, token_hash: str
    ) -> tuple[RefreshRecord, AccountStanding | None] | None:
        """One statement: the refresh token, its session and what the next tokens need of the
        session's live account (its birth date the one column decrypted)."""
        m = _FIND_REFRESH_WITH_STANDING.first(self._c, {"token_hash": token_hash})
        if m is None:
            return None
        return _refresh_record(m), standing_from_row(m, self._cipher)

    def mark_refresh_used(self, token_hash: str, *, now: datetime) -> bool:
        """Use a refresh token once while its session is live; False when another call used it
        first or the session has ended."""
        return _MARK_REFRESH_USED.rowcount(self._c, {"hash": token_hash, "now": now}) == 1

    def rotate_refresh(
        self, token_hash: str, *, successor: str, now: datetime
    ) -> tuple[Session, AccountStanding] | None:
        params = {"hash": token_hash, "now": now}
        if self._c.dialect.name == "postgresql":
            m = _ROTATE_REFRESH_POSTGRES.first(self._c, params | {"successor": successor})
        else:
            # SQLite has no writes in a WITH clause: three statements in the write transaction.
            if _USE_FOR_ROTATION_SQLITE.rowcount(self._c, params) != 1:
                return None
            m = _FIND_REFRESH_WITH_STANDING.first(self._c, {"token_hash": token_hash})
            assert m is not None, "the token was just used under the write lock"
            self.add_refresh_token(
                successor,
                session_id=m[f"{_PREFIX}id"],
                now=now,
                expires_at=m[f"{_PREFIX}expires_at"],
            )
        if m is None:
            return None
        standing = standing_from_row(m, self._cipher)
        assert standing is not None, "the statement joins a live account"
        return _session(m, _PREFIX), standing

    def revoke(self, session_id: str, *, now: datetime, reason: RevokeReason) -> bool:
        result = self._c.execute(
            _REVOKE, {"session_id": session_id, "now": now, "reason": reason.value}
        )
        return bool(result.rowcount == 1)

    def revoke_others(
        self, account_id: str, *, keep: str | None, now: datetime, reason: RevokeReason
    ) -> int:
        params = {"account": account_id, "now": now, "reason": reason.value}
        if keep:
            result = self._c.execute(_REVOKE_OTHERS, params | {"keep": keep})
        else:
            result = self._c.execute(_REVOKE_ALL, params)
        return result.rowcount

    def purge_ended(self, *, now: datetime, revoked_before: datetime) -> int:
        """Delete expired sessions and those revoked before `revoked_before` (tokens first)."""
        ended = or_(t.sessions.c.expires_at <= now, t.sessions.c.revoked_at <= revoked_before)
        ids = select(t.sessions.c.id).where(ended)
        self._c.execute(delete(t.refresh_tokens).where(t.refresh_tokens.c.session_id.in_(ids)))
        return self._c.execute(delete(t.sessions).where(ended)).rowcount


def _refresh_record(m: Any) -> RefreshRecord:
    return RefreshRecord(
        session=_session(m, _PREFIX), expires_at=m["token_expires_at"], used_at=m["token_used_at"]
    )


def _session(m: Any, prefix: str = "") -> Session:
    return Session(
        id=m[f"{prefix}id"],
        account_id=m[f"{prefix}account_id"],
        amr=tuple(a for a in str(m[f"{prefix}amr"]).split(",") if a),
        created_at=m[f"{prefix}created_at"],
        expires_at=m[f"{prefix}expires_at"],
        revoked_at=m[f"{prefix}revoked_at"],
    )
