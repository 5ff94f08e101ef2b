"""`idservice serve` logs one JSON object per line on stderr, with one access line per call, and
never a person's email, phone, name, CI, DI, password or token."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

from idservice.adapters.crypto import KeyRing
from idservice.adapters.identity.sandbox import sandbox_ci, sandbox_di
from idservice.v1 import account_pb2, auth_pb2, common_pb2
from tests.support.client import Client, Person, failure_of, new_mobile_number, new_person
from tests.support.json_logs import log_lines
from tests.support.server_process import ServerProcess

pytestmark = pytest.mark.slow

FAST_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
}
PASSWORD = "log-journey horse battery staple"
REQUEST_ID = f"journey-{uuid.uuid4()}"
ACCOUNTS = "/idservice.v1.AccountService"
AUTH = "/idservice.v1.AuthService"


class Journey:
    """Runs the calls and keeps every personal value and secret they involved."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.secrets: set[str] = {PASSWORD}
        self.account_id = ""

    def person(self, person: Person) -> None:
        e164 = phonenumbers.format_number(
            phonenumbers.parse(person.phone, "KR"), phonenumbers.PhoneNumberFormat.E164
        )
        self.secrets |= {person.name, person.phone, person.phone.replace("-", ""), e164}
        self.secrets |= {sandbox_ci(person.seed), sandbox_di(person.seed), person.seed}

    def run(self) -> None:
        client, adult = self.client, new_person(name="이기록")
        self.person(adult)
        verification = client.verify(adult)
        email = f"journey-{uuid.uuid4().hex[:10]}@example.com"
        self.secrets |= {email, verification.verification_token}
        signed_up = client.accounts.SignUp(
            client.signup_request(
                adult,
                email=email,
                password=PASSWORD,
                verification_token=verification.verification_token,
            ),
            metadata=(("x-request-id", REQUEST_ID),),
        )
        self.account_id = signed_up.account.id
        login = client.login(email, PASSWORD)
        refreshed = client.auth.RefreshSession(
            auth_pb2.RefreshSessionRequest(refresh_token=login.session.refresh_token)
        )
        for session in (signed_up.session, login.session, refreshed.session):
            self.secrets |= {session.access_token, session.refresh_token}
        client.accounts.GetAccount(
            account_pb2.GetAccountRequest(),
            metadata=client.bearer(refreshed.session.access_token),
        )
        child = new_person(birth_date="2018-05-05", name="박어린")
        guardian = common_pb2.Guardian(name="최보호", phone_number=new_mobile_number())
        self.person(child)
        self.secrets |= {guardian.name, guardian.phone_number}
        client.sign_up(child, guardian=guardian)
        failure = failure_of(lambda: client.login(email, "wrong " + PASSWORD))
        assert failure.reason == "INVALID_CREDENTIALS"


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("logger") == "idservice.access"]


def test_serve_logs_json_lines_without_personal_data(database_url: str, tmp_path: Path) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {
        **FAST_ARGON2,
        "IDSERVICE_DATABASE_URL": database_url,
        "IDSERVICE_DATA_KEYS": KeyRing.generate("k1").serialize(),
    }
    with ServerProcess(env, workdir, log_dir=tmp_path) as server:
        journey = Journey(Client(server.channel()))
        journey.run()
        assert server.terminate() == 0, server.logs()
    text = server.stderr_path.read_text(encoding="utf-8")
    lines = log_lines(text)

    for line in lines:
        assert {"timestamp", "level", "logger", "event"} <= set(line), line
    events = [line["event"] for line in lines]
    assert any(event.startswith("idservice listening on") for event in events), events
    assert "stopped" in events

    calls = access_lines(lines)
    assert all(line["event"] == "rpc" and line["request_id"] for line in calls), calls
    assert all(isinstance(line["duration_ms"], int | float) for line in calls)
    methods = [line["method"] for line in calls]
    for method in ("SignUp", "GetAccount"):
        assert f"{ACCOUNTS}/{method}" in methods
    for method in ("PasswordLogin", "RefreshSession"):
        assert f"{AUTH}/{method}" in methods
    assert "/idservice.v1.IdentityService/CompleteVerification" in methods
    signup = next(line for line in calls if line["request_id"] == REQUEST_ID)
    assert (signup["method"], signup["code"]) == (f"{ACCOUNTS}/SignUp", "OK")
    get_account = next(line for line in calls if line["method"] == f"{ACCOUNTS}/GetAccount")
    assert get_account["account_id"] == journey.account_id
    failed = [line for line in calls if line.get("reason") == "INVALID_CREDENTIALS"]
    assert [(line["method"], line["code"]) for line in failed] == [
        (f"{AUTH}/PasswordLogin", "UNAUTHENTICATED")
    ]
    assert failed[0]["account_id"] is None

    # Raw lines, and the decoded values (in case something was escaped in the JSON text).
    decoded = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    for secret in sorted(journey.secrets):
        assert secret not in text, secret
        assert secret not in decoded, secret
