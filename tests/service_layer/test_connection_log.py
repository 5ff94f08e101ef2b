"""The connection log in the service layer: the recorder's buffer, RecordConnections, the purge
of entries past `Policy.connection_log_retention`, and which account a call acted as."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.call_context import call_scope, identified_account, identify
from idservice.service_layer.connection_log import ConnectionRecorder, RecordConnections
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import ConnectionEntry
from idservice.service_layer.privacy import ExportPersonalData
from idservice.service_layer.profile import GetAccount
from idservice.service_layer.retention import Purge
from idservice.service_layer.sessions import IntrospectToken, RefreshSession
from tests.fakes.providers import verified_person
from tests.service_layer.harness import Harness
from tests.support.records import NOW


def entry(
    method: str = "/s/M", *, minutes: float = 0, account_id: str | None = None
) -> ConnectionEntry:
    return ConnectionEntry(
        occurred_at=NOW + timedelta(minutes=minutes),
        method=method,
        code="OK",
        account_id=account_id,
    )


class Writer:
    """Stands in for RecordConnections: keeps the batches, fails while `failing`."""

    def __init__(self) -> None:
        self.batches: list[tuple[ConnectionEntry, ...]] = []
        self.failing = False

    def __call__(self, batch: tuple[ConnectionEntry, ...]) -> None:
        if self.failing:
            raise DomainError(Reason.DATABASE_UNAVAILABLE, "down")
        self.batches.append(batch)

    def methods(self) -> list[str]:
        return [e.method for batch in self.batches for e in batch]


# -- the recorder ----------------------------------------------------------------------------
def test_add_only_buffers_and_flush_writes_in_order_in_chunks() -> None:
    writer = Writer()
    recorder = ConnectionRecorder(writer, chunk=2)
    for n in range(5):
        recorder.add(entry(f"/s/M{n}"))
    assert writer.batches == [] and recorder.pending() == 5
    assert recorder.flush() == 5
    assert [len(batch) for batch in writer.batches] == [2, 2, 1]
    assert writer.methods() == [f"/s/M{n}" for n in range(5)]
    assert recorder.pending() == 0
    assert recorder.flush() == 0 and len(writer.batches) == 3  # nothing buffered: no write


def test_a_failed_write_keeps_the_entries_for_the_next_flush() -> None:
    writer = Writer()
    recorder = ConnectionRecorder(writer)
    recorder.add(entry("/s/First"))
    writer.failing = True
    with pytest.raises(DomainError):
        recorder.flush()
    recorder.add(entry("/s/Second"))
    assert recorder.pending() == 2
    writer.failing = False
    assert recorder.flush() == 2
    assert writer.methods() == ["/s/First", "/s/Second"]


def test_a_full_buffer_drops_the_oldest_and_says_how_many(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = Writer()
    recorder = ConnectionRecorder(writer, max_buffered=3)
    writer.failing = True
    for n in range(2):
        recorder.add(entry(f"/s/M{n}"))
    with pytest.raises(DomainError):
        recorder.flush()
    for n in range(2, 5):
        recorder.add(entry(f"/s/M{n}"))
    writer.failing = False
    with caplog.at_level(logging.WARNING):
        assert recorder.flush() == 3
    assert writer.methods() == ["/s/M2", "/s/M3", "/s/M4"]
    assert "connection log: 2 entries dropped" in caplog.text


# -- the use cases ---------------------------------------------------------------------------
def test_record_connections_writes_a_batch_that_purge_deletes_after_the_retention() -> None:
    svc = Harness.build(Policy(connection_log_retention=timedelta(days=90)))
    svc.clock.set(NOW)
    account = "acct-1"
    svc.handle(RecordConnections((entry("/s/Old", account_id=account), entry("/s/Anon"))))
    assert len(svc.uow.committed().connection_log) == 2
    assert svc.handle(RecordConnections(())) == 0

    svc.clock.advance(days=90)
    assert svc.handle(Purge())["connection log entries deleted"] == 0
    svc.handle(RecordConnections((entry("/s/New", minutes=90 * 24 * 60, account_id=account),)))
    svc.clock.advance(minutes=1)
    assert svc.handle(Purge())["connection log entries deleted"] == 2
    assert [e.method for e in svc.uow.committed().connection_log] == ["/s/New"]


# -- which account a call acted as -----------------------------------------------------------
def test_each_call_scope_starts_without_an_account() -> None:
    # Use cases run outside any scope in this tier, so the test thread may hold an account.
    before = identified_account()
    with call_scope():
        identify("acct-1")
        assert identified_account() == "acct-1"
        with call_scope():
            assert identified_account() is None
        assert identified_account() == "acct-1"
    assert identified_account() == before


def test_authenticated_calls_and_sign_ins_name_their_account(svc: Harness) -> None:
    signed_up = svc.sign_up_person(verified_person())
    account_id = signed_up.account.id
    with call_scope():
        svc.login(signed_up.account.email or "")
        assert identified_account() == account_id
    assert signed_up.session is not None
    with call_scope():
        svc.handle(GetAccount(access_token=signed_up.session.access_token))
        assert identified_account() == account_id
    with call_scope():
        svc.handle(RefreshSession(refresh_token=signed_up.session.refresh_token))
        assert identified_account() == account_id


def test_failed_logins_and_introspection_name_no_account(svc: Harness) -> None:
    signed_up = svc.sign_up_person(verified_person())
    assert signed_up.session is not None
    with call_scope():
        svc.fails(PasswordLogin(email=signed_up.account.email or "", password="wrong"))
        assert identified_account() is None
    with call_scope():
        # A service asking about someone's token is not that person's connection.
        assert svc.handle(IntrospectToken(access_token=signed_up.session.access_token)).active
        assert identified_account() is None
    with call_scope():
        svc.fails(GetAccount(access_token="not-a-token"), Reason.TOKEN_INVALID)
        assert identified_account() is None


@pytest.mark.parametrize("retention_days", [90, 92])
def test_an_export_shows_the_connection_log_as_far_back_as_it_is_kept(
    retention_days: int,
) -> None:
    """Three calendar months can be 92 days: an operator who keeps that much exports it too."""
    svc = Harness.build(Policy(connection_log_retention=timedelta(days=retention_days)))
    svc.clock.set(NOW)
    signed = svc.sign_up_person(verified_person(), email="log@example.com")
    days = (89, 91)
    svc.handle(
        RecordConnections(
            tuple(
                entry(f"/s/Day{d}", minutes=-d * 24 * 60, account_id=signed.account.id)
                for d in days
            )
        )
    )
    token = svc.login("log@example.com").access_token
    document = json.loads(svc.handle(ExportPersonalData(access_token=token)))
    exported = {e["method"] for e in document["connection_log"]}
    assert exported == {f"/s/Day{d}" for d in days if d <= retention_days}
