"""The in-memory ConsentRecordRepository: the same answers as `SqlConsentRecordRepository`."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from idservice.domain.consents import ConsentRecord
from tests.fakes.storage_state import FakeIntegrityError, StateAccess, utc


class FakeConsentRecordRepository:
    def __init__(self, access: StateAccess) -> None:
        self._access = access

    def add(self, record: ConsentRecord) -> None:
        state = self._access.write()
        if any(r.id == record.id for r in state.consent_records):
            raise FakeIntegrityError("pk_consent_records")
        state.consent_records.append(
            dataclasses.replace(record, recorded_at=utc(record.recorded_at))
        )

    def of_account(self, account_id: str) -> list[ConsentRecord]:
        records = [r for r in self._access.read().consent_records if r.account_id == account_id]
        return sorted(records, key=lambda r: (r.recorded_at, r.id))

    def purge(self, *, before: datetime) -> int:
        before = utc(before)
        state = self._access.write()
        kept = [r for r in state.consent_records if r.recorded_at >= before]
        purged = len(state.consent_records) - len(kept)
        state.consent_records = kept
        return purged
