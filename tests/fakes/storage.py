"""In-memory storage ports: `FakeUnitOfWorkFactory` over one shared state, with transactions.

A write unit of work works on a deep copy of the committed state and swaps it in on `commit()`;
leaving the `with` block without committing discards its changes. Writers queue on one lock
(as the SQLite adapter's writers do), so a nested write in the same thread is refused with
RuntimeError instead of waiting on itself. Read-only units of work never take the lock and see
the latest committed state at each call (read committed), and may not write.

    uow = FakeUnitOfWorkFactory()
    deps = Dependencies(uow=uow, ...)
    ...
    uow.events("account.created")       # committed outbox documents, oldest first
    uow.committed().accounts            # a copy of the committed tables, for assertions
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from idservice.domain.errors import server_busy
from tests.fakes.storage_accounts import FakeAccountRepository
from tests.fakes.storage_audit import FakeAccessAuditRepository
from tests.fakes.storage_connection_log import FakeConnectionLog
from tests.fakes.storage_consent_records import FakeConsentRecordRepository
from tests.fakes.storage_consents import FakeAttemptCounterRepository, FakeGuardianConsentRepository
from tests.fakes.storage_outbox import FakeOutboxRepository
from tests.fakes.storage_records import (
    FakeIdempotencyRepository,
    FakeSessionRepository,
    FakeVerificationRepository,
)
from tests.fakes.storage_sns import FakeSignupTicketRepository, FakeSnsIdentityRepository
from tests.fakes.storage_state import FakeIntegrityError, FakeState, ReadOnlyWrite

__all__ = [
    "FakeIntegrityError",
    "FakeState",
    "FakeUnitOfWork",
    "FakeUnitOfWorkFactory",
    "Interleaving",
    "ReadOnlyWrite",
]

# As long as a SQLite writer waits for this process's write lock before SERVER_BUSY.
WRITE_LOCK_TIMEOUT_SECONDS = 30.0


class FakeUnitOfWork:
    """One transaction over the factory's state; the repositories are bound to it."""

    def __init__(self, factory: FakeUnitOfWorkFactory, *, readonly: bool) -> None:
        self._factory = factory
        self.readonly = readonly
        self._open = False
        self._working: FakeState | None = None
        self.accounts = FakeAccountRepository(self)
        self.sessions = FakeSessionRepository(self)
        self.verifications = FakeVerificationRepository(self)
        self.guardian_consents = FakeGuardianConsentRepository(self)
        self.idempotency = FakeIdempotencyRepository(self)
        self.outbox = FakeOutboxRepository(self)
        self.sns_identities = FakeSnsIdentityRepository(self)
        self.signup_tickets = FakeSignupTicketRepository(self)
        self.attempt_counters = FakeAttemptCounterRepository(self)
        self.access_audit = FakeAccessAuditRepository(self)
        self.connection_log = FakeConnectionLog(self)
        self.consent_records = FakeConsentRecordRepository(self)

    # -- StateAccess ---------------------------------------------------------------------
    def read(self) -> FakeState:
        if not self._open:
            raise RuntimeError("the unit of work is not open (use it in a `with` block)")
        if self.readonly:
            return self._factory.current()
        if self._working is None:
            self._working = copy.deepcopy(self._factory.current())
        return self._working

    def write(self) -> FakeState:
        if self.readonly:
            raise ReadOnlyWrite("a read-only unit of work tried to write")
        return self.read()

    # -- the UnitOfWork protocol ---------------------------------------------------------
    def __enter__(self) -> Self:
        if self._open:
            raise RuntimeError("the unit of work is already open")
        if not self.readonly:
            self._factory.acquire_write_lock()
        self._open = True
        return self

    def commit(self) -> None:
        if not self._open:
            raise RuntimeError("commit outside the `with` block")
        if self.readonly or self._working is None:
            return
        self._factory.swap_in(self._working)
        # Work after a commit starts again from the committed state, in a new transaction.
        self._working = None
        self._factory.commits += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        was_open, self._open, self._working = self._open, False, None
        if was_open and not self.readonly:
            self._factory.release_write_lock()


@dataclass
class Interleaving:
    """Whether an `interleaved` action ran."""

    fired: bool = False


class FakeUnitOfWorkFactory:
    """Opens fake units of work on one shared, thread-safe in-memory state."""

    def __init__(self, state: FakeState | None = None) -> None:
        self._state = state if state is not None else FakeState()
        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writing = threading.local()
        # Committed write transactions (counted under the write lock).
        self.commits = 0
        # Calls of make_deletions_final (for assertions).
        self.deletions_made_final = 0
        # run_before_unit: (thread, units left to open before the action, the action).
        self._interleave: tuple[int, int, Callable[[], object]] | None = None

    def __call__(self, *, readonly: bool = False, single_write: bool = False) -> FakeUnitOfWork:
        if readonly and single_write:
            raise ValueError("a unit of work is read-only or a single write, not both")
        hook = self._interleave
        if hook is not None and hook[0] == threading.get_ident():
            thread, left, action = hook
            if left > 1:
                self._interleave = (thread, left - 1, action)
            else:
                self._interleave = None
                action()  # another caller's work, committed before this unit of work begins
        # A single write is an ordinary write transaction here.
        return FakeUnitOfWork(self, readonly=readonly)

    @contextmanager
    def interleaved(self, number: int, action: Callable[[], object]) -> Iterator[Interleaving]:
        """Within the block, run `action` once, in this thread, just before it opens its
        `number`-th unit of work (1: the next one): a concurrent caller whose use case commits
        between two of this one's transactions, forced. `fired` says whether it ran."""
        if number < 1:
            raise ValueError("units are counted from 1")
        record = Interleaving()

        def run() -> None:
            record.fired = True
            action()

        self._interleave = (threading.get_ident(), number, run)
        try:
            yield record
        finally:
            self._interleave = None

    def make_deletions_final(self) -> None:
        """Nothing to do: a deleted row leaves no copy in memory that a later read could see."""
        self.deletions_made_final += 1

    # -- used by FakeUnitOfWork ----------------------------------------------------------
    def current(self) -> FakeState:
        """The committed state; never changed in place (commits swap in a new object)."""
        with self._state_lock:
            return self._state

    def swap_in(self, state: FakeState) -> None:
        with self._state_lock:
            self._state = state

    def acquire_write_lock(self) -> None:
        if getattr(self._writing, "active", False):
            raise RuntimeError("a write unit of work is already open in this thread")
        if not self._write_lock.acquire(timeout=WRITE_LOCK_TIMEOUT_SECONDS):
            raise server_busy()
        self._writing.active = True

    def release_write_lock(self) -> None:
        self._writing.active = False
        self._write_lock.release()

    # -- for assertions ------------------------------------------------------------------
    def committed(self) -> FakeState:
        """A deep copy of the committed state (changing it changes nothing stored)."""
        return copy.deepcopy(self.current())

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """The committed outbox documents (of one type), oldest first, parsed from JSON."""
        rows = sorted(self.current().outbox.items(), key=lambda item: item[1].order(item[0]))
        documents: list[dict[str, Any]] = [json.loads(row.document) for _, row in rows]
        return [d for d in documents if event_type is None or d["type"] == event_type]
