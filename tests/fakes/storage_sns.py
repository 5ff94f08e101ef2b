"""The in-memory SNS identity and signup ticket repositories: the same answers as
`idservice.adapters.db.repositories.sns` (the contract suite pins them to it, in
tests/integration/test_repository_contract_sns.py).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from idservice.domain.sns import SnsProfile, SnsProvider
from idservice.service_layer.ports import SnsLink, StoredTicket, UniqueViolation
from tests.fakes.storage_state import FakeIntegrityError, StateAccess, TicketRow, utc


class FakeSnsIdentityRepository:
    """Links; (provider, subject) is unique across accounts, (account, provider) per account."""

    def __init__(self, access: StateAccess) -> None:
        self._access = access

    def add(self, link: SnsLink) -> None:
        state = self._access.write()
        stored = dataclasses.replace(
            link,
            provider=SnsProvider(link.provider),
            created_at=utc(link.created_at),
            last_login_at=utc(link.last_login_at),
        )
        # The order the databases check in: primary key, then the unique indexes in the order
        # the table declares them, then the foreign key (at the end of the statement).
        links = state.sns_identities.values()
        if stored.id in state.sns_identities:
            raise FakeIntegrityError("pk_sns_identities")
        if any((s.provider, s.subject) == (stored.provider, stored.subject) for s in links):
            raise UniqueViolation("subject_index")
        if any((s.account_id, s.provider) == (stored.account_id, stored.provider) for s in links):
            raise UniqueViolation("account_provider")
        if stored.account_id not in state.accounts:
            raise FakeIntegrityError("fk_sns_identities_account_id_accounts")
        state.sns_identities[stored.id] = stored

    def find(self, provider: SnsProvider, subject: str) -> SnsLink | None:
        for link in self._access.read().sns_identities.values():
            if link.provider == provider and link.subject == subject:
                return link
        return None

    def of_account(self, account_id: str) -> list[SnsLink]:
        links = self._access.read().sns_identities.values()
        return sorted(
            (link for link in links if link.account_id == account_id),
            key=lambda link: link.provider.value,
        )

    def touch(self, link_id: str, *, nickname: str, picture_url: str, now: datetime) -> bool:
        now = utc(now)
        state = self._access.write()
        link = state.sns_identities.get(link_id)
        if link is None:
            return False
        state.sns_identities[link_id] = dataclasses.replace(
            link, nickname=nickname, picture_url=picture_url, last_login_at=now
        )
        return True

    def remove(self, account_id: str, provider: SnsProvider) -> bool:
        state = self._access.write()
        for link_id, link in list(state.sns_identities.items()):
            if link.account_id == account_id and link.provider == provider:
                del state.sns_identities[link_id]
                return True
        return False


class FakeSignupTicketRepository:
    """Tickets by keyed hash; a used ticket keeps no profile, an expired one is purged, and a
    person (provider, subject) has at most one unused ticket."""

    def __init__(self, access: StateAccess) -> None:
        self._access = access

    def add(
        self, ticket_hash: str, profile: SnsProfile, *, now: datetime, expires_at: datetime
    ) -> None:
        state = self._access.write()
        # SnsProfile is frozen and holds only immutable values: kept as given.
        stored = dataclasses.replace(profile, provider=SnsProvider(profile.provider))
        subject = (stored.provider.value, stored.subject)
        # One unused ticket per person: logging in again replaces it (expired or not). The
        # DELETE runs before the INSERT, so a clash with that very ticket's hash is no clash.
        for key, row in list(state.signup_tickets.items()):
            if row.subject == subject and row.used_at is None:
                del state.signup_tickets[key]
        if ticket_hash in state.signup_tickets:
            raise FakeIntegrityError("pk_sns_signup_tickets")
        state.signup_tickets[ticket_hash] = TicketRow(
            profile=stored, created_at=utc(now), expires_at=utc(expires_at), subject=subject
        )

    def get(self, ticket_hash: str, *, now: datetime) -> StoredTicket | None:
        now = utc(now)
        row = self._access.read().signup_tickets.get(ticket_hash)
        if row is None or row.profile is None or row.used_at is not None:
            return None
        if row.expires_at <= now:
            return None
        return StoredTicket(profile=row.profile, expires_at=row.expires_at)

    def consume(self, ticket_hash: str, *, now: datetime) -> bool:
        now = utc(now)
        row = self._access.write().signup_tickets.get(ticket_hash)
        if row is None or row.used_at is not None or row.expires_at <= now:
            return False
        row.used_at, row.profile = now, None
        return True

    def purge_expired(self, *, now: datetime) -> int:
        now = utc(now)
        state = self._access.write()
        expired = [key for key, row in state.signup_tickets.items() if row.expires_at <= now]
        for key in expired:
            del state.signup_tickets[key]
        return len(expired)
