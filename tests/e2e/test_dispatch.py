"""Outbox delivery (contract §4): signed webhook POSTs, retries with backoff, at least once.

The webhook is a real HTTP receiver on loopback (tests/fakes/webhook.py); the dispatcher runs
in `serve`, on its own (`idservice dispatch`), or called directly with a clock the test moves.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from idservice.adapters.crypto import FieldCipher, KeyRing
from idservice.adapters.db import tables
from idservice.adapters.notify import LogSink
from idservice.bootstrap import App, build_app
from idservice.domain.events import Event, EventType
from idservice.entrypoints.grpc.server import create_server
from idservice.service_layer import dispatch
from idservice.service_layer.ports import DeliveryFailed, EventSink
from idservice.service_layer.retention import DELIVERED_EVENT_RETENTION, Purge
from idservice.v1 import common_pb2
from tests.conftest import make_settings
from tests.fakes.webhook import WebhookStandIn
from tests.support.client import new_person
from tests.support.server_process import run_idservice
from tests.support.serving import FakeClock, serving

SECRET = "webhook-secret-for-tests"
GUARDIAN_NAME = "정보호"
GUARDIAN_PHONE = "+821024681357"


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback URL that refuses connections for the whole test: the port is bound (so no
    other server can take it) but never listened on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}/hook"


@pytest.fixture
def hook() -> Iterator[WebhookStandIn]:
    with WebhookStandIn() as stand_in:
        yield stand_in


def add_event(app: App, event_type: EventType = EventType.ACCOUNT_ACTIVATED) -> str:
    """An event of its own account; `guardian_consent.requested` carries a guardian's contact
    (for a request that does not exist: it is deleted once delivered)."""
    event_id = str(uuid.uuid4())
    data: dict[str, object] = {"account_id": str(uuid.uuid4())}
    if event_type is EventType.GUARDIAN_CONSENT_REQUESTED:
        data = {
            "consent_request_id": str(uuid.uuid4()),
            "guardian_name": GUARDIAN_NAME,
            "guardian_phone_number": GUARDIAN_PHONE,
        }
    with app.deps.uow() as uow:
        uow.outbox.add(Event(id=event_id, type=event_type, data=data, occurred_at=app.deps.clock()))
        uow.commit()
    return event_id


def add_event_under(app: App, ring: KeyRing) -> str:
    """An outbox event whose payload is encrypted under another ring than the app's."""
    event_id = str(uuid.uuid4())
    now = app.deps.clock()
    payload = json.dumps({"consent_request_id": str(uuid.uuid4())})
    with app.engine.begin() as connection:
        connection.execute(
            insert(tables.outbox).values(
                id=event_id,
                type="guardian_consent.requested",
                payload_ct=FieldCipher(ring).encrypt(payload, context=f"outbox:{event_id}"),
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )
    return event_id


def outbox_rows(app: App) -> dict[str, tuple[int, bool]]:
    """event id -> (attempts, delivered)."""
    o = tables.outbox.c
    with app.engine.connect() as connection:
        rows = connection.execute(select(o.id, o.attempts, o.delivered_at)).all()
    return {row.id: (row.attempts, row.delivered_at is not None) for row in rows}


def check_signature(headers: dict[str, str], body: bytes) -> None:
    fields = dict(part.split("=", 1) for part in headers["x-idservice-signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(fields["v1"], expected.hexdigest())


def test_serve_posts_each_event_signed_to_the_webhook(
    tmp_path: Path, database_url: str, hook: WebhookStandIn
) -> None:
    settings = make_settings(
        tmp_path, database_url, notify_webhook_url=hook.url, notify_webhook_secret=SECRET
    )
    with serving(settings) as (app, client):
        signed = client.sign_up(new_person())
        (delivery,) = hook.wait_for(1)
        document = json.loads(delivery.body)
        assert set(document) == {"event_id", "type", "occurred_at", "data"}
        assert document["occurred_at"].endswith("Z")
        assert document["type"] == "account.created"
        assert document["data"]["account_id"] == signed.account.id
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.headers["x-idservice-event-id"] == document["event_id"]
        assert delivery.headers["x-idservice-event-type"] == "account.created"
        check_signature(delivery.headers, delivery.body)
        # A child's signup: the SMS sender's trigger carries the guardian's contact and code.
        client.sign_up(
            new_person(birth_date="2016-05-05"),
            guardian=common_pb2.Guardian(name=GUARDIAN_NAME, phone_number="010-2468-1357"),
        )
        documents = [json.loads(d.body) for d in hook.wait_for(3)]
        requested = next(d for d in documents if d["type"] == "guardian_consent.requested")
        assert requested["data"]["guardian_phone_number"] == GUARDIAN_PHONE
        assert len(requested["data"]["consent_code"]) == 8
    assert all(delivered for _, delivered in outbox_rows(app).values())


def test_a_failed_delivery_is_retried_with_backoff_until_accepted(
    tmp_path: Path, hook: WebhookStandIn
) -> None:
    clock = FakeClock()
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        notify_webhook_url=hook.url,
        notify_webhook_secret=SECRET,
    )
    app = build_app(settings, clock=clock)
    try:
        event_id = add_event(app)
        hook.fail_next(2, status=503)
        assert app.handle(dispatch.DispatchDue()) == dispatch.DispatchReport(failed=1)
        # Not due again until its backoff has passed.
        assert app.handle(dispatch.DispatchDue()) == dispatch.DispatchReport()
        clock.advance(dispatch.retry_delay(1, jitter=1.2) + timedelta(seconds=1))
        assert app.handle(dispatch.DispatchDue()) == dispatch.DispatchReport(failed=1)
        clock.advance(dispatch.retry_delay(1, jitter=1.2))  # the second wait is longer
        assert app.handle(dispatch.DispatchDue()) == dispatch.DispatchReport()
        clock.advance(dispatch.retry_delay(2, jitter=1.2))
        assert app.handle(dispatch.DispatchDue()) == dispatch.DispatchReport(delivered=1)
        deliveries = hook.received
        assert [d.status for d in deliveries] == [503, 503, 204]
        # The same event each time: receivers de-duplicate by event_id.
        assert {d.headers["x-idservice-event-id"] for d in deliveries} == {event_id}
        assert len({d.body for d in deliveries}) == 1
        assert outbox_rows(app)[event_id] == (3, True)
    finally:
        app.close()


def test_an_unreachable_webhook_is_a_failed_attempt_not_an_error(
    tmp_path: Path, refusing_url: str
) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", notify_webhook_url=refusing_url
    )
    app = build_app(settings)
    try:
        event_id = add_event(app)
        assert app.handle(dispatch.DispatchDue()) == dispatch.DispatchReport(failed=1)
        assert outbox_rows(app)[event_id] == (1, False)
    finally:
        app.close()


def test_without_a_webhook_only_type_and_id_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = build_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}"))
    try:
        event_id = add_event(app, EventType.GUARDIAN_CONSENT_REQUESTED)
        assert app.handle(dispatch.DispatchDue()) == dispatch.DispatchReport(delivered=1)
        # It carries personal data and its consent request is not pending: gone at once.
        assert event_id not in outbox_rows(app)
    finally:
        app.close()
    logged = caplog.text
    assert event_id in logged and "guardian_consent.requested" in logged
    for personal in (GUARDIAN_NAME, GUARDIAN_PHONE, GUARDIAN_PHONE[3:]):
        assert personal not in logged


