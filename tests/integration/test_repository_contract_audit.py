"""The repository contract (see test_repository_contract.py): the access audit's hash chain —
appends in seq order inside the caller's transaction, concurrent appends from several
processes forming one chain, paging, retention from the start with an anchor, and a chain that
tells an altered, deleted or inserted record."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert, select, update

from idservice.adapters.db import tables as t
from idservice.adapters.db.engine import build_engine
from idservice.adapters.db.unit_of_work import SqlUnitOfWorkFactory
from idservice.domain import audit
from idservice.domain.audit import BreakKind, ChainBreak, ChainEnds
from idservice.service_layer.ports import UnitOfWorkFactory
from idservice.service_layer.ports.audit import AccessEntry
from tests.fakes.storage import FakeUnitOfWorkFactory
from tests.fakes.storage_state import FakeState
from tests.support.postgres import PostgresCluster
from tests.support.records import NOW, new_id
from tests.support.repository_backends import BACKENDS, Backend, open_backend

GUARDIAN_CI = "guardian-ci-value"


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> Iterator[Backend]:
    with open_backend(request.param, tmp_path, postgres_cluster) as opened:
        yield opened


def entry(
    *, subject: str = "", guardian_ci: str | None = GUARDIAN_CI, client: str = "198.51.100.4"
) -> AccessEntry:
    return AccessEntry(
        actor="cert:CN=app-backend,O=Example",
        guardian_ci=guardian_ci,
        client=client,
        subject_account_id=subject or new_id(),
        action=audit.AuditAction.GET_WARD.value,
    )


def append(uow: UnitOfWorkFactory, count: int = 1, *, at: datetime = NOW) -> list[int]:
    seqs = []
    for n in range(count):
        with uow() as tx:
            seqs.append(tx.access_audit.append(entry(), now=at + timedelta(seconds=n)))
            tx.commit()
    return seqs


def check(uow: UnitOfWorkFactory, *, page: int = 1000) -> tuple[int, ChainBreak | None]:
    """(records checked, the first break) over the whole chain, `page` records a read."""
    with uow(readonly=True) as tx:
        ends = tx.access_audit.ends()
    verifier = audit.ChainVerifier(ends.anchor)
    after: int | None = None
    while True:
        with uow(readonly=True) as tx:
            rows = tx.access_audit.rows(after_seq=after, limit=page)
        for record in rows:
            if (broken := verifier.check(record)) is not None:
                return verifier.checked, broken
        if len(rows) < page:
            return verifier.checked, verifier.check_tail(ends.tail)
        after = rows[-1].seq


# -- appending -------------------------------------------------------------------------------
def test_an_empty_audit_is_a_whole_chain(backend: Backend) -> None:
    with backend.uow() as tx:
        assert tx.access_audit.ends() == ChainEnds()
        assert tx.access_audit.rows(after_seq=None, limit=10) == []
        assert tx.access_audit.purge(before=NOW) == 0
        tx.commit()
    assert check(backend.uow) == (0, None)


def test_appends_chain_in_seq_order(backend: Backend) -> None:
    assert append(backend.uow, 3) == [1, 2, 3]
    subject = new_id()  # records name any account: they outlive accounts
    with backend.uow() as tx:
        tx.access_audit.append(entry(subject=subject, guardian_ci=None, client=""), now=NOW)
        tx.access_audit.append(entry(guardian_ci="another-ci"), now=NOW)
        tx.commit()
    with backend.uow(readonly=True) as tx:
        rows = tx.access_audit.rows(after_seq=None, limit=10)
        ends = tx.access_audit.ends()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == audit.GENESIS_HASH
    assert ends == ChainEnds(anchor=audit.GENESIS, tail=rows[-1].link)
    assert audit.verify(rows, ends.anchor, ends.tail) is None
    first, no_guardian, other = rows[0], rows[3], rows[4]
    assert (first.actor, first.action, first.occurred_at) == (
        "cert:CN=app-backend,O=Example",
        "guardian.get_ward",
        NOW,
    )
    assert (no_guardian.subject_account_id, no_guardian.actor_guardian_index) == (subject, None)
    # The guardian and the client only as keyed digests: equal for equal values.
    assert first.actor_guardian_index and first.actor_guardian_index != GUARDIAN_CI
    assert rows[1].actor_guardian_index == first.actor_guardian_index
    assert other.actor_guardian_index not in (None, first.actor_guardian_index)
    assert first.client_digest and first.client_digest != "198.51.100.4"
    assert rows[1].client_digest == first.client_digest and no_guardian.client_digest == ""


def test_rows_come_in_pages(backend: Backend) -> None:
    append(backend.uow, 5)
    with backend.uow(readonly=True) as tx:
        assert [r.seq for r in tx.access_audit.rows(after_seq=None, limit=2)] == [1, 2]
        assert [r.seq for r in tx.access_audit.rows(after_seq=2, limit=2)] == [3, 4]
        assert [r.seq for r in tx.access_audit.rows(after_seq=4, limit=2)] == [5]
        assert tx.access_audit.rows(after_seq=5, limit=2) == []
    assert check(backend.uow, page=2) == (5, None)


def test_an_append_rolled_back_leaves_no_trace(backend: Backend) -> None:
    append(backend.uow, 2)
    with backend.uow() as tx:
        assert tx.access_audit.append(entry(), now=NOW) == 3
    with backend.uow() as tx:
        assert tx.access_audit.ends().tail.seq == 2
        assert tx.access_audit.append(entry(), now=NOW) == 3
        tx.commit()
    assert check(backend.uow) == (3, None)


# -- retention -------------------------------------------------------------------------------
def test_retention_deletes_from_the_start_and_moves_the_anchor(backend: Backend) -> None:
    append(backend.uow, 2, at=NOW)
    append(backend.uow, 1, at=NOW + timedelta(days=2))
    append(backend.uow, 1, at=NOW)  # older than the one before it: kept while that one is
    with backend.uow(readonly=True) as tx:
        second = tx.access_audit.rows(after_seq=1, limit=1)[0]
    with backend.uow() as tx:
        assert tx.access_audit.purge(before=NOW + timedelta(days=1)) == 2
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert [r.seq for r in tx.access_audit.rows(after_seq=None, limit=10)] == [3, 4]
        assert tx.access_audit.ends().anchor == second.link
    assert check(backend.uow) == (2, None)
    with backend.uow() as tx:
        assert tx.access_audit.purge(before=NOW + timedelta(days=1)) == 0
        assert tx.access_audit.purge(before=NOW + timedelta(days=3)) == 2
        tx.commit()
    with backend.uow(readonly=True) as tx:
        ends = tx.access_audit.ends()
    assert ends.anchor == ends.tail and ends.tail.seq == 4
    assert check(backend.uow) == (0, None)
    # The chain goes on from its tail.
    assert append(backend.uow, 1) == [5]
    assert check(backend.uow) == (1, None)


# -- tampering -------------------------------------------------------------------------------
@dataclass
class Tamperer:
    """Changes stored records behind the repository's back, as someone with the database."""

    backend: Backend

    def _engine(self) -> Engine:
        assert isinstance(self.backend.uow, SqlUnitOfWorkFactory)
        return self.backend.uow.engine

    def _state(self) -> tuple[FakeUnitOfWorkFactory, FakeState]:
        assert isinstance(self.backend.uow, FakeUnitOfWorkFactory)
        return self.backend.uow, self.backend.uow.committed()

    def alter(self, seq: int) -> None:
        if self.backend.name == "fake":
            factory, state = self._state()
            state.access_audit[seq].action = "guardian.nothing"
            factory.swap_in(state)
            return
        with self._engine().begin() as connection:
            connection.execute(
                update(t.access_audit)
                .where(t.access_audit.c.seq == seq)
                .values(action="guardian.nothing")
            )

    def delete(self, seq: int) -> None:
        if self.backend.name == "fake":
            factory, state = self._state()
            del state.access_audit[seq]
            factory.swap_in(state)
            return
        with self._engine().begin() as connection:
            connection.execute(delete(t.access_audit).where(t.access_audit.c.seq == seq))

    def insert_copy(self, seq: int, *, as_seq: int) -> None:
        """Record `seq` again as `as_seq`, with its hashes (and no client address)."""
        if self.backend.name == "fake":
            factory, state = self._state()
            row = state.access_audit[seq]
            state.access_audit[as_seq] = type(row)(**{**vars(row), "seq": as_seq, "client": ""})
            factory.swap_in(state)
            return
        with self._engine().begin() as connection:
            stored = connection.execute(
                select(t.access_audit).where(t.access_audit.c.seq == seq)
            ).one()
            values = {**stored._asdict(), "seq": as_seq, "client_ip_ct": None}
            connection.execute(insert(t.access_audit).values(values))

    def insert_chained_after(self, seq: int) -> None:
        """A record well chained after record `seq` (as the writer would have made it), with
        no client address, while the chain's tail is left as it was."""
        self.insert_copy(seq, as_seq=seq + 1)
        with self.backend.uow(readonly=True) as tx:
            [before, copy] = tx.access_audit.rows(after_seq=seq - 1, limit=2)
        chained = audit.next_record(
            before.link,
            occurred_at=copy.occurred_at,
            actor=copy.actor,
            actor_guardian_index=copy.actor_guardian_index,
            client_digest=copy.client_digest,
            subject_account_id=copy.subject_account_id,
            action=copy.action,
        )
        assert chained.prev_hash == before.row_hash
        if self.backend.name == "fake":
            factory, state = self._state()
            state.access_audit[seq + 1].prev_hash = chained.prev_hash
            state.access_audit[seq + 1].row_hash = chained.row_hash
            factory.swap_in(state)
            return
        with self._engine().begin() as connection:
            connection.execute(
                update(t.access_audit)
                .where(t.access_audit.c.seq == seq + 1)
                .values(prev_hash=chained.prev_hash, row_hash=chained.row_hash)
            )


