"""The outbox, finished: one account's events in order, dead letters and `idservice outbox`,
and a dispatcher killed mid-delivery whose events all arrive within a minute of a restart.

Over the real webhook stand-in (tests/fakes/webhook.py), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from idservice.bootstrap import App, build_app
from idservice.domain import events
from idservice.domain.events import Event
from idservice.domain.instants import utc_text
from idservice.service_layer import dispatch
from idservice.service_layer.ports import OutboxEntry
from tests.conftest import TEST_DATA_KEYS, make_settings
from tests.fakes.webhook import Delivery, WebhookStandIn
from tests.support.server_process import child_environment, run_idservice
from tests.support.serving import FakeClock

SECRET = "webhook-secret-for-tests"
GUARDIAN_NAME = "정보호"
GUARDIAN_PHONE = "+821024681357"
CONSENT_CODE = "24681357"
# The test hook `idservice dispatch --claim-lease`: a killed dispatcher's event is taken over
# after this many seconds instead of 30.
TEST_LEASE_SECONDS = 3
TAKEOVER_BOUND_SECONDS = 60.0


@pytest.fixture
def hook() -> Iterator[WebhookStandIn]:
    with WebhookStandIn() as stand_in:
        yield stand_in


def write(app: App, *written: Event) -> list[str]:
    """Write `written` to the outbox in one transaction, in this order."""
    with app.deps.uow() as uow:
        for event in written:
            uow.outbox.add(event)
        uow.commit()
    return [event.id for event in written]


def undelivered(app: App) -> list[OutboxEntry]:
    with app.deps.uow(readonly=True) as uow:
        return uow.outbox.undelivered(limit=100)


def accepted(deliveries: list[Delivery]) -> list[str]:
    """Event ids the webhook accepted (2xx), in the order it answered them."""
    return [d.headers["x-idservice-event-id"] for d in deliveries if 200 <= d.status < 300]


def sms_trigger(account_id: str, *, app: App) -> Event:
    now = app.deps.clock()
    return events.guardian_consent_requested(
        consent_request_id=str(uuid.uuid4()),  # a request that is not pending
        account_id=account_id,
        guardian_name=GUARDIAN_NAME,
        guardian_phone_number=GUARDIAN_PHONE,
        consent_code=CONSENT_CODE,
        expires_at=now + timedelta(days=5),
        now=now,
    )


def test_one_accounts_events_arrive_in_the_order_written_across_a_failed_delivery(
    tmp_path: Path, database_url: str, hook: WebhookStandIn
) -> None:
    clock = FakeClock()
    settings = make_settings(
        tmp_path, database_url, notify_webhook_url=hook.url, notify_webhook_secret=SECRET
    )
    app = build_app(settings, clock=clock)
    try:
        account, other = str(uuid.uuid4()), str(uuid.uuid4())
        # Two events of one transaction share an instant: their position orders them.
        ordered = write(
            app,
            events.account_created(
                account_id=account, status="ACTIVE", identity_verified=True, now=clock()
            ),
            events.account_activated(account_id=account, now=clock()),
        )
        clock.advance(timedelta(seconds=1))
        ordered += write(app, events.account_withdrawn(account_id=account, now=clock()))
        [unrelated] = write(app, events.account_activated(account_id=other, now=clock()))
        hook.fail_next(1, status=503)

        assert app.handle(dispatch.DispatchDue()) == dispatch.DispatchReport(delivered=1, failed=1)
        # The account's second event waits for the first one's retry; the other account's
        # event did not wait.
        assert app.handle(dispatch.DispatchDue()) == dispatch.DispatchReport()
        clock.advance(dispatch.retry_delay(1, jitter=1.2))
        for _ in ordered:
            assert app.handle(dispatch.DispatchDue()) == dispatch.DispatchReport(delivered=1)
        assert accepted(hook.received) == [unrelated, *ordered]
        assert [d.status for d in hook.received][:1] == [503]
    finally:
        app.close()


def test_a_dead_letter_is_listed_and_replayed_by_the_outbox_command(
    tmp_path: Path, database_url: str, hook: WebhookStandIn
) -> None:
    clock = FakeClock()
    settings = make_settings(tmp_path, database_url, notify_webhook_url=hook.url)
    app = build_app(settings, clock=clock)
    try:
        account = str(uuid.uuid4())
        doomed, follower = write(
            app,
            sms_trigger(account, app=app),
            events.account_created(
                account_id=account,
                status="PENDING_GUARDIAN_CONSENT",
                identity_verified=True,
                now=clock(),
            ),
        )
        hook.fail_next(dispatch.DEAD_AFTER_ATTEMPTS + 1, status=503)
        for attempt in range(1, dispatch.DEAD_AFTER_ATTEMPTS + 1):
            report = app.handle(dispatch.DispatchDue())
            assert (report.failed, report.seen) == (1, 1)  # the follower waits
            clock.advance(dispatch.retry_delay(attempt, jitter=1.2))
        assert [entry.dead_at for entry in undelivered(app)] == [None, None]
        clock.advance(dispatch.DEAD_AFTER_AGE)  # 20 attempts and 72 hours: given up on
        assert app.handle(dispatch.DispatchDue()).failed == 1
        # A dead letter holds back nothing.
        assert app.handle(dispatch.DispatchDue()).delivered == 1
        assert accepted(hook.received) == [follower]
        [dead] = undelivered(app)
    finally:
        app.close()
    assert (dead.id, dead.attempts, dead.dead_at) == (doomed, 21, clock())
    assert dead.last_error == "webhook answered HTTP 503"

    env = {
        "IDSERVICE_DATABASE_URL": database_url,
        "IDSERVICE_DATA_KEYS": TEST_DATA_KEYS,
        "IDSERVICE_NOTIFY_WEBHOOK_URL": hook.url,
    }

    def outbox(*args: str, code: int = 0) -> list[str]:
        done = run_idservice("outbox", *args, env=env, cwd=tmp_path)
        assert done.returncode == code, done.stderr
        for secret in (GUARDIAN_NAME, GUARDIAN_PHONE, CONSENT_CODE, hook.url):
            assert secret not in done.stdout + done.stderr
        return done.stdout.splitlines()

    header = "state\ttype\tevent_id\tattempts\tnext_attempt_or_dead_since\tlast_error"
    assert outbox("list") == [
        header,
        f"dead\tguardian_consent.requested\t{doomed}\t21\t{utc_text(clock())}\t"
        "webhook answered HTTP 503",
        "pending: 0",
        "dead: 1",
    ]
    assert outbox("replay", str(uuid.uuid4()), code=1) == ["replayed: 0"]
    assert outbox("replay", doomed) == ["replayed: 1"]
    [_, line, pending, dead_count] = outbox("list")
    assert line.startswith(f"pending\tguardian_consent.requested\t{doomed}\t0\t")
    assert line.endswith("\t-")
    assert (pending, dead_count) == ("pending: 1", "dead: 0")
    delivered = run_idservice("dispatch", "--once", env=env, cwd=tmp_path)
    assert delivered.stdout.splitlines() == ["delivered: 1", "failed: 0"], delivered.stderr
    assert accepted(hook.received) == [follower, doomed]
    # Delivered, with no pending consent request: deleted at once, not listed, not replayable.
    assert outbox("list") == [header, "pending: 0", "dead: 0"]
    assert outbox("replay", "--all") == ["replayed: 0"]


@pytest.mark.parametrize("action", ["list", "replay"])
def test_outbox_help_says_what_each_action_does(tmp_path: Path, action: str) -> None:
    done = run_idservice("outbox", action, "--help", env={}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _usage, description, *rest = done.stdout.split("\n\n")
    assert len(description.split()) >= 5 and not description.startswith("options:")
    assert "IDSERVICE_*" in " ".join(rest).replace("\n", " ")
    assert list(tmp_path.iterdir()) == []


@contextmanager
def dispatcher(env: dict[str, str], cwd: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """`idservice dispatch` with the short test lease, logging to `<name>.log`."""
    with (cwd / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "idservice",
                "dispatch",
                "--claim-lease",
                str(TEST_LEASE_SECONDS),
            ],
            cwd=cwd,
            env=child_environment(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def test_a_killed_dispatchers_events_all_arrive_within_a_minute_of_a_restart(
    tmp_path: Path, database_url: str, hook: WebhookStandIn
) -> None:
    app = build_app(make_settings(tmp_path, database_url))
    try:
        accounts = [str(uuid.uuid4()) for _ in range(3)]
        written = {
            account: write(
                app,
                events.account_created(
                    account_id=account,
                    status="ACTIVE",
                    identity_verified=True,
                    now=app.deps.clock(),
                ),
                events.account_activated(account_id=account, now=app.deps.clock()),
                events.session_reuse_detected(
                    account_id=account, session_id=str(uuid.uuid4()), now=app.deps.clock()
                ),
                events.account_withdrawn(account_id=account, now=app.deps.clock()),
            )
            for account in accounts
        }
    finally:
        app.close()
    every_id = {event_id for ids in written.values() for event_id in ids}
    env = {
        "IDSERVICE_DATABASE_URL": database_url,
        "IDSERVICE_DATA_KEYS": TEST_DATA_KEYS,
        "IDSERVICE_NOTIFY_WEBHOOK_URL": hook.url,
        "IDSERVICE_NOTIFY_WEBHOOK_SECRET": SECRET,
    }
    hook.hold(after=2)
    with dispatcher(env, tmp_path, "first") as first:
        hook.wait_for_held(1, timeout=60)  # the third delivery hangs: kill -9 mid-delivery
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    hook.release()
    assert len(accepted(hook.received)) == 2

    restarted = time.monotonic()
    with dispatcher(env, tmp_path, "second") as second:
        received = hook.wait_until(
            lambda deliveries: every_id <= set(accepted(deliveries)),
            timeout=TAKEOVER_BOUND_SECONDS,
        )
        took = time.monotonic() - restarted
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    assert took < TAKEOVER_BOUND_SECONDS
    # None lost, and each account's events arrived in the order they were written.
    arrivals = accepted(received)
    for account, ids in written.items():
        firsts = list(dict.fromkeys(e for e in arrivals if e in set(ids)))
        assert firsts == ids, account
