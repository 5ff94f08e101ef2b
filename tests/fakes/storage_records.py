"""The in-memory session, verification and idempotency repositories (the outbox's is in
`storage_outbox.py`, the guardian consents' and attempt counters' in `storage_consents.py`).

Each mirrors its SQL adapter in `idservice.adapters.db.repositories` (the contract suite in
`tests/integration/test_repository_contract*.py` runs the same tests against both).
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime, timedelta

from idservice.domain.accounts import Account, AccountProfile, Consents
from idservice.domain.identity import VerifiedPerson
from idservice.domain.sessions import RevokeReason, Session
from idservice.service_layer.ports import (
    AccountStanding,
    IdempotentResult,
    RefreshRecord,
    StoredVerification,
    UniqueViolation,
)
from tests.fakes.storage_accounts import loaded_account
from tests.fakes.storage_state import (
    FakeIntegrityError,
    IdempotencyRow,
    RefreshRow,
    SessionRow,
    StateAccess,
    VerificationRow,
    utc,
)


class FakeSessionRepository:
    def __init__(self, access: StateAccess) -> None:
        self._access = access

    def add(self, session: Session) -> None:
        state = self._access.write()
        if session.account_id not in state.accounts:
            raise FakeIntegrityError("fk_sessions_account_id_accounts")
        if session.id in state.sessions:
            raise FakeIntegrityError("pk_sessions")
        stored = dataclasses.replace(
            session,
            # Stored as one comma-joined column; `revoked_at` is not part of the insert.
            amr=tuple(a for a in ",".join(session.amr).split(",") if a),
            created_at=utc(session.created_at),
            expires_at=utc(session.expires_at),
            revoked_at=None,
        )
        state.sessions[session.id] = SessionRow(session=stored)

    def add_refresh_token(
        self, token_hash: str, *, session_id: str, now: datetime, expires_at: datetime
    ) -> None:
        state = self._access.write()
        if session_id not in state.sessions:
            raise FakeIntegrityError("fk_refresh_tokens_session_id_sessions")
        if token_hash in state.refresh_tokens:
            raise FakeIntegrityError("pk_refresh_tokens")
        state.refresh_tokens[token_hash] = RefreshRow(
            session_id=session_id, created_at=utc(now), expires_at=utc(expires_at)
        )

    def get(self, session_id: str) -> Session | None:
        row = self._access.read().sessions.get(session_id)
        return None if row is None else copy.deepcopy(row.session)

    def get_with_profile(self, session_id: str) -> tuple[Session, AccountProfile | None] | None:
        session = self.get(session_id)
        if session is None:
            return None
        account = self._live_account(session.account_id)
        return session, None if account is None else AccountProfile.of(account)

    def get_with_consents(self, session_id: str) -> tuple[Session, Consents | None] | None:
        session = self.get(session_id)
        if session is None:
            return None
        account = self._live_account(session.account_id)
        return session, None if account is None else account.consents

    def _live_account(self, account_id: str) -> Account | None:
        state = self._access.read()
        row = state.accounts.get(account_id)
        return None if row is None or not row.live else loaded_account(state, row)

    def of_account(self, account_id: str) -> list[Session]:
        rows = [
            row.session
            for row in self._access.read().sessions.values()
            if row.session.account_id == account_id
        ]
        # As the SQL one: newest first, ties by id.
        rows.sort(key=lambda session: session.id)
        rows.sort(key=lambda session: session.created_at, reverse=True)
        return [copy.deepcopy(session) for session in rows]

    def find_refresh(self, token_hash: str) -> RefreshRecord | None:
        state = self._access.read()
        token = state.refresh_tokens.get(token_hash)
        if token is None:
            return None
        session = copy.deepcopy(state.sessions[token.session_id].session)
        return RefreshRecord(session=session, expires_at=token.expires_at, used_at=token.used_at)

    def find_refresh_with_standing(
        self, token_hash: str
    ) -> tuple[RefreshRecord, AccountStanding | None] | None:
        record = self.find_refresh(token_hash)
        if record is None:
            return None
        return record, self._standing(record.session.account_id)

    def get_with_standing(self, session_id: str) -> tuple[Session, AccountStanding | None] | None:
        session = self.get(session_id)
        return None if session is None else (session, self._standing(session.account_id))

    def _standing(self, account_id: str) -> AccountStanding | None:
        account = self._live_account(account_id)
        if account is None:
            return None
        return AccountStanding(
            account.id, account.status, account.birth_date, account.identity_verified
        )

    def mark_refresh_used(self, token_hash: str, *, now: datetime) -> bool:
        state = self._access.write()
        token = state.refresh_tokens.get(token_hash)
        if token is None or token.used_at is not None:
            return False
        row = state.sessions.get(token.session_id)
        if row is None or not row.session.is_active(utc(now)):
            return False
        token.used_at = utc(now)
        return True

    def rotate_refresh(
        self, token_hash: str, *, successor: str, now: datetime
    ) -> tuple[Session, AccountStanding] | None:
        state = self._access.write()
        token = state.refresh_tokens.get(token_hash)
        if token is None or token.expires_at <= utc(now):
            return None
        row = state.sessions.get(token.session_id)
        if row is None:
            return None
        standing = self._standing(row.session.account_id)
        if standing is None or not standing.status.may_sign_in:
            return None
        if not self.mark_refresh_used(token_hash, now=now):
            return None
        session = copy.deepcopy(row.session)
        self.add_refresh_token(
            successor, session_id=session.id, now=now, expires_at=session.expires_at
        )
        return session, standing

    def revoke(self, session_id: str, *, now: datetime, reason: RevokeReason) -> bool:
        row = self._access.write().sessions.get(session_id)
        if row is None or row.session.revoked_at is not None:
            return False
        row.session.revoked_at, row.revoked_reason = utc(now), reason.value
        return True

    def revoke_others(
        self, account_id: str, *, keep: str | None, now: datetime, reason: RevokeReason
    ) -> int:
        revoked = 0
        for session_id, row in self._access.write().sessions.items():
            s = row.session
            if s.account_id == account_id and s.revoked_at is None and session_id != keep:
                s.revoked_at, row.revoked_reason = utc(now), reason.value
                revoked += 1
        return revoked

    def purge_ended(self, *, now: datetime, revoked_before: datetime) -> int:
        now, revoked_before = utc(now), utc(revoked_before)
        state = self._access.write()
        ended = {
            session_id
            for session_id, row in state.sessions.items()
            if row.session.expires_at <= now
            or (row.session.revoked_at is not None and row.session.revoked_at <= revoked_before)
        }
        state.drop_sessions(ended)
        return len(ended)


class FakeVerificationRepository:
    def __init__(self, access: StateAccess) -> None:
        self._access = access

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
        state = self._access.write()
        rows = state.verifications.values()
        if any(row.source_hash == source_hash for row in rows):
            raise UniqueViolation("source_hash")
        if verification_id in state.verifications:
            raise FakeIntegrityError("pk_verifications")
        if any(row.token_hash == token_hash for row in rows):
            raise FakeIntegrityError("uq_verifications_token_hash")
        state.verifications[verification_id] = VerificationRow(
            provider=provider,
            source_hash=source_hash,
            token_hash=token_hash,
            person=person,
            created_at=utc(now),
            expires_at=utc(expires_at),
        )

    def get_by_token(self, token_hash: str) -> StoredVerification | None:
        for verification_id, row in self._access.read().verifications.items():
            if row.token_hash == token_hash and row.person is not None:
                return StoredVerification(
                    id=verification_id,
                    provider=row.provider,
                    person=copy.deepcopy(row.person),
                    expires_at=row.expires_at,
                    consumed_at=row.consumed_at,
                )
        return None

    def consume(self, token_hash: str, *, now: datetime) -> bool:
        now = utc(now)
        rows = self._access.write().verifications.values()
        row = next((row for row in rows if row.token_hash == token_hash), None)
        if row is None or row.consumed_at is not None or row.expires_at <= now:
            return False
        row.consumed_at, row.person = now, None
        return True

    def purge_expired(self, *, now: datetime) -> int:
        now = utc(now)
        purged = 0
        for row in self._access.write().verifications.values():
            if row.expires_at <= now and row.person is not None:
                row.person = None  # the replay guard (source_hash) stays
                purged += 1
        return purged


class FakeIdempotencyRepository:
    def __init__(self, access: StateAccess) -> None:
        self._access = access

    def get(self, key_hash: str, *, operation: str, now: datetime) -> IdempotentResult | None:
        row = self._access.read().idempotency.get(key_hash)
        if row is None or row.operation != operation or row.expires_at <= utc(now):
            return None
        return IdempotentResult(fingerprint=row.fingerprint, response=bytes(row.response))

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
        now = utc(now)
        state = self._access.write()
        existing = state.idempotency.get(key_hash)
        if existing is not None and existing.expires_at <= now:
            del state.idempotency[key_hash]  # an expired record of the same key is replaced
        elif existing is not None:
            raise UniqueViolation("key_hash")
        state.idempotency[key_hash] = IdempotencyRow(
            operation=operation,
            fingerprint=fingerprint,
            response=bytes(response),
            created_at=now,
            expires_at=now + ttl,
        )

    def purge_expired(self, *, now: datetime) -> int:
        now = utc(now)
        state = self._access.write()
        expired = [key for key, row in state.idempotency.items() if row.expires_at <= now]
        for key in expired:
            del state.idempotency[key]
        return len(expired)
