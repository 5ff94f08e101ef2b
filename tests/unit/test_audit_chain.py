"""The access audit's hash chain (idservice.domain.audit): one altered, deleted or inserted record
breaks it, and the break names a seq and a kind only."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from idservice.domain import audit
from idservice.domain.audit import (
    GENESIS,
    AuditRecord,
    BreakKind,
    ChainBreak,
    ChainLink,
    ChainVerifier,
    content_hash,
    verify,
)

T0 = datetime(2025, 6, 2, 3, 0, tzinfo=UTC)


def chain(count: int, *, after: ChainLink = GENESIS) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    link = after
    for n in range(count):
        record = audit.next_record(
            link,
            occurred_at=T0 + timedelta(seconds=n, microseconds=n),
            actor="claimed:app-backend",
            actor_guardian_index="g" * 64 if n % 2 else None,
            client_digest="c" * 64 if n % 3 else "",
            subject_account_id=f"account-{n}",
            action=audit.AuditAction.GET_WARD.value,
        )
        records.append(record)
        link = record.link
    return records


def test_an_untouched_chain_verifies_to_its_tail() -> None:
    records = chain(5)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS.hash
    assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(records))
    assert verify(records, GENESIS, records[-1].link) is None
    assert verify([], GENESIS, GENESIS) is None


def test_the_hash_covers_every_field_and_the_link() -> None:
    record = chain(1)[0]
    changes: dict[str, Any] = {
        "seq": 2,
        "occurred_at": record.occurred_at + timedelta(microseconds=1),
        "actor": "claimed:someone-else",
        "actor_guardian_index": "h" * 64,
        "client_digest": "d" * 64,
        "subject_account_id": "account-x",
        "action": audit.AuditAction.EXPORT_WARD_DATA.value,
        "prev_hash": "0" * 64,
    }
    for name, value in changes.items():
        assert content_hash(dataclasses.replace(record, **{name: value})) != record.row_hash, name
    # None and "" differ, and an instant hashes the same in any zone.
    assert content_hash(dataclasses.replace(record, actor_guardian_index="")) != record.row_hash
    kst = record.occurred_at.astimezone(timezone(timedelta(hours=9)))
    assert content_hash(dataclasses.replace(record, occurred_at=kst)) == record.row_hash


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        audit.next_record(
            GENESIS,
            occurred_at=datetime(2025, 1, 1),
            actor="a",
            actor_guardian_index=None,
            client_digest="",
            subject_account_id="s",
            action="x",
        )


@pytest.mark.parametrize("position", [0, 2, 4])
def test_an_altered_record_is_named(position: int) -> None:
    records = chain(5)
    records[position] = dataclasses.replace(records[position], action="guardian.nothing")
    assert verify(records, GENESIS, records[-1].link) == ChainBreak(position + 1, BreakKind.ALTERED)


def test_a_record_altered_and_rehashed_no_longer_links() -> None:
    records = chain(5)
    changed = dataclasses.replace(records[1], subject_account_id="account-other")
    records[1] = dataclasses.replace(changed, row_hash=content_hash(changed))
    assert verify(records, GENESIS, records[-1].link) == ChainBreak(3, BreakKind.UNLINKED)


def test_a_rehashed_last_record_does_not_match_the_tail() -> None:
    records = chain(3)
    tail = records[-1].link
    changed = dataclasses.replace(records[-1], actor="claimed:other")
    records[-1] = dataclasses.replace(changed, row_hash=content_hash(changed))
    assert verify(records, GENESIS) is None
    assert verify(records, GENESIS, tail) == ChainBreak(3, BreakKind.ALTERED)


@pytest.mark.parametrize("position", [0, 2])
def test_a_deleted_record_is_named(position: int) -> None:
    records = chain(5)
    del records[position]
    assert verify(records, GENESIS, ChainLink(5, chain(5)[-1].row_hash)) == ChainBreak(
        position + 1, BreakKind.MISSING
    )


def test_deleted_newest_records_are_noticed_by_the_tail() -> None:
    records = chain(5)
    assert verify(records[:3], GENESIS, records[-1].link) == ChainBreak(4, BreakKind.MISSING)
    assert verify([], GENESIS, records[-1].link) == ChainBreak(1, BreakKind.MISSING)


def test_an_inserted_record_is_named() -> None:
    records = chain(4)
    tail = records[-1].link
    # Well chained after the tail, but the writer never recorded it.
    extra = chain(1, after=tail)[0]
    assert verify([*records, extra], GENESIS, tail) == ChainBreak(5, BreakKind.INSERTED)
    # A duplicate seq, or a record from before the anchor.
    assert verify([records[0], records[0], *records[1:]], GENESIS, tail) == ChainBreak(
        1, BreakKind.INSERTED
    )
    kept = records[2:]
    anchor = records[1].link
    assert verify(kept, anchor, tail) is None
    assert verify([records[0], *kept], anchor, tail) == ChainBreak(1, BreakKind.INSERTED)


def test_retention_leaves_an_anchor_the_first_kept_record_follows() -> None:
    records = chain(6)
    anchor = records[2].link
    assert verify(records[3:], anchor, records[-1].link) is None
    assert verify(records[4:], anchor, records[-1].link) == ChainBreak(4, BreakKind.MISSING)
    assert verify(records[3:], records[1].link, records[-1].link) == ChainBreak(
        3, BreakKind.MISSING
    )
    # Everything deleted: the anchor is the tail.
    assert verify([], records[-1].link, records[-1].link) is None


def test_the_verifier_takes_pages_and_counts() -> None:
    records = chain(7)
    verifier = ChainVerifier(GENESIS)
    for page in (records[:3], records[3:6], records[6:]):
        assert all(verifier.check(r) is None for r in page)
    assert (verifier.checked, verifier.last) == (7, records[-1].link)
    assert verifier.check_tail(records[-1].link) is None


def test_a_break_describes_where_and_how_only() -> None:
    text = ChainBreak(17, BreakKind.MISSING).describe()
    assert text.startswith("seq 17: ") and "deleted" in text
    for kind in BreakKind:
        assert ChainBreak(3, kind).describe().startswith("seq 3: ")