@pytest.fixture
def tamperer(backend: Backend) -> Tamperer:
    append(backend.uow, 5)
    assert check(backend.uow) == (5, None)
    return Tamperer(backend)


def test_an_altered_record_breaks_the_chain(backend: Backend, tamperer: Tamperer) -> None:
    tamperer.alter(3)
    assert check(backend.uow) == (2, ChainBreak(3, BreakKind.ALTERED))


@pytest.mark.parametrize(("seq", "checked"), [(1, 0), (3, 2), (5, 4)])
def test_a_deleted_record_breaks_the_chain(
    backend: Backend, tamperer: Tamperer, seq: int, checked: int
) -> None:
    tamperer.delete(seq)
    assert check(backend.uow) == (checked, ChainBreak(seq, BreakKind.MISSING))


def test_a_record_below_the_anchor_breaks_the_chain(backend: Backend, tamperer: Tamperer) -> None:
    tamperer.insert_copy(1, as_seq=0)
    assert check(backend.uow) == (0, ChainBreak(0, BreakKind.INSERTED))


def test_a_record_past_the_tail_breaks_the_chain(backend: Backend, tamperer: Tamperer) -> None:
    tamperer.insert_chained_after(5)
    assert check(backend.uow) == (6, ChainBreak(6, BreakKind.INSERTED))