def test_two_dispatchers_on_one_database_send_each_event_once(
    tmp_path: Path, database_url: str, hook: WebhookStandIn
) -> None:
    ring = KeyRing.generate("shared").serialize()
    apps = [
        build_app(
            make_settings(
                tmp_path / name,
                database_url,
                data_keys=ring,
                notify_webhook_url=hook.url,
                notify_webhook_secret=SECRET,
            )
        )
        for name in ("a", "b")
    ]
    try:
        ids = {add_event(apps[0]) for _ in range(40)}
        start = threading.Barrier(2)
        reports: list[dispatch.DispatchReport] = []

        def run(app: App) -> None:
            start.wait()
            reports.append(app.handle(dispatch.DispatchDue()))

        threads = [threading.Thread(target=run, args=(app,)) for app in apps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent = Counter(d.headers["x-idservice-event-id"] for d in hook.received)
        assert set(sent) == ids
        assert set(sent.values()) == {1}
        assert sum(r.delivered for r in reports) == 40
    finally:
        for app in apps:
            app.close()


def test_dispatch_command_once_delivers_and_prints_counts(
    tmp_path: Path, hook: WebhookStandIn
) -> None:
    ring = KeyRing.generate("cli").serialize()
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    app = build_app(make_settings(tmp_path, database_url, data_keys=ring))
    try:
        ids = {add_event(app) for _ in range(3)}
    finally:
        app.close()
    env = {
        "IDSERVICE_DATABASE_URL": database_url,
        "IDSERVICE_DATA_KEYS": ring,
        "IDSERVICE_NOTIFY_WEBHOOK_URL": hook.url,
        "IDSERVICE_NOTIFY_WEBHOOK_SECRET": SECRET,
    }
    done = run_idservice("dispatch", "--once", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["delivered: 3", "failed: 0"]
    assert {d.headers["x-idservice-event-id"] for d in hook.received} == ids
    for delivery in hook.received:
        check_signature(delivery.headers, delivery.body)
    # Nothing is due any more.
    again = run_idservice("dispatch", "--once", env=env, cwd=tmp_path)
    assert again.stdout.splitlines() == ["delivered: 0", "failed: 0"]


def test_delivered_events_are_deleted_a_day_later_and_undelivered_ones_kept(
    tmp_path: Path, database_url: str
) -> None:
    clock = FakeClock()
    settings = make_settings(tmp_path, database_url)
    app = build_app(settings, clock=clock, sink=LogSink())
    try:
        delivered = add_event(app)
        assert app.handle(dispatch.DispatchDue()).delivered == 1
        waiting = add_event(app)  # never dispatched
        assert app.handle(Purge())["delivered events deleted"] == 0
        clock.advance(DELIVERED_EVENT_RETENTION + timedelta(minutes=1))
        assert app.handle(Purge())["delivered events deleted"] == 1
        assert set(outbox_rows(app)) == {waiting} and delivered != waiting
    finally:
        app.close()


@pytest.mark.parametrize("in_serve", [True, False])
def test_serve_dispatches_unless_told_not_to(tmp_path: Path, in_serve: bool) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", dispatch_in_serve=in_serve
    )
    app = build_app(settings)
    running = create_server(app, "127.0.0.1:0")
    try:
        assert running.dispatching is in_serve
    finally:
        running.halt()
        app.close()
    assert not running.dispatching


def test_a_dispatcher_whose_lease_ran_out_does_not_move_the_new_holders_lease(
    tmp_path: Path, database_url: str
) -> None:
    clock = FakeClock()
    app = build_app(make_settings(tmp_path, database_url), clock=clock, sink=LogSink())
    try:
        event_id = add_event(app)
        with app.deps.uow() as uow:
            first_lease = clock() + dispatch.CLAIM_LEASE
            assert uow.outbox.claim(event_id, now=clock(), until=first_lease) is not None
            uow.commit()
        clock.advance(dispatch.CLAIM_LEASE + timedelta(seconds=1))  # the first holder stalls
        with app.deps.uow() as uow:
            second_lease = clock() + dispatch.CLAIM_LEASE
            assert uow.outbox.claim(event_id, now=clock(), until=second_lease) is not None
            # The first holder's failure comes late: it must not reschedule the event.
            assert not uow.outbox.reschedule(
                event_id, lease=first_lease, attempts=1, next_attempt_at=clock(), error="late"
            )
            assert not uow.outbox.mark_delivered(event_id, lease=first_lease, now=clock())
            uow.commit()
        o = tables.outbox.c
        with app.engine.connect() as connection:
            row = connection.execute(select(o.next_attempt_at, o.attempts)).one()
        assert (row.next_attempt_at, row.attempts) == (second_lease, 0)
    finally:
        app.close()


def test_an_event_that_cannot_be_decrypted_is_retried_without_blocking_the_rest(
    tmp_path: Path, hook: WebhookStandIn
) -> None:
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    app = build_app(
        make_settings(
            tmp_path,
            database_url,
            data_keys=KeyRing.generate("new").serialize(),
            notify_webhook_url=hook.url,
        )
    )
    try:
        # Start-up refuses a ring that lacks a key stored data uses, but a process still on an
        # old ring can write under its key after `idservice reencrypt` let that key go.
        lost = add_event_under(app, KeyRing.generate("old"))
        readable = add_event(app)
        report = app.handle(dispatch.DispatchDue())
        assert (report.delivered, report.failed) == (1, 1)
        assert [d.headers["x-idservice-event-id"] for d in hook.received] == [readable]
        assert outbox_rows(app)[lost] == (1, False)
    finally:
        app.close()


class SlowFailingSink(EventSink):
    """Every delivery fails after a while (the clock moves on), like a webhook that is down."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.tried: list[str] = []

    def deliver(self, *, event_id: str, event_type: str, body: bytes) -> None:
        self.tried.append(event_id)
        self.clock.advance(timedelta(seconds=1))
        raise DeliveryFailed("webhook answered HTTP 503")

    def close(self) -> None:
        """Nothing to release."""


def test_dispatching_everything_due_once_tries_each_event_exactly_once(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = SlowFailingSink(clock)
    app = build_app(
        make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}"), clock=clock, sink=sink
    )
    try:
        ids = [add_event(app) for _ in range(dispatch.BATCH + 50)]
        clock.advance(timedelta(seconds=1))
        # Each page takes long enough for the first failures to fall due again meanwhile.
        report = app.handle(dispatch.DispatchAllDue())
        assert (report.delivered, report.failed) == (0, len(ids))
        assert sorted(sink.tried) == sorted(ids)
    finally:
        app.close()
