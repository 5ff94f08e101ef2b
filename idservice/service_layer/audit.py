"""The access audit (안전성 확보조치 기준 제8조): recording an access to a person's data on someone
else's behalf, and checking the hash chain of the records (`idservice audit verify`).

An access is recorded in the transaction that reads or changes the data, so there is no access
without its record and no record of an access that was rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from idservice.domain.audit import (
    MAX_ACTOR_LENGTH,
    AuditAction,
    ChainBreak,
    ChainLink,
    ChainVerifier,
)
from idservice.service_layer.ports import UnitOfWork, UnitOfWorkFactory
from idservice.service_layer.ports.audit import AccessEntry
from idservice.service_layer.use_cases import Command

# The actor when the calling service could not be identified.
UNKNOWN_ACTOR = "unknown"
# Records read per read transaction while verifying.
VERIFY_PAGE = 1000
# Verification starts again (at most this often) when retention moved the anchor meanwhile.
VERIFY_RESTARTS = 3


def record_access(
    tx: UnitOfWork,
    *,
    actor: str,
    guardian_ci: str | None,
    client: str,
    subject_account_id: str,
    action: AuditAction,
    now: datetime,
) -> None:
    """Append the record of one access in the caller's transaction."""
    tx.access_audit.append(
        AccessEntry(
            actor=actor[:MAX_ACTOR_LENGTH] or UNKNOWN_ACTOR,
            guardian_ci=guardian_ci,
            client=client,
            subject_account_id=subject_account_id,
            action=action.value,
        ),
        now=now,
    )


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """How many records were checked, and the first break (None: the chain is whole)."""

    checked: int
    broken: ChainBreak | None
    # The newest record checked (the anchor when there was none).
    last: ChainLink


@dataclass(frozen=True, slots=True, repr=False)
class VerifyAccessAudit(Command[AuditVerification]):
    pass


def verify_access_audit(cmd: VerifyAccessAudit, *, uow: UnitOfWorkFactory) -> AuditVerification:
    """Walk the chain from its anchor to its tail, a page per read; a break found while retention
    moved the anchor is checked again from the new anchor."""
    result = _walk(uow)
    for _ in range(VERIFY_RESTARTS):
        if result.broken is None or not result.anchor_moved(uow):
            break
        result = _walk(uow)
    return AuditVerification(checked=result.checked, broken=result.broken, last=result.last)


@dataclass(frozen=True, slots=True)
class _Walk:
    anchor: ChainLink
    checked: int
    broken: ChainBreak | None
    last: ChainLink

    def anchor_moved(self, uow: UnitOfWorkFactory) -> bool:
        with uow(readonly=True) as tx:
            return tx.access_audit.ends().anchor != self.anchor


def _walk(uow: UnitOfWorkFactory) -> _Walk:
    with uow(readonly=True) as tx:
        anchor = tx.access_audit.ends().anchor
    verifier = ChainVerifier(anchor)

    def done(broken: ChainBreak | None) -> _Walk:
        return _Walk(anchor, verifier.checked, broken, verifier.last)

    after: int | None = None  # from the very first row: rows below the anchor are no part of it
    while True:
        with uow(readonly=True) as tx:
            page = tx.access_audit.rows(after_seq=after, limit=VERIFY_PAGE)
        for record in page:
            broken = verifier.check(record)
            if broken is not None:
                return done(broken)
        if len(page) == VERIFY_PAGE:
            after = page[-1].seq
            continue
        # Read after the rows: every record the tail counts was committed before it was read.
        with uow(readonly=True) as tx:
            tail = tx.access_audit.ends().tail
        if page and tail.seq > verifier.last.seq:  # appended while this page was read
            after = page[-1].seq
            continue
        return done(verifier.check_tail(tail))
