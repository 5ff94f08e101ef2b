"""The hash-chained access audit: records in `access_audit`, the tail and anchor in `audit_chain`.

Appends lock the one `audit_chain` row (`SELECT … FOR UPDATE` on PostgreSQL; SQLite writers
hold the database's write lock from BEGIN IMMEDIATE), so appends from every process queue on
the tail and each record follows the one committed before it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from idservice.adapters.crypto import FieldCipher, FieldDecryptError
from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import AUDIT_CLIENT_IP
from idservice.domain import audit
from idservice.domain.audit import GENESIS, AuditRecord, ChainEnds, ChainLink
from idservice.service_layer.ports.audit import AccessEntry

CHAIN_ID = 1
# The guardian's CI is indexed as guardian consent requests index it, so the two can be joined.
GUARDIAN_CI_PURPOSE = "guardian-ci"
CLIENT_PURPOSE = "audit-client"
# Stands for a client address that no longer decrypts: it matches no hash (a tampered row).
UNREADABLE = "unreadable"


class SqlAccessAuditRepository:
    def __init__(self, connection: Connection, cipher: FieldCipher) -> None:
        self._c = connection
        self._cipher = cipher

    def _client_digest(self, client: str) -> str:
        return self._cipher.blind_index(client, purpose=CLIENT_PURPOSE) if client else ""

    def _chain(self, *, lock: bool) -> Any:
        """The chain row (None before the first append); `lock` holds it until the end of the
        transaction."""
        query: Select[Any] = select(t.audit_chain).where(t.audit_chain.c.id == CHAIN_ID)
        if lock and self._c.dialect.name == "postgresql":
            query = query.with_for_update()
        return self._c.execute(query).first()

    def _locked_chain(self) -> Any:
        """The chain row, locked; created (at GENESIS) by the first append."""
        row = self._chain(lock=True)
        if row is not None:
            return row
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(t.audit_chain).values(
                        id=CHAIN_ID,
                        last_seq=GENESIS.seq,
                        last_hash=GENESIS.hash,
                        anchor_seq=GENESIS.seq,
                        anchor_hash=GENESIS.hash,
                    )
                )
        except IntegrityError:  # a concurrent first append created it: wait for its lock
            pass
        return self._chain(lock=True)

    def append(self, entry: AccessEntry, *, now: datetime) -> int:
        chain = self._locked_chain()
        guardian_index = (
            self._cipher.blind_index(entry.guardian_ci, purpose=GUARDIAN_CI_PURPOSE)
            if entry.guardian_ci
            else None
        )
        record = audit.next_record(
            ChainLink(chain.last_seq, chain.last_hash),
            occurred_at=now,
            actor=entry.actor,
            actor_guardian_index=guardian_index,
            client_digest=self._client_digest(entry.client),
            subject_account_id=entry.subject_account_id,
            action=entry.action,
        )
        self._c.execute(
            insert(t.access_audit).values(
                seq=record.seq,
                occurred_at=record.occurred_at,
                actor=record.actor,
                actor_guardian_index=record.actor_guardian_index,
                client_ip_ct=(
                    AUDIT_CLIENT_IP.encrypt(self._cipher, str(record.seq), entry.client)
                    if entry.client
                    else None
                ),
                subject_account_id=record.subject_account_id,
                action=record.action,
                prev_hash=record.prev_hash,
                row_hash=record.row_hash,
            )
        )
        self._c.execute(
            update(t.audit_chain)
            .where(t.audit_chain.c.id == CHAIN_ID)
            .values(last_seq=record.seq, last_hash=record.row_hash)
        )
        return record.seq

    def ends(self) -> ChainEnds:
        row = self._chain(lock=False)
        if row is None:
            return ChainEnds()
        return ChainEnds(
            anchor=ChainLink(row.anchor_seq, row.anchor_hash),
            tail=ChainLink(row.last_seq, row.last_hash),
        )

    def rows(self, *, after_seq: int | None, limit: int) -> list[AuditRecord]:
        a = t.access_audit.c
        query = select(t.access_audit).order_by(a.seq).limit(limit)
        if after_seq is not None:
            query = query.where(a.seq > after_seq)
        return [self._record(row._mapping) for row in self._c.execute(query)]

    def _record(self, m: Any) -> AuditRecord:
        seq: int = m["seq"]
        client_digest = ""
        if m["client_ip_ct"] is not None:
            try:
                client = AUDIT_CLIENT_IP.decrypt(self._cipher, str(seq), m["client_ip_ct"])
            except FieldDecryptError:
                client_digest = UNREADABLE
            else:
                client_digest = self._client_digest(client)
        return AuditRecord(
            seq=seq,
            occurred_at=m["occurred_at"],
            actor=m["actor"],
            actor_guardian_index=m["actor_guardian_index"],
            client_digest=client_digest,
            subject_account_id=m["subject_account_id"],
            action=m["action"],
            prev_hash=m["prev_hash"],
            row_hash=m["row_hash"],
        )

    def purge(self, *, before: datetime) -> int:
        a = t.access_audit.c
        chain = self._chain(lock=True)
        if chain is None:
            return 0
        # Records go only from the start of the chain, up to the first one still kept; rows at
        # or below the anchor are no part of the chain and stay for `audit verify` to report.
        first_kept = self._c.execute(
            select(func.min(a.seq)).where(a.seq > chain.anchor_seq, a.occurred_at >= before)
        ).scalar_one_or_none()
        upto = chain.last_seq if first_kept is None else first_kept - 1
        doomed = (a.seq > chain.anchor_seq, a.seq <= upto)
        last = self._c.execute(
            select(a.seq, a.row_hash).where(*doomed).order_by(a.seq.desc()).limit(1)
        ).first()
        if last is None:
            return 0
        deleted = self._c.execute(
            delete(t.access_audit).where(a.seq > chain.anchor_seq, a.seq <= last.seq)
        ).rowcount
        self._c.execute(
            update(t.audit_chain)
            .where(t.audit_chain.c.id == CHAIN_ID)
            .values(anchor_seq=last.seq, anchor_hash=last.row_hash)
        )
        return int(deleted)
