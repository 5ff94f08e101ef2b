"""Sessions and their rotating refresh tokens (stored as keyed hashes only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update

from idservice.adapters.db import tables as t
from idservice.domain.sessions import RevokeReason, Session
from idservice.service_layer.ports import RefreshRecord


class SqlSessionRepository:
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
        return None if row is None else _session(row._mapping)

    def of_account(self, account_id: str) -> list[Session]:
        s = t.sessions.c
        rows = self._c.execute(
            select(t.sessions).where(s.account_id == account_id).order_by(s.created_at.desc(), s.id)
        ).all()
        return [_session(row._mapping) for row in rows]

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
            session=_session(m), expires_at=m["token_expires_at"], used_at=m["used_at"]
        )

    def mark_refresh_used(self, token_hash: str, *, now: datetime) -> bool:
        """Use a refresh token once; False when another call used it first."""
        r = t.refresh_tokens.c
        result = self._c.execute(
            update(t.refresh_tokens)
            .where(r.token_hash == token_hash, r.used_at.is_(None))
            .values(used_at=now)
        )
        return bool(result.rowcount == 1)

    def revoke(self, session_id: str, *, now: datetime, reason: RevokeReason) -> bool:
        s = t.sessions.c
        result = self._c.execute(
            update(t.sessions)
            .where(s.id == session_id, s.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason.value)
        )
        return bool(result.rowcount == 1)

    def revoke_others(
        self, account_id: str, *, keep: str | None, now: datetime, reason: RevokeReason
    ) -> int:
        s = t.sessions.c
        conditions = [s.account_id == account_id, s.revoked_at.is_(None)]
        if keep:
            conditions.append(s.id != keep)
        result = self._c.execute(
            update(t.sessions)
            .where(*conditions)
            .values(revoked_at=now, revoked_reason=reason.value)
        )
        return result.rowcount

    def purge_ended(self, *, now: datetime, revoked_before: datetime) -> int:
        """Delete expired sessions and those revoked before `revoked_before` (tokens first)."""
        ended = or_(t.sessions.c.expires_at <= now, t.sessions.c.revoked_at <= revoked_before)
        ids = select(t.sessions.c.id).where(ended)
        self._c.execute(delete(t.refresh_tokens).where(t.refresh_tokens.c.session_id.in_(ids)))
        return self._c.execute(delete(t.sessions).where(ended)).rowcount


def _session(m: Any) -> Session:
    return Session(
        id=m["id"],
        account_id=m["account_id"],
        amr=tuple(a for a in str(m["amr"]).split(",") if a),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
    )
