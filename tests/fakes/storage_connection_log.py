"""The in-memory connection log; mirrors `idservice.adapters.db.repositories.connection_log`
(the contract suite `tests/integration/test_repository_contract_connection_log.py` runs the same
tests against both)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from idservice.service_layer.ports import ConnectionEntry
from tests.fakes.storage_state import StateAccess, utc


class FakeConnectionLog:
    def __init__(self, access: StateAccess) -> None:
        self._access = access

    def record(self, entries: Sequence[ConnectionEntry]) -> int:
        if not entries:
            return 0
        rows = self._access.write().connection_log
        for entry in entries:
            # As the SQL row keeps it: empty values are NULL, the time in UTC.
            rows.append(
                dataclasses.replace(
                    entry,
                    occurred_at=utc(entry.occurred_at),
                    reason=entry.reason or None,
                    account_id=entry.account_id or None,
                    client_ip=entry.client_ip or None,
                )
            )
        return len(entries)

    def purge(self, *, before: datetime) -> int:
        state = self._access.write()
        kept = [entry for entry in state.connection_log if entry.occurred_at >= utc(before)]
        purged = len(state.connection_log) - len(kept)
        state.connection_log = kept
        return purged

    def of_account(self, account_id: str, *, since: datetime) -> list[ConnectionEntry]:
        rows = [
            entry
            for entry in self._access.read().connection_log
            if entry.account_id == account_id and entry.occurred_at >= utc(since)
        ]
        return sorted(rows, key=lambda entry: entry.occurred_at)
