"""The access audit's hash chain (안전성 확보조치 기준 제8조): pure rules, standard library only.

Each record of an access to a person's data on someone else's behalf carries the hash of the
record before it (`prev_hash`) and its own `row_hash`: SHA-256 over a canonical encoding of
`prev_hash` and every field of the record, its sequence number included. The first record
follows `GENESIS`; when retention deletes the oldest records, the last one deleted becomes the
chain's *anchor* (its seq and hash), which the first record kept must follow. The *tail* is the
newest record as the writer recorded it apart from the records, so deleting the newest rows is
noticed too.

`verify` walks records in seq order and names the first break: a record whose content no longer
matches its hash (altered), a seq that is missing (deleted), or a record that is no part of the
chain (inserted). A break names a seq and a kind, never anything a record holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

# Version of the canonical encoding; part of every hash, so a future encoding cannot collide.
CHAIN_FORMAT = "idservice.access-audit/1"
GENESIS_HASH = hashlib.sha256(f"{CHAIN_FORMAT}:genesis".encode()).hexdigest()
# The calling service's identity is kept to this many characters (the column's width).
MAX_ACTOR_LENGTH = 128


class AuditAction(StrEnum):
    """What was done with the person's data."""

    LIST_WARDS = "guardian.list_wards"
    GET_WARD = "guardian.get_ward"
    UPDATE_WARD = "guardian.update_ward"
    EXPORT_WARD_DATA = "guardian.export_ward_data"
    WITHDRAW_WARD = "guardian.withdraw_ward"


@dataclass(frozen=True, slots=True)
class ChainLink:
    """A point of the chain: a record's seq and row hash (seq 0 and GENESIS_HASH: the start)."""

    seq: int
    hash: str


GENESIS = ChainLink(0, GENESIS_HASH)


@dataclass(frozen=True, slots=True)
class ChainEnds:
    """Where the kept records start (the anchor: the last record deleted, or GENESIS) and end
    (the tail: the newest record appended)."""

    anchor: ChainLink = GENESIS
    tail: ChainLink = GENESIS


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored record as the chain sees it.

    `actor_guardian_index` is the keyed blind index of the guardian's CI (None when no guardian
    acted); `client_digest` a keyed digest of the client's address ("" when unknown), so the
    stored hashes reveal neither.
    """

    seq: int
    occurred_at: datetime
    actor: str
    actor_guardian_index: str | None
    client_digest: str
    subject_account_id: str
    action: str
    prev_hash: str
    row_hash: str

    @property
    def link(self) -> ChainLink:
        return ChainLink(self.seq, self.row_hash)


def _instant(instant: datetime) -> str:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("naive datetime")
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def content_hash(record: AuditRecord) -> str:
    """The hash the record's `prev_hash` and fields call for (its `row_hash`, if untouched)."""
    encoded = json.dumps(
        [
            CHAIN_FORMAT,
            record.prev_hash,
            record.seq,
            _instant(record.occurred_at),
            record.actor,
            record.actor_guardian_index,
            record.client_digest,
            record.subject_account_id,
            record.action,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def next_record(
    tail: ChainLink,
    *,
    occurred_at: datetime,
    actor: str,
    actor_guardian_index: str | None,
    client_digest: str,
    subject_account_id: str,
    action: str,
) -> AuditRecord:
    """The record that follows `tail`, with its hash."""
    unhashed = AuditRecord(
        seq=tail.seq + 1,
        occurred_at=occurred_at,
        actor=actor,
        actor_guardian_index=actor_guardian_index,
        client_digest=client_digest,
        subject_account_id=subject_account_id,
        action=action,
        prev_hash=tail.hash,
        row_hash="",
    )
    return dataclasses.replace(unhashed, row_hash=content_hash(unhashed))


class BreakKind(StrEnum):
    ALTERED = "altered"
    UNLINKED = "unlinked"
    MISSING = "missing"
    INSERTED = "inserted"


_DESCRIPTIONS = {
    BreakKind.ALTERED: "its content does not match the chain's hashes (altered)",
    BreakKind.UNLINKED: "it does not follow the record before it (one of the two was altered)",
    BreakKind.MISSING: "the record is missing from the chain (deleted)",
    BreakKind.INSERTED: "the record is no part of the chain (inserted)",
}


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where the chain first breaks, and how; nothing a record holds."""

    seq: int
    kind: BreakKind

    def describe(self) -> str:
        return f"seq {self.seq}: {_DESCRIPTIONS[self.kind]}"


class ChainVerifier:
    """Checks records one at a time, in seq order, from the anchor on (records may come in
    pages); `last` is the newest record accepted so far and `checked` how many were."""

    def __init__(self, anchor: ChainLink) -> None:
        self.last = anchor
        self.checked = 0

    def check(self, record: AuditRecord) -> ChainBreak | None:
        expected = self.last.seq + 1
        if record.seq < expected:
            return ChainBreak(record.seq, BreakKind.INSERTED)
        if record.seq > expected:
            return ChainBreak(expected, BreakKind.MISSING)
        if content_hash(record) != record.row_hash:
            return ChainBreak(record.seq, BreakKind.ALTERED)
        if record.prev_hash != self.last.hash:
            return ChainBreak(record.seq, BreakKind.UNLINKED)
        self.last = record.link
        self.checked += 1
        return None

    def check_tail(self, tail: ChainLink) -> ChainBreak | None:
        """After the last record: the chain must end where the writer says it ends."""
        if self.last.seq < tail.seq:
            return ChainBreak(self.last.seq + 1, BreakKind.MISSING)
        if self.last.seq > tail.seq:
            return ChainBreak(tail.seq + 1, BreakKind.INSERTED)
        if self.last.hash != tail.hash:
            return ChainBreak(tail.seq, BreakKind.ALTERED)
        return None


def verify(
    records: Iterable[AuditRecord], anchor: ChainLink, tail: ChainLink | None = None
) -> ChainBreak | None:
    """The first break of `records` (in seq order) following `anchor`, or None; with `tail`,
    the records must also end at it."""
    verifier = ChainVerifier(anchor)
    for record in records:
        broken = verifier.check(record)
        if broken is not None:
            return broken
    return None if tail is None else verifier.check_tail(tail)