def test_a_moved_client_address_breaks_the_chain(backend: Backend, tamperer: Tamperer) -> None:
    if backend.name == "fake":
        pytest.skip("the fake keeps addresses in the clear")
    engine = tamperer._engine()
    a = t.access_audit.c
    with engine.begin() as connection:
        moved = connection.execute(select(a.client_ip_ct).where(a.seq == 1)).scalar_one()
        connection.execute(update(t.access_audit).where(a.seq == 2).values(client_ip_ct=moved))
    assert check(backend.uow) == (1, ChainBreak(2, BreakKind.ALTERED))


# -- concurrency -----------------------------------------------------------------------------
def _second_factory(backend: Backend) -> tuple[UnitOfWorkFactory, Engine | None]:
    """Another process's view of the same storage (its own engine and connections)."""
    if not isinstance(backend.uow, SqlUnitOfWorkFactory):
        return backend.uow, None
    engine = build_engine(backend.uow.engine.url.render_as_string(hide_password=False))
    # The same keys as the first factory (a deployment's processes share one ring).
    return SqlUnitOfWorkFactory(engine, backend.uow._cipher), engine


def test_concurrent_appends_form_one_chain(backend: Backend) -> None:
    other, engine = _second_factory(backend)
    factories = [backend.uow, other] * 3
    per_thread = 10
    start = threading.Barrier(len(factories))
    errors: list[BaseException] = []

    def run(uow: UnitOfWorkFactory) -> None:
        try:
            start.wait(timeout=30)
            for _ in range(per_thread):
                with uow() as tx:
                    tx.access_audit.append(entry(), now=NOW)
                    tx.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(uow,)) for uow in factories]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        if engine is not None:
            engine.dispose()
    assert errors == []
    assert check(backend.uow) == (len(factories) * per_thread, None)
    with backend.uow(readonly=True) as tx:
        assert tx.access_audit.ends().tail.seq == len(factories) * per_thread
