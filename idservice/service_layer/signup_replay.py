"""A SignUp's first result, kept for its idempotency key and handed back on a replay.

The session's tokens in it are sealed under the caller's key (see `idempotency`), and handed
back only while that session has not moved on: a rotated refresh token handed back would trip
reuse detection and log the person out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from idservice.domain.accounts import Account
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer import idempotency
from idservice.service_layer.guardian_consent import ConsentRequestRef
from idservice.service_layer.passwords import check_password
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    PasswordHasher,
    SecretsCipher,
    TokenPurpose,
    UnitOfWorkFactory,
)
from idservice.service_layer.sessions import IssuedSession


@dataclass(frozen=True, slots=True)
class SignUpResult:
    account: Account
    session: IssuedSession | None
    consent_request: ConsentRequestRef | None


def replay_signup(
    key: idempotency.IdempotencyKey,
    password: str,
    *,
    now: datetime,
    uow: UnitOfWorkFactory,
    hasher: PasswordHasher,
    cipher: SecretsCipher,
    policy: Policy,
) -> SignUpResult | None:
    """The first result of this key, if the body is the same; tokens only while still live."""
    data = idempotency.recall(key, now=now, uow=uow)
    if data is None:
        return None
    with uow(readonly=True) as tx:
        account = tx.accounts.get(str(data["account_id"]))
    if account is None:
        # The account is gone (withdrawn or its consent window closed): the key is spent.
        raise idempotency.key_reused("the idempotency key belongs to a finished signup")
    if account.password_hash:
        try:
            # Counted like a login: a replay is no way around the lock.
            check_password(
                account, password, now=now, uow=uow, hasher=hasher, lockout=policy.lockout
            )
        except DomainError as exc:
            if exc.reason is Reason.INVALID_CREDENTIALS:
                raise idempotency.key_reused() from None
            raise
    # An SNS signup has no password to re-present: its replay returns the account but never
    # the tokens (the used ticket and the key alone must not yield a live session).
    session = (
        _live_session(
            account.id,
            idempotency.unseal(key, data.get("session_sealed"), cipher=cipher),
            now=now,
            uow=uow,
            cipher=cipher,
        )
        if account.password_hash
        else None
    )
    consent = None
    stored_consent = data.get("consent_request")
    if isinstance(stored_consent, dict):
        consent = ConsentRequestRef(
            id=stored_consent["id"], expires_at=datetime.fromisoformat(stored_consent["expires_at"])
        )
    return SignUpResult(account=account, session=session, consent_request=consent)


def _live_session(
    account_id: str,
    unsealed: str | None,
    *,
    now: datetime,
    uow: UnitOfWorkFactory,
    cipher: SecretsCipher,
) -> IssuedSession | None:
    """The first session's tokens, if they opened and the session has not moved on since."""
    if unsealed is None:
        return None
    s: dict[str, str] = json.loads(unsealed)
    with uow(readonly=True) as tx:
        record = tx.sessions.find_refresh(
            cipher.token_hash(s["refresh_token"], purpose=TokenPurpose.REFRESH_TOKEN)
        )
    if record is None or record.used_at is not None or not record.session.is_active(now):
        # Rotated or ended since: handing the old tokens back would trip reuse detection and
        # log the person out.
        return None
    return IssuedSession(
        account_id=account_id,
        session_id=s["session_id"],
        access_token=s["access_token"],
        access_token_expires_at=datetime.fromisoformat(s["access_token_expires_at"]),
        refresh_token=s["refresh_token"],
        refresh_token_expires_at=datetime.fromisoformat(s["refresh_token_expires_at"]),
    )


def first_result(
    key: idempotency.IdempotencyKey,
    account: Account,
    session: IssuedSession | None,
    consent: ConsentRequestRef | None,
    *,
    cipher: SecretsCipher,
) -> dict[str, object]:
    """The stored first result; the session's tokens are sealed under the caller's key."""
    doc: dict[str, object] = {"account_id": account.id}
    if session is not None:
        tokens = {
            "session_id": session.session_id,
            "access_token": session.access_token,
            "access_token_expires_at": session.access_token_expires_at.isoformat(),
            "refresh_token": session.refresh_token,
            "refresh_token_expires_at": session.refresh_token_expires_at.isoformat(),
        }
        doc["session_sealed"] = idempotency.seal(key, json.dumps(tokens), cipher=cipher)
    if consent is not None:
        doc["consent_request"] = {"id": consent.id, "expires_at": consent.expires_at.isoformat()}
    return doc
