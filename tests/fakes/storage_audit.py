"""The in-memory access audit: the same answers as `idservice.adapters.db.repositories.audit`
(the contract suite pins them, in tests/integration/test_repository_contract_audit.py).

The SQL rows keep a keyed blind index of the guardian's CI and the client's address encrypted
(hashed into the chain as a keyed digest); the fake keeps both in the clear and stands unkeyed
SHA-256 digests in for the keyed ones, which the chain cannot tell apart.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from idservice.domain import audit
from idservice.domain.audit import AuditRecord, ChainEnds, ChainLink
from idservice.service_layer.ports.audit import AccessEntry
from tests.fakes.storage_state import AuditChainRow, AuditRow, StateAccess, utc


def stand_in_index(purpose: str, value: str) -> str:
    """What the fake uses for the SQL adapter's keyed blind index of `value`."""
    return hashlib.sha256(f"{purpose}:{value}".encode()).hexdigest()


def record_of(row: AuditRow) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        occurred_at=row.occurred_at,
        actor=row.actor,
        actor_guardian_index=(
            stand_in_index("guardian-ci", row.guardian_ci) if row.guardian_ci else None
        ),
        client_digest=stand_in_index("audit-client", row.client) if row.client else "",
        subject_account_id=row.subject_account_id,
        action=row.action,
        prev_hash=row.prev_hash,
        row_hash=row.row_hash,
    )


class FakeAccessAuditRepository:
    def __init__(self, access: StateAccess) -> None:
        self._access = access

    def append(self, entry: AccessEntry, *, now: datetime) -> int:
        state = self._access.write()
        chain = state.audit_chain or AuditChainRow(last=audit.GENESIS, anchor=audit.GENESIS)
        row = AuditRow(
            seq=0,
            occurred_at=utc(now),
            actor=entry.actor,
            guardian_ci=entry.guardian_ci or None,
            client=entry.client,
            subject_account_id=entry.subject_account_id,
            action=entry.action,
            prev_hash="",
            row_hash="",
        )
        shape = record_of(row)
        record = audit.next_record(
            chain.last,
            occurred_at=shape.occurred_at,
            actor=shape.actor,
            actor_guardian_index=shape.actor_guardian_index,
            client_digest=shape.client_digest,
            subject_account_id=shape.subject_account_id,
            action=shape.action,
        )
        row.seq, row.prev_hash, row.row_hash = record.seq, record.prev_hash, record.row_hash
        state.access_audit[row.seq] = row
        state.audit_chain = AuditChainRow(last=record.link, anchor=chain.anchor)
        return row.seq

    def ends(self) -> ChainEnds:
        chain = self._access.read().audit_chain
        return ChainEnds() if chain is None else ChainEnds(anchor=chain.anchor, tail=chain.last)

    def rows(self, *, after_seq: int | None, limit: int) -> list[AuditRecord]:
        rows = sorted(self._access.read().access_audit.values(), key=lambda row: row.seq)
        return [record_of(row) for row in rows if after_seq is None or row.seq > after_seq][:limit]

    def purge(self, *, before: datetime) -> int:
        state = self._access.write()
        chain = state.audit_chain
        if chain is None:
            return 0
        anchor_seq = chain.anchor.seq
        chained = sorted(seq for seq in state.access_audit if seq > anchor_seq)
        kept = [seq for seq in chained if state.access_audit[seq].occurred_at >= utc(before)]
        upto = chain.last.seq if not kept else kept[0] - 1
        doomed = [seq for seq in chained if seq <= upto]
        if not doomed:
            return 0
        last = state.access_audit[doomed[-1]]
        for seq in doomed:
            del state.access_audit[seq]
        state.audit_chain = AuditChainRow(
            last=chain.last, anchor=ChainLink(last.seq, last.row_hash)
        )
        return len(doomed)
