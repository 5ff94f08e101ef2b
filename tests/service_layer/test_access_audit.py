"""The access audit against fakes: every guardian call that reaches a ward's data records who,
when, from where, whose data and what, in the transaction of the access; refused calls record
nothing; retention keeps records 2 years; VerifyAccessAudit finds a tampered record."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from idservice.domain import audit
from idservice.domain.audit import AuditAction, BreakKind, ChainBreak
from idservice.domain.errors import Reason
from idservice.service_layer import audit as audit_use_cases
from idservice.service_layer.audit import UNKNOWN_ACTOR, VerifyAccessAudit
from idservice.service_layer.retention import Purge
from idservice.service_layer.wards import (
    ExportWardData,
    GetWard,
    ListWards,
    UpdateWard,
    WithdrawWard,
)
from tests.fakes.storage_audit import FakeAccessAuditRepository, record_of
from tests.fakes.storage_state import AuditRow, FakeState
from tests.service_layer.harness import Harness
from tests.service_layer.test_guardian_consent import approved_family, child_signs_up

WHO = {"actor": "claimed:app-backend", "client": "203.0.113.7"}


def records(svc: Harness) -> list[AuditRow]:
    return sorted(svc.uow.committed().access_audit.values(), key=lambda row: row.seq)


def tamper(svc: Harness, change: Callable[[FakeState], object]) -> None:
    """Change the committed state behind the use cases' back, as someone with the database
    could."""
    state = svc.uow.committed()
    change(state)
    svc.uow.swap_in(state)


def verified(svc: Harness) -> tuple[int, ChainBreak | None]:
    result = svc.handle(VerifyAccessAudit())
    return result.checked, result.broken


def test_each_guardian_call_records_the_access(svc: Harness) -> None:
    guardian, (child,) = approved_family(svc)
    token = svc.verify(guardian).token
    ward = {"guardian_verification_token": token, "ward_account_id": child.account_id}
    calls: list[tuple[Any, AuditAction]] = [
        (ListWards(guardian_verification_token=token, **WHO), AuditAction.LIST_WARDS),
        (GetWard(**ward, **WHO), AuditAction.GET_WARD),
        (UpdateWard(**ward, name="김바뀜", **WHO), AuditAction.UPDATE_WARD),
        (ExportWardData(**ward, **WHO), AuditAction.EXPORT_WARD_DATA),
        (WithdrawWard(**ward, **WHO), AuditAction.WITHDRAW_WARD),
    ]
    for cmd, _ in calls:
        commits = svc.uow.commits
        svc.clock.advance(seconds=1)
        svc.handle(cmd)
        # The record is written in the access's own transaction.
        assert svc.uow.commits == commits + 1
    rows = records(svc)
    assert [(r.seq, r.action) for r in rows] == [
        (n, action.value) for n, (_, action) in enumerate(calls, start=1)
    ]
    for row in rows:
        assert (row.actor, row.guardian_ci, row.client, row.subject_account_id) == (
            "claimed:app-backend",
            guardian.ci,
            "203.0.113.7",
            child.account_id,
        )
    assert rows[0].occurred_at == svc.clock() - timedelta(seconds=4)
    assert rows[-1].occurred_at == svc.clock()
    # The records outlive the withdrawn ward, and the chain is whole.
    assert verified(svc) == (5, None)


def test_list_wards_records_one_access_per_ward_listed(svc: Harness) -> None:
    guardian, (first, second) = approved_family(svc, wards=2)
    child_signs_up(svc, guardian_person=guardian)  # pending: not listed, not recorded
    wards = svc.handle(ListWards(guardian_verification_token=svc.verify(guardian).token))
    assert [r.subject_account_id for r in records(svc)] == [w.id for w in wards]
    assert {r.subject_account_id for r in records(svc)} == {first.account_id, second.account_id}
    assert {r.actor for r in records(svc)} == {UNKNOWN_ACTOR}
    assert {r.client for r in records(svc)} == {""}


def test_calls_that_reach_no_data_record_nothing(svc: Harness) -> None:
    guardian, (child,) = approved_family(svc)
    _, (someone_elses,) = approved_family(svc)
    token = svc.verify(guardian).token
    stranger = svc.verify(approved_family(svc)[0]).token
    assert svc.handle(ListWards(guardian_verification_token=stranger)) != []
    before = len(records(svc))
    svc.fails(ListWards(guardian_verification_token="forged"), Reason.VERIFICATION_TOKEN_INVALID)
    svc.fails(
        GetWard(guardian_verification_token=token, ward_account_id=someone_elses.account_id),
        Reason.NOT_GUARDIAN,
    )
    svc.fails(
        UpdateWard(guardian_verification_token=token, ward_account_id=child.account_id, name=""),
        Reason.VALIDATION_FAILED,
    )
    assert len(records(svc)) == before


def test_no_access_without_its_record(svc: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    guardian, (child,) = approved_family(svc)
    token = svc.verify(guardian).token

    def broken_append(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("the audit cannot be written")

    monkeypatch.setattr(FakeAccessAuditRepository, "append", broken_append)
    with pytest.raises(RuntimeError):
        svc.handle(
            UpdateWard(
                guardian_verification_token=token, ward_account_id=child.account_id, name="김"
            )
        )
    assert svc.uow.committed().accounts[child.account_id].account.name == "김하나"


def test_records_are_kept_two_years_then_purged_from_the_start(svc: Harness) -> None:
    assert svc.policy.access_audit_retention == timedelta(days=730)
    guardian, (child,) = approved_family(svc)
    get = GetWard(
        guardian_verification_token=svc.verify(guardian).token, ward_account_id=child.account_id
    )
    for _ in range(3):
        svc.handle(get)
    svc.clock.advance(days=1)
    svc.handle(
        GetWard(
            guardian_verification_token=svc.verify(guardian).token,
            ward_account_id=child.account_id,
        )
    )
    svc.clock.advance(timedelta(days=730) - timedelta(days=1))
    assert svc.handle(Purge())["access audit records deleted"] == 0
    svc.clock.advance(seconds=1)
    assert svc.handle(Purge())["access audit records deleted"] == 3
    assert [r.seq for r in records(svc)] == [4]
    chain = svc.uow.committed().audit_chain
    assert chain is not None and chain.anchor.seq == 3
    assert verified(svc) == (1, None)
    svc.clock.advance(days=1)
    assert svc.handle(Purge())["access audit records deleted"] == 1
    assert verified(svc) == (0, None)


def test_verification_names_an_altered_record(svc: Harness) -> None:
    guardian, children = approved_family(svc, wards=3)
    token = svc.verify(guardian).token
    svc.handle(ListWards(guardian_verification_token=token))
    svc.handle(ListWards(guardian_verification_token=token))
    assert verified(svc) == (6, None)

    def alter(state: FakeState) -> None:
        state.access_audit[3].subject_account_id = children[0].account_id

    tamper(svc, alter)
    assert verified(svc) == (2, ChainBreak(3, BreakKind.ALTERED))


def well_chained_after(state: FakeState, seq: int) -> AuditRow:
    """A record that follows record `seq` as the writer would have chained it."""
    row = dataclasses.replace(state.access_audit[seq])
    record = audit.next_record(
        record_of(row).link,
        occurred_at=row.occurred_at,
        actor=row.actor,
        actor_guardian_index=record_of(row).actor_guardian_index,
        client_digest=record_of(row).client_digest,
        subject_account_id=row.subject_account_id,
        action=row.action,
    )
    row.seq, row.prev_hash, row.row_hash = record.seq, record.prev_hash, record.row_hash
    return row


def test_verification_names_a_deleted_or_an_inserted_record(svc: Harness) -> None:
    guardian, _ = approved_family(svc, wards=2)
    token = svc.verify(guardian).token
    for _ in range(2):
        svc.handle(ListWards(guardian_verification_token=token))
    saved = svc.uow.committed()
    tamper(svc, lambda state: state.access_audit.pop(2))
    assert verified(svc) == (1, ChainBreak(2, BreakKind.MISSING))
    svc.uow.swap_in(copy.deepcopy(saved))
    tamper(svc, lambda state: state.access_audit.pop(4))  # the newest: only the tail knows
    assert verified(svc) == (3, ChainBreak(4, BreakKind.MISSING))
    svc.uow.swap_in(copy.deepcopy(saved))
    tamper(svc, lambda state: state.access_audit.__setitem__(5, well_chained_after(state, 4)))
    assert verified(svc) == (5, ChainBreak(5, BreakKind.INSERTED))


def test_verification_reads_pages_and_follows_a_moving_anchor(
    svc: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    guardian, _ = approved_family(svc, wards=3)
    token = svc.verify(guardian).token
    svc.handle(ListWards(guardian_verification_token=token))
    svc.clock.advance(days=731)
    svc.handle(ListWards(guardian_verification_token=svc.verify(guardian).token))
    monkeypatch.setattr(audit_use_cases, "VERIFY_PAGE", 2)
    assert verified(svc) == (6, None)

    # Retention deletes the first three records while the first page is being checked.
    real_rows = FakeAccessAuditRepository.rows
    purged: list[int] = []

    def rows_then_purge(self: FakeAccessAuditRepository, **kwargs: Any) -> Any:
        page = real_rows(self, **kwargs)
        if not purged:
            purged.append(svc.handle(Purge())["access audit records deleted"])
        return page

    monkeypatch.setattr(FakeAccessAuditRepository, "rows", rows_then_purge)
    result = svc.handle(VerifyAccessAudit())
    assert purged == [3]
    assert (result.checked, result.broken, result.last.seq) == (3, None, 6)
