"""Plain domain records for repository tests (no database, no adapters)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from idservice.domain import events
from idservice.domain.accounts import Account, AccountStatus, Consents
from idservice.domain.events import Event
from idservice.domain.sessions import Session
from idservice.domain.sns import SnsProvider
from idservice.service_layer.ports import NewConsentRequest, SnsLink

NOW = datetime(2025, 6, 2, 3, 0, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def make_account(
    *,
    status: AccountStatus = AccountStatus.ACTIVE,
    email: str | None = "hong@example.com",
    ci: str | None = None,
    di: str | None = None,
    password_hash: str | None = "hash-1",
    created_at: datetime = NOW,
) -> Account:
    """An account; CI and DI are fresh random values unless given ("" stores none)."""
    return Account(
        id=new_id(),
        status=status,
        email=email,
        name="홍길동",
        phone_number="+821023456789",
        birth_date=date(1990, 1, 15),
        identity_verified=True,
        consents=Consents(
            terms_version="2024-05-15",
            privacy_policy_version="2024-05-15",
            accepted_at=created_at,
            marketing_opt_in=False,
            marketing_updated_at=created_at,
        ),
        created_at=created_at,
        password_hash=password_hash,
        ci=new_id() if ci is None else ci,
        di=new_id() if di is None else di,
    )


def make_session(
    account_id: str, *, now: datetime = NOW, ttl: timedelta = timedelta(days=30)
) -> Session:
    return Session(
        id=new_id(), account_id=account_id, amr=("password",), created_at=now, expires_at=now + ttl
    )


def make_consent_request(
    account_id: str, *, now: datetime = NOW, window: timedelta = timedelta(days=5)
) -> NewConsentRequest:
    return NewConsentRequest(
        id=new_id(),
        account_id=account_id,
        guardian_name="홍부모",
        guardian_phone="+821098765432",
        code_hash="c" * 64,
        created_at=now,
        expires_at=now + window,
    )


def make_event(*, at: datetime = NOW, account_id: str | None = None) -> Event:
    return events.account_activated(account_id=account_id or new_id(), now=at)


def consent_requested_event(request_id: str, account_id: str, *, at: datetime = NOW) -> Event:
    return events.guardian_consent_requested(
        consent_request_id=request_id,
        account_id=account_id,
        guardian_name="홍부모",
        guardian_phone_number="+821098765432",
        consent_code="12345678",
        expires_at=at + timedelta(days=5),
        now=at,
    )


def make_sns_link(account_id: str, provider: SnsProvider) -> SnsLink:
    """A link of the account to `provider` (a subject of its own), made and last used at NOW."""
    return SnsLink(
        id=new_id(),
        account_id=account_id,
        provider=provider,
        subject=f"s-{provider.value}-{account_id}",
        nickname="",
        picture_url="",
        created_at=NOW,
        last_login_at=NOW,
    )
