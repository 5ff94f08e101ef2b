"""`idservice serve` logs one JSON object per line on stderr, with one access line per call, and
never a person's email, phone, name, CI, DI, password or token."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

from idservice.adapters.crypto import KeyRing
from idservice.adapters.identity.sandbox import sandbox_ci, sandbox_di
from idservice.v1 import account_pb2, auth_pb2, common_pb2
from idservice.v1 import guardian_consent_pb2 as pb
from tests.fakes.oidc import OidcIssuer
from tests.fakes.webhook import WebhookStandIn
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
GOOGLE_CLIENT = "journey-google-client"
ACCOUNTS = "/idservice.v1.AccountService"
AUTH = "/idservice.v1.AuthService"


class Journey:
    """Runs the calls and keeps every personal value and secret they involved: signup with
    verification, login, refresh, a child's signup and the guardian's approval, a Google login,
    consents, export and withdrawal."""

    def __init__(self, client: Client, google: OidcIssuer, hook: WebhookStandIn) -> None:
        self.client, self.google, self.hook = client, google, hook
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
        pending = client.sign_up(child, guardian=guardian)
        failure = failure_of(lambda: client.login(email, "wrong " + PASSWORD))
        assert failure.reason == "INVALID_CREDENTIALS"
        self.guardian_consents(pending.guardian_consent_request.id, guardian)
        self.sns_login()
        self.rights(refreshed.session.access_token)

    def guardian_consents(self, request_id: str, contact: common_pb2.Guardian) -> None:
        """The guardian reads the code from the webhook, verifies, and approves."""
        deadline = time.monotonic() + 15
        code = ""
        while not code and time.monotonic() < deadline:
            for delivery in self.hook.received:
                document = json.loads(delivery.body)
                if document["data"].get("consent_request_id") == request_id:
                    code = str(document["data"].get("consent_code", ""))
            time.sleep(0.05)
        assert code
        guardian = new_person(birth_date="1980-02-02", name="최보호")
        guardian = Person(guardian.name, guardian.birth_date, contact.phone_number, guardian.seed)
        self.person(guardian)
        token = self.client.verify(guardian).verification_token
        self.secrets |= {code, token}
        self.client.guardian.ApproveConsentRequest(
            pb.ApproveConsentRequestRequest(
                id=request_id, consent_code=code, guardian_verification_token=token
            )
        )

    def sns_login(self) -> None:
        email = f"sns-{uuid.uuid4().hex[:10]}@example.com"
        token = self.google.id_token(
            sub=f"g-{uuid.uuid4().hex}",
            aud=GOOGLE_CLIENT,
            nonce="n-journey",
            extra={"email": email, "email_verified": True, "name": "구글사람"},
        )
        answer = self.client.auth.SnsLogin(
            auth_pb2.SnsLoginRequest(
                provider=common_pb2.SNS_PROVIDER_GOOGLE, id_token=token, nonce="n-journey"
            )
        )
        self.secrets |= {email, token, "구글사람", answer.signup_required.sns_signup_ticket}

    def rights(self, access_token: str) -> None:
        bearer = self.client.bearer(access_token)
        self.client.accounts.UpdateConsents(
            account_pb2.UpdateConsentsRequest(marketing_opt_in=True), metadata=bearer
        )
        self.client.accounts.ExportPersonalData(
            account_pb2.ExportPersonalDataRequest(), metadata=bearer
        )
        self.client.accounts.Withdraw(
            account_pb2.WithdrawRequest(password=PASSWORD), metadata=bearer
        )


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("logger") == "idservice.access"]


def test_serve_logs_json_lines_without_personal_data(database_url: str, tmp_path: Path) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    with OidcIssuer() as google, WebhookStandIn() as hook:
        env = {
            **FAST_ARGON2,
            "IDSERVICE_DATABASE_URL": database_url,
            "IDSERVICE_DATA_KEYS": KeyRing.generate("k1").serialize(),
            "IDSERVICE_GOOGLE_CLIENT_IDS": GOOGLE_CLIENT,
            "IDSERVICE_GOOGLE_DISCOVERY_URL": google.discovery_url,
            "IDSERVICE_NOTIFY_WEBHOOK_URL": hook.url,
        }
        with ServerProcess(env, workdir, log_dir=tmp_path) as server:
            journey = Journey(Client(server.channel()), google, hook)
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
    for method in ("SignUp", "GetAccount", "UpdateConsents", "ExportPersonalData", "Withdraw"):
        assert f"{ACCOUNTS}/{method}" in methods
    for method in ("PasswordLogin", "RefreshSession"):
        assert f"{AUTH}/{method}" in methods
    assert "/idservice.v1.IdentityService/CompleteVerification" in methods
    assert f"{AUTH}/SnsLogin" in methods
    assert "/idservice.v1.GuardianConsentService/ApproveConsentRequest" in methods
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
