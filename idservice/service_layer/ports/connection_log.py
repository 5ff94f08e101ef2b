"""The connection log (통신비밀보호법 시행령 제41조): who called which method, when, from where, and
with what result. Never a request or response body, a token, a password or CI/DI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ConnectionEntry:
    """One RPC as the connection log keeps it."""

    occurred_at: datetime
    # The full gRPC method, `/idservice.v1.AccountService/SignUp`.
    method: str
    # The gRPC status code name (`OK`, `INVALID_ARGUMENT`) and the error reason, if any.
    code: str
    reason: str | None = None
    # The account the call acted as, once known (an access token's subject, a session's owner).
    account_id: str | None = None
    # The end user's address as a trusted proxy names it, else the peer's; stored encrypted.
    client_ip: str | None = None


class ConnectionLog(Protocol):
    """The stored connection log, inside a unit of work (`tx.connection_log`)."""

    def record(self, entries: Sequence[ConnectionEntry]) -> int:
        """Append `entries` (in one statement where the storage allows); returns how many."""
        ...

    def purge(self, *, before: datetime) -> int:
        """Delete the entries that occurred before `before`; returns how many."""
        ...

    def of_account(self, account_id: str, *, since: datetime) -> list[ConnectionEntry]:
        """The account's entries since `since` (inclusive), oldest first."""
        ...
