"""The in-memory session, verification, consent, idempotency and outbox repositories.

Each mirrors its SQL adapter in `idservice.adapters.db.repositories` (the contract suite in
`tests/integration/test_repository_contract*.py` runs the same tests against both).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime, timedelta

from idservice.domain.events import Event
from idservice.domain.identity import VerifiedPerson
from idservice.domain.sessions import RevokeReason, Session
from idservice.service_layer.ports import (
    IdempotentResult,
    NewConsentRequest,
    PendingEvent,
    RefreshRecord,
    StoredVerification,
    UniqueViolation,
)
from tests.fakes.storage_state import (
    ConsentRow,
    FakeIntegrityError,
    IdempotencyRow,
    OutboxRow,
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

    def find_refresh(self, token_hash: str) -> RefreshRecord | None:
        state = self._access.read()
        token = state.refresh_tokens.get(token_hash)
        if token is None:
            return None
        session = copy.deepcopy(state.sessions[token.session_id].session)
        return RefreshRecord(session=session, expires_at=token.expires_at, used_at=token.used_at)

    def mark_refresh_used(self, token_hash: str, *, now: datetime) -> bool:
        token = self._access.write().refresh_tokens.get(token_hash)
        if token is None or token.used_at is not None:
            return False
        token.used_at = utc(now)
        return True

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

    def consume(self, verification_id: str, *, now: datetime) -> bool:
        now = utc(now)
        row = self._access.write().verifications.get(verification_id)
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


class FakeGuardianConsentRepository:
    def __init__(self, access: StateAccess) -> None:
        self._access = access

    def add(self, request: NewConsentRequest) -> None:
        state = self._access.write()
        if request.account_id not in state.accounts:
            raise FakeIntegrityError("fk_guardian_consent_requests_account_id_accounts")
        if request.id in state.consent_requests:
            raise FakeIntegrityError("pk_guardian_consent_requests")
        stored = dataclasses.replace(
            request, created_at=utc(request.created_at), expires_at=utc(request.expires_at)
        )
        state.consent_requests[request.id] = ConsentRow(request=stored)

    def expired_pending(self, *, now: datetime, limit: int) -> list[tuple[str, str]]:
        now = utc(now)
        expired = sorted(
            (
                row.request
                for row in self._access.read().consent_requests.values()
                if row.status == "pending" and row.request.expires_at <= now
            ),
            key=lambda request: request.expires_at,
        )
        return [(request.id, request.account_id) for request in expired[: max(limit, 0)]]


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


class FakeOutboxRepository:
    def __init__(self, access: StateAccess) -> None:
        self._access = access

    def add(self, event: Event) -> None:
        state = self._access.write()
        if event.id in state.outbox:
            raise FakeIntegrityError("pk_outbox")
        occurred_at = utc(event.occurred_at)
        state.outbox[event.id] = OutboxRow(
            type=event.type.value,
            document=event.document(),
            created_at=occurred_at,
            attempts=0,
            next_attempt_at=occurred_at,
        )

    def due(
        self, *, now: datetime, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[tuple[str, datetime]]:
        now = utc(now)
        cursor = None if after is None else (utc(after[0]), after[1])
        due = sorted(
            (row.created_at, event_id)
            for event_id, row in self._access.read().outbox.items()
            if row.delivered_at is None and row.next_attempt_at <= now
        )
        if cursor is not None:
            due = [entry for entry in due if entry > cursor]
        return [(event_id, created_at) for created_at, event_id in due[: max(limit, 0)]]

    def claim(self, event_id: str, *, now: datetime, until: datetime) -> PendingEvent | None:
        row = self._access.write().outbox.get(event_id)
        if row is None or row.delivered_at is not None or row.next_attempt_at > utc(now):
            return None
        row.next_attempt_at = utc(until)
        body = row.document.encode("utf-8")
        return PendingEvent(id=event_id, type=row.type, attempts=row.attempts, body=body)

    def mark_delivered(self, event_id: str, *, now: datetime) -> None:
        row = self._access.write().outbox.get(event_id)
        if row is not None and row.delivered_at is None:
            row.delivered_at, row.attempts = utc(now), row.attempts + 1

    def reschedule(
        self, event_id: str, *, lease: datetime, attempts: int, next_attempt_at: datetime
    ) -> bool:
        row = self._access.write().outbox.get(event_id)
        if row is None or row.delivered_at is not None or row.next_attempt_at != utc(lease):
            return False
        row.attempts, row.next_attempt_at = attempts, utc(next_attempt_at)
        return True

    def purge_delivered(self, *, before: datetime) -> int:
        before = utc(before)
        state = self._access.write()
        old = [
            event_id
            for event_id, row in state.outbox.items()
            if row.delivered_at is not None and row.delivered_at < before
        ]
        for event_id in old:
            del state.outbox[event_id]
        return len(old)

    def delete_matching(self, event_type: str, *, key: str, values: set[str]) -> int:
        if not values:
            return 0
        state = self._access.write()
        doomed = [
            event_id
            for event_id, row in state.outbox.items()
            if row.type == event_type
            and json.loads(row.document).get("data", {}).get(key) in values
        ]
        for event_id in doomed:
            del state.outbox[event_id]
        return len(doomed)
