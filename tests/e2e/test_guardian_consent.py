"""The guardian consent journey over gRPC, with the consent code read from the signed webhook.

A child signs up → the webhook receives the request with the code → the guardian verifies
(sandbox) → approves → the child logs in; and every refusal along the way.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import ENCRYPTED_COLUMNS
from idservice.bootstrap import App
from idservice.service_layer.retention import Purge
from idservice.v1 import account_pb2, common_pb2
from idservice.v1 import guardian_consent_pb2 as pb
from tests.conftest import make_settings
from tests.e2e.test_privacy_at_rest import all_rows
from tests.fakes.webhook import WebhookStandIn
from tests.support.client import (
    Client,
    Person,
    failure_of,
    new_mobile_number,
    new_person,
    reason_or_ok,
)
from tests.support.locks import account_row_held, at_once, queued_behind
from tests.support.serving import FakeClock, serving

CHILD_BIRTH = "2016-05-05"


@pytest.fixture
def hook() -> Iterator[WebhookStandIn]:
    with WebhookStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served(
    tmp_path: Path, database_url: str, hook: WebhookStandIn, clock: FakeClock
) -> Iterator[tuple[App, Client]]:
    settings = make_settings(tmp_path, database_url, notify_webhook_url=hook.url)
    with serving(settings, clock=clock) as pair:
        yield pair


class Journey:
    """One child's signup and the guardian who must consent."""

    def __init__(self, client: Client, hook: WebhookStandIn) -> None:
        self.client, self.hook = client, hook
        self.guardian = new_person(birth_date="1985-03-03", name="정보호")
        self.child = new_person(birth_date=CHILD_BIRTH, name="정아이")
        self.email = f"child-{uuid.uuid4().hex[:8]}@example.com"
        signed = client.sign_up(
            self.child,
            email=self.email,
            guardian=common_pb2.Guardian(name="정보호", phone_number=self.guardian.phone),
        )
        self.account_id = signed.account.id
        self.request_id = signed.guardian_consent_request.id

    def code(self, *, sent: int = 1) -> str:
        """The code of the newest request event for this request (as the SMS sender sees it),
        once `sent` of them have arrived."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            codes = [
                str(document["data"]["consent_code"])
                for document in (json.loads(d.body) for d in self.hook.received)
                if document["type"] == "guardian_consent.requested"
                and document["data"]["consent_request_id"] == self.request_id
            ]
            if len(codes) >= sent:
                return codes[-1]
            time.sleep(0.05)
        raise AssertionError("no request event")

    def token(self, person: Person | None = None) -> str:
        return self.client.verify(person or self.guardian).verification_token

    def approve(self, code: str, token: str | None = None) -> pb.ApproveConsentRequestResponse:
        return self.client.guardian.ApproveConsentRequest(
            pb.ApproveConsentRequestRequest(
                id=self.request_id,
                consent_code=code,
                guardian_verification_token=token or self.token(),
            )
        )

    def status(self) -> int:
        return self.client.guardian.GetConsentRequest(
            pb.GetConsentRequestRequest(id=self.request_id)
        ).status


def personal_ciphertexts(app: App) -> list[str]:
    """The stored ciphertexts of the child's account and the guardian's name and phone."""
    columns = [
        c for c in ENCRYPTED_COLUMNS if c.table.name in ("accounts", "guardian_consent_requests")
    ]
    found: list[str] = []
    with app.engine.connect() as connection:
        for entry in columns:
            column = entry.table.c[entry.column]
            found += connection.execute(select(column).where(column.is_not(None))).scalars()
    return found


def raw_sqlite(app: App) -> str:
    """The database file and its WAL, as text (ciphertexts are ASCII)."""
    path = Path(str(app.engine.url.database))
    files = sorted(path.parent.glob(path.name + "*"))
    return b"".join(f.read_bytes() for f in files).decode("latin-1")


def reason(call: object) -> str:
    return failure_of(call).reason  # type: ignore[arg-type]


def test_child_signs_up_guardian_approves_child_logs_in(
    served: tuple[App, Client], hook: WebhookStandIn
) -> None:
    _app, client = served
    journey = Journey(client, hook)
    view = client.guardian.GetConsentRequest(pb.GetConsentRequestRequest(id=journey.request_id))
    assert view.status == pb.CONSENT_REQUEST_STATUS_PENDING
    assert view.masked_child_name == "정*이"
    assert reason(lambda: client.login(journey.email)) == "ACCOUNT_PENDING_GUARDIAN_CONSENT"
    approved = journey.approve(journey.code())
    assert approved.ward_account_id == journey.account_id
    assert journey.status() == pb.CONSENT_REQUEST_STATUS_APPROVED
    session = client.login(journey.email).session
    assert session.account_id == journey.account_id
    types = [json.loads(d.body)["type"] for d in hook.wait_for(4)]
    assert {"guardian_consent.approved", "account.activated"} <= set(types)
    # Ids only in the approval events.
    for delivery in hook.received:
        document = json.loads(delivery.body)
        if document["type"] in ("guardian_consent.approved", "account.activated"):
            assert set(document["data"]) <= {"consent_request_id", "account_id"}
    assert reason(lambda: journey.approve(journey.code())) == "CONSENT_REQUEST_CLOSED"


def test_the_guardian_must_be_an_adult_another_person_at_the_given_contact(
    served: tuple[App, Client], hook: WebhookStandIn
) -> None:
    _app, client = served
    journey = Journey(client, hook)
    code = journey.code()
    minor = new_person(birth_date="2010-01-01")
    minor = Person(minor.name, minor.birth_date, journey.guardian.phone, minor.seed)
    assert reason(lambda: journey.approve(code, journey.token(minor))) == "GUARDIAN_NOT_ADULT"
    same = Person(journey.guardian.name, "1980-01-01", journey.guardian.phone, journey.child.seed)
    assert reason(lambda: journey.approve(code, journey.token(same))) == "GUARDIAN_SAME_PERSON"
    elsewhere = Person("정보호", "1980-01-01", new_mobile_number(), str(uuid.uuid4()))
    assert reason(lambda: journey.approve(code, journey.token(elsewhere))) == "GUARDIAN_MISMATCH"
    # A right code with a wrong guardian does not use up the request: the guardian still can.
    assert journey.approve(code).ward_account_id == journey.account_id


def test_wrong_codes_are_refused_then_rate_limited(
    served: tuple[App, Client], hook: WebhookStandIn
) -> None:
    _app, client = served
    journey = Journey(client, hook)
    right = journey.code()
    wrong = "00000000" if right != "00000000" else "11111111"
    for _ in range(5):
        failure = failure_of(lambda: journey.approve(wrong))
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "CONSENT_CODE_INVALID",
        )
    limited = failure_of(lambda: journey.approve(right))
    assert (limited.code, limited.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert limited.retry_seconds is not None and limited.retry_seconds > 60


def test_an_expired_request(
    served: tuple[App, Client], hook: WebhookStandIn, clock: FakeClock
) -> None:
    _app, client = served
    journey = Journey(client, hook)
    code = journey.code()
    token = journey.token()
    clock.advance(timedelta(days=5, seconds=1))
    assert journey.status() == pb.CONSENT_REQUEST_STATUS_EXPIRED
    assert reason(lambda: journey.approve(code, token)) == "CONSENT_REQUEST_EXPIRED"
    # Before the purge runs, the same child may sign up again, with the same email: the
    # unconfirmed account is destroyed first, as the purge would.
    again = client.sign_up(
        journey.child,
        email=journey.email,
        guardian=common_pb2.Guardian(name="정보호", phone_number=journey.guardian.phone),
    )
    assert again.account.status == common_pb2.ACCOUNT_STATUS_PENDING_GUARDIAN_CONSENT
    assert again.account.id != journey.account_id
    assert journey.status() == pb.CONSENT_REQUEST_STATUS_EXPIRED


def test_unknown_requests(served: tuple[App, Client]) -> None:
    _app, client = served
    for request_id in (str(uuid.uuid4()), "", "x" * 500):
        ask = pb.GetConsentRequestRequest(id=request_id)
        failure = failure_of(functools.partial(client.guardian.GetConsentRequest, ask))
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "CONSENT_REQUEST_NOT_FOUND",
        )


def test_rejection_destroys_the_child_and_the_guardian_contact(
    served: tuple[App, Client], hook: WebhookStandIn
) -> None:
    app, client = served
    journey = Journey(client, hook)
    code = journey.code()
    ciphertexts = personal_ciphertexts(app)
    assert ciphertexts
    answer = client.guardian.RejectConsentRequest(
        pb.RejectConsentRequestRequest(id=journey.request_id, consent_code=code)
    )
    assert answer.status == pb.CONSENT_REQUEST_STATUS_REJECTED
    assert journey.status() == pb.CONSENT_REQUEST_STATUS_REJECTED
    # Acting on it again answers what GetConsentRequest reports: decided.
    assert reason(lambda: journey.approve(code)) == "CONSENT_REQUEST_CLOSED"
    resend = pb.ResendConsentNotificationRequest(id=journey.request_id)
    assert reason(lambda: client.guardian.ResendConsentNotification(resend)) == (
        "CONSENT_REQUEST_CLOSED"
    )
    assert reason(lambda: client.login(journey.email)) == "INVALID_CREDENTIALS"
    types = [json.loads(d.body)["type"] for d in hook.wait_for(3)]
    assert "guardian_consent.rejected" in types
    # Nothing about the child or the guardian is left: not the rows, not their ciphertexts in
    # the raw file (SQLite's free pages are zeroed), not the plaintext.
    app.handle(Purge())  # the purge makes deletions final on disk (SQLite's WAL)
    after, counts = all_rows(app.engine)
    assert counts["accounts"] == 0 and counts["guardian_consent_requests"] == 0
    raw = after + (raw_sqlite(app) if app.engine.dialect.name == "sqlite" else "")
    for needle in (*ciphertexts, journey.child.name, journey.guardian.phone):
        assert needle not in raw
    # The child may sign up again (same person, new verification).
    again = client.sign_up(
        journey.child,
        guardian=common_pb2.Guardian(name="정보호", phone_number=journey.guardian.phone),
    )
    assert again.account.status == common_pb2.ACCOUNT_STATUS_PENDING_GUARDIAN_CONSENT


def test_resend_gives_a_fresh_code_and_is_rate_limited(
    served: tuple[App, Client], hook: WebhookStandIn, clock: FakeClock
) -> None:
    _app, client = served
    journey = Journey(client, hook)
    old = journey.code()
    resend = pb.ResendConsentNotificationRequest(id=journey.request_id)
    assert reason(lambda: client.guardian.ResendConsentNotification(resend)) == "RATE_LIMITED"
    clock.advance(timedelta(minutes=1, seconds=1))
    client.guardian.ResendConsentNotification(resend)
    new = journey.code(sent=2)
    if new != old:  # 1 in 10^8 the fresh code is the same digits
        assert reason(lambda: journey.approve(old)) == "CONSENT_CODE_INVALID"
    assert journey.approve(new).ward_account_id == journey.account_id


def test_the_guardians_rights_over_the_ward(
    served: tuple[App, Client], hook: WebhookStandIn, clock: FakeClock
) -> None:
    _app, client = served
    journey = Journey(client, hook)
    journey.approve(journey.code())
    g = client.guardian
    token = journey.token()
    wards = g.ListWards(pb.ListWardsRequest(guardian_verification_token=token)).wards
    assert [w.id for w in wards] == [journey.account_id]
    got = g.GetWard(
        pb.GetWardRequest(guardian_verification_token=token, ward_account_id=journey.account_id)
    )
    assert got.account.name == "정아이"
    phone = new_mobile_number()
    updated = g.UpdateWard(
        pb.UpdateWardRequest(
            guardian_verification_token=token,
            ward_account_id=journey.account_id,
            phone_number=phone,
        )
    ).account
    assert updated.phone_number == "+82" + phone.replace("-", "")[1:]
    exported = json.loads(
        g.ExportWardData(
            pb.ExportWardDataRequest(
                guardian_verification_token=token, ward_account_id=journey.account_id
            )
        ).document_json
    )
    assert exported["account"]["id"] == journey.account_id
    assert exported["guardian"]["consent_status"] == "approved"
    assert exported["guardian"]["method"] == "mobile_identity_verification"
    # Another verified adult is not the guardian.
    stranger = journey.token(new_person(birth_date="1970-01-01"))
    assert (
        reason(
            lambda: g.GetWard(
                pb.GetWardRequest(
                    guardian_verification_token=stranger, ward_account_id=journey.account_id
                )
            )
        )
        == "NOT_GUARDIAN"
    )
    g.WithdrawWard(
        pb.WithdrawWardRequest(
            guardian_verification_token=token, ward_account_id=journey.account_id
        )
    )
    assert reason(lambda: client.login(journey.email)) == "INVALID_CREDENTIALS"


def test_the_guardians_rights_end_when_the_child_turns_14(
    served: tuple[App, Client], hook: WebhookStandIn, clock: FakeClock
) -> None:
    _app, client = served
    journey = Journey(client, hook)
    journey.approve(journey.code())
    clock.advance(timedelta(days=366 * 4))  # born 2016-05-05: 14 by 2030 at the latest
    token = journey.token()
    wards = client.guardian.ListWards(pb.ListWardsRequest(guardian_verification_token=token))
    assert list(wards.wards) == []
    assert (
        reason(
            lambda: client.guardian.WithdrawWard(
                pb.WithdrawWardRequest(
                    guardian_verification_token=token, ward_account_id=journey.account_id
                )
            )
        )
        == "NOT_GUARDIAN"
    )
    assert account_pb2  # the ward's own account is untouched


def test_an_approval_and_a_rejection_at_once_one_wins_the_other_is_closed(
    served: tuple[App, Client], hook: WebhookStandIn
) -> None:
    """Both queue on the child's account (PostgreSQL: held by a third transaction, the
    rejection first). They take the account's and the request's rows in one order, so the
    second one waits for the first instead of deadlocking, and then answers what
    GetConsentRequest reports."""
    app, client = served
    journey = Journey(client, hook)
    code, token = journey.code(), journey.token()
    reject = pb.RejectConsentRequestRequest(id=journey.request_id, consent_code=code)

    rejecting, approving = queued_behind(
        account_row_held(app, journey.account_id),
        lambda: reason_or_ok(lambda: client.guardian.RejectConsentRequest(reject)),
        lambda: reason_or_ok(lambda: journey.approve(code, token)),
    )
    assert sorted([rejecting, approving]) == ["CONSENT_REQUEST_CLOSED", "OK"]
    rejected = rejecting == "OK"
    assert journey.status() == (
        pb.CONSENT_REQUEST_STATUS_REJECTED if rejected else pb.CONSENT_REQUEST_STATUS_APPROVED
    )


def test_a_rejection_racing_wrong_codes_or_an_approval_never_deadlocks(
    served: tuple[App, Client], hook: WebhookStandIn
) -> None:
    """A code attempt updates the request's row twice; a rejection deletes the account (and
    with it the request). On PostgreSQL the attempt's second update checked its foreign key
    against the account the rejection held, and each waited for the other: DATABASE_UNAVAILABLE
    in most rounds before the attempt took the account's row first. Not forced, so several
    rounds: none may answer anything but what a call before or after the other would."""
    _app, client = served

    def reject(journey: Journey, code: str) -> Callable[[], str]:
        request = pb.RejectConsentRequestRequest(id=journey.request_id, consent_code=code)
        return lambda: reason_or_ok(lambda: client.guardian.RejectConsentRequest(request))

    def approve(journey: Journey, code: str, token: str) -> Callable[[], str]:
        return lambda: reason_or_ok(lambda: journey.approve(code, token))

    for _ in range(4):
        journey = Journey(client, hook)
        code = journey.code()
        wrong = f"{(int(code) + 1) % 10**8:08d}"
        rejection, *guesses = at_once(reject(journey, code), *[reject(journey, wrong)] * 3)
        assert rejection == "OK"
        assert set(guesses) <= {"CONSENT_CODE_INVALID", "CONSENT_REQUEST_CLOSED"}, guesses
        journey = Journey(client, hook)
        code, token = journey.code(), journey.token()
        answers = at_once(reject(journey, code), approve(journey, code, token))
        assert sorted(answers) == ["CONSENT_REQUEST_CLOSED", "OK"], answers


def test_resends_at_once_send_one_message(
    served: tuple[App, Client], hook: WebhookStandIn, clock: FakeClock
) -> None:
    """A minute after the first message, several resends at once: one new code goes out, the
    others answer RATE_LIMITED as a resend right after it would (on PostgreSQL they all passed
    the read of the request before the bounds were part of the write)."""
    _app, client = served
    journey = Journey(client, hook)
    journey.code()
    clock.advance(timedelta(minutes=1))
    request = pb.ResendConsentNotificationRequest(id=journey.request_id)
    resend = functools.partial(
        reason_or_ok, lambda: client.guardian.ResendConsentNotification(request)
    )
    answers = at_once(*[resend] * 6)
    assert sorted(answers) == ["OK"] + ["RATE_LIMITED"] * 5, answers
    journey.code(sent=2)
    clock.advance(timedelta(minutes=1))
    assert resend() == "OK"  # the request's budget was not used up by the refused ones


def test_a_correction_and_a_withdrawal_of_the_ward_at_once(
    served: tuple[App, Client], hook: WebhookStandIn
) -> None:
    """The withdrawal first (PostgreSQL: queued on the ward's row, the correction behind it on
    the audit chain): the correction then finds the ward withdrawn, answers NOT_GUARDIAN as a
    call after it would, and puts no name or phone back into what the withdrawal left."""
    app, client = served
    journey = Journey(client, hook)
    journey.approve(journey.code())
    token, g = journey.token(), client.guardian
    withdraw = pb.WithdrawWardRequest(
        guardian_verification_token=token, ward_account_id=journey.account_id
    )
    correct = pb.UpdateWardRequest(
        guardian_verification_token=token,
        ward_account_id=journey.account_id,
        name="정바뀜",
        phone_number=new_mobile_number(),
    )

    withdrawing, correcting = queued_behind(
        account_row_held(app, journey.account_id),
        lambda: reason_or_ok(lambda: g.WithdrawWard(withdraw)),
        lambda: reason_or_ok(lambda: g.UpdateWard(correct)),
    )
    assert withdrawing == "OK"
    # On SQLite the two ran one after the other, in either order.
    assert correcting in (
        ("NOT_GUARDIAN",) if app.engine.dialect.name == "postgresql" else ("NOT_GUARDIAN", "OK")
    )
    with app.engine.connect() as connection:
        stored = connection.execute(
            select(t.accounts.c.status, t.accounts.c.name_ct, t.accounts.c.phone_ct).where(
                t.accounts.c.id == journey.account_id
            )
        ).one()
    assert tuple(stored) == ("withdrawn", None, None)
