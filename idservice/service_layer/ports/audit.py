"""The access-audit port: a hash-chained, append-only record of accesses to a person's data on
someone else's behalf (안전성 확보조치 기준 제8조); the chain rule is `idservice.domain.audit`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from idservice.domain.audit import AuditRecord, ChainEnds


@dataclass(frozen=True, slots=True, repr=False)
class AccessEntry:
    """One access as the use case knows it: who (the calling service, and the guardian's CI,
    stored only as its blind index), from where (the client's address, stored encrypted; ""
    when unknown), whose data and what."""

    actor: str
    guardian_ci: str | None
    client: str
    subject_account_id: str
    action: str


class AccessAuditRepository(Protocol):
    """Append-only records chained by hash, a tail kept apart from them, and an anchor left by
    retention. Records outlive the accounts they are about."""

    def append(self, entry: AccessEntry, *, now: datetime) -> int:
        """Chain a record after the tail, in the caller's transaction, and return its seq.

        Appends hold the tail locked until their transaction ends, so concurrent appends from
        any number of processes form one chain (the seq is the tail's plus one).
        """

    def ends(self) -> ChainEnds:
        """The anchor and the tail (both GENESIS before the first append)."""

    def rows(self, *, after_seq: int | None, limit: int) -> list[AuditRecord]:
        """Up to `limit` records with a seq above `after_seq` (None: from the very first), in
        seq order, as the chain hashes them."""

    def purge(self, *, before: datetime) -> int:
        """Delete the oldest records that occurred before `before` (only from the start of the
        chain: a record is kept while an older-seq record is), moving the anchor to the last
        one deleted; returns how many were deleted."""
