"""No plaintext personal data or secret in the database (raw files and every row) or the logs."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import empty_pb2
from sqlalchemy import Engine, MetaData, select

from idservice.adapters.db import tables
from idservice.adapters.identity.sandbox import sandbox_ci, sandbox_di
from idservice.bootstrap import build_app
from idservice.entrypoints.grpc.server import create_server
from idservice.v1 import account_pb2, auth_pb2, common_pb2, identity_pb2
from tests.conftest import make_settings
from tests.fakes.portone import PortOneStandIn
from tests.support.client import Client, RpcFailure, decode, new_person
from tests.support.serving import serving

SEOUL = ZoneInfo("Asia/Seoul")
SECRET = "portone-privacy-secret-W3x"
PORTONE = identity_pb2.VERIFICATION_PROVIDER_PORTONE
SANDBOX = identity_pb2.VERIFICATION_PROVIDER_SANDBOX
# Everything the flow may log through, at DEBUG: the service, its HTTP client, the database
# layer (SQL parameters included) and gRPC.
LOGGERS = ("", "idservice", "httpx", "httpcore", "sqlalchemy.engine", "alembic", "grpc")


@dataclass(frozen=True)
class Human:
    """A person of the flow: every attribute is personal data the service must not keep plain."""

    name: str
    birth_date: str
    phone_digits: str  # Korean mobile, digits only: 010XXXXXXXX
    ci: str
    di: str

    def phone_forms(self) -> list[str]:
        d = self.phone_digits
        return [
            d,
            f"{d[:3]}-{d[3:7]}-{d[7:]}",
            f"{d[:3]} {d[3:7]} {d[7:]}",
            "+82" + d[1:],
            "82" + d[1:],
            d[1:],
            f"{d[3:7]}-{d[7:]}",
            d[3:],
        ]

    def birth_forms(self) -> list[str]:
        y, m, d = self.birth_date.split("-")
        return [self.birth_date, f"{y}{m}{d}", f"{y}.{m}.{d}", f"{y}/{m}/{d}"]

    def values(self) -> list[str]:
        return [self.name, *self.phone_forms(), *self.birth_forms(), self.ci, self.di]


def random_phone() -> str:
    """A valid Korean mobile number, digits only (libphonenumber refuses 010-597x…-599x)."""
    return f"0102{uuid.uuid4().int % 10**7:07d}"


def sandbox_human(name: str, birth_date: str) -> tuple[Human, str]:
    seed = str(uuid.uuid4())
    human = Human(name, birth_date, random_phone(), sandbox_ci(seed), sandbox_di(seed))
    return human, seed


def sandbox_id(human: Human, seed: str) -> str:
    attempt = uuid.uuid4().hex[:6]
    return f"sandbox:{human.name}:{human.birth_date}:{human.phone_digits}:{seed}:{attempt}"


def child_birth_date(years: int) -> str:
    anchor = datetime.now(SEOUL).date() - timedelta(days=120)
    try:
        return anchor.replace(year=anchor.year - years).isoformat()
    except ValueError:  # 29 February in a non-leap year
        return anchor.replace(year=anchor.year - years, day=28).isoformat()


@dataclass
class Secrets:
    """Everything that must never be found at rest or in logs."""

    values: set[str] = field(default_factory=set)

    def add(self, *values: str) -> None:
        for value in values:
            assert value, "an empty secret would match everything"
            self.values.add(value)
            # The same text as JSON with \\uXXXX escapes (json.dumps' default).
            escaped = json.dumps(value)[1:-1]
            if escaped != value:
                self.values.add(escaped)

    def found_in(self, text: str) -> list[str]:
        return sorted(v for v in self.values if _needle(v).search(text))

    def found_in_bytes(self, data: bytes) -> list[str]:
        return sorted(v for v in self.values if _byte_needle(v).search(data))


# Digits-only forms (a phone's last eight digits, 19900115) are short enough to turn up inside
# random hex (hashes, UUIDs, nonces) by chance; they count only as a whole token.
_NUMERIC = re.compile(r"[0-9+ .\-/]+")
_OUTSIDE_TOKEN = "(?<![0-9A-Za-z]){}(?![0-9A-Za-z])"


@functools.cache
def _needle(value: str) -> re.Pattern[str]:
    if _NUMERIC.fullmatch(value):
        return re.compile(_OUTSIDE_TOKEN.format(re.escape(value)))
    return re.compile(re.escape(value))


@functools.cache
def _byte_needle(value: str) -> re.Pattern[bytes]:
    return re.compile(_needle(value).pattern.encode("utf-8"))


def fails(call: Callable[[], object]) -> RpcFailure:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return decode(info.value)


def all_rows(engine: Engine) -> tuple[str, dict[str, int]]:
    """Every value of every row of every table as text, and the row count of each table."""
    metadata = MetaData()
    metadata.reflect(bind=engine)
    parts: list[str] = []
    counts: dict[str, int] = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            rows = connection.execute(select(table)).all()
            counts[table.name] = len(rows)
            for row in rows:
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        parts.append(bytes(value).decode("utf-8", errors="replace"))
                    else:
                        parts.append(str(value))
    return "\n".join(parts), counts


def sqlite_files(tmp_path: Path) -> bytes:
    """The raw bytes of the SQLite database and its -wal/-shm/-journal companions."""
    return b"".join(path.read_bytes() for path in sorted(tmp_path.glob("idservice.db*")))


# What every LogRecord carries; anything else on a record came from `extra=` and is checked too.
STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def log_text(records: Iterable[logging.LogRecord], formatted: str) -> str:
    """The formatted log output, and each record's message, arguments, traceback and extras.

    Not the numeric bookkeeping (times, thread ids): random digits there could match a phone
    number by chance.
    """
    parts = [formatted]
    for record in records:
        parts += [record.getMessage(), repr(record.args), record.exc_text or ""]
        parts.append(record.stack_info or "")
        parts += [
            repr(value)
            for key, value in vars(record).items()
            if key not in STANDARD_RECORD_ATTRIBUTES
        ]
    return "\n".join(parts)


def run_flow(
    client: Client, sandbox: Client, portone: PortOneStandIn, secrets: Secrets
) -> list[str]:
    """Sign people up through PortOne and the sandbox, with error paths; returns account ids.

    `client` serves the PortOne deployment; `sandbox` a second deployment on the same database
    and keys whose provider is the sandbox (a deployment serves only its configured provider).
    """
    account_ids: list[str] = []

    def record_session(session: common_pb2.Session) -> None:
        secrets.add(session.access_token, session.refresh_token)

    # 1. A PortOne person (known CI/DI), after one upstream 500 (a logged retry).
    owner = Human(
        name="남궁비밀",
        birth_date="1983-10-27",
        phone_digits=random_phone(),
        ci=base64.b64encode(hashlib.sha512(uuid.uuid4().bytes).digest()).decode(),  # 88 chars
        di=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),  # 64 chars
    )
    secrets.add(*owner.values())
    portone.add_verified(
        "iv-privacy-1",
        name=owner.name,
        phone=owner.phone_digits,
        birth_date=owner.birth_date,
        ci=owner.ci,
        di=owner.di,
    )
    portone.add_failure("iv-privacy-1", 500, times=1)
    done = client.identity.CompleteVerification(
        identity_pb2.CompleteVerificationRequest(provider=PORTONE, verification_id="iv-privacy-1")
    )
    secrets.add(done.verification_token)
    owner_email, owner_password = "Privacy.Owner-Q7@Example.com", "violet anchor meadow quartz 51"
    secrets.add(owner_email, "Privacy.Owner-Q7@example.com", "privacy.owner-q7@example.com")
    secrets.add("Privacy.Owner-Q7", "privacy.owner-q7", owner_password)
    signed = client.accounts.SignUp(
        account_pb2.SignUpRequest(
            idempotency_key=f"signup-{uuid.uuid4().hex}",
            email=owner_email,
            password=owner_password,
            verification_token=done.verification_token,
            consents=client.consents(marketing=True),
        )
    )
    account_ids.append(signed.account.id)
    record_session(signed.session)
    login = client.login("privacy.owner-q7@example.com", owner_password).session
    record_session(login)
    refreshed = client.auth.RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=login.refresh_token)
    ).session
    record_session(refreshed)
    client.auth.IntrospectToken(
        auth_pb2.IntrospectTokenRequest(access_token=refreshed.access_token)
    )
    client.accounts.GetAccount(
        account_pb2.GetAccountRequest(), metadata=client.bearer(refreshed.access_token)
    )
    client.auth.Logout(auth_pb2.LogoutRequest(refresh_token=refreshed.refresh_token))
    wrong_password = "wrong horse battery stapler 77"
    secrets.add(wrong_password)
    fails(lambda: client.login(owner_email, wrong_password))

    # 2. A sandbox adult who types name, birth date and phone as well.
    adult, adult_seed = sandbox_human("선우기록", "1979-08-14")
    secrets.add(*adult.values())
    adult_vid = sandbox_id(adult, adult_seed)
    secrets.add(adult_vid)
    adult_done = sandbox.identity.CompleteVerification(
        identity_pb2.CompleteVerificationRequest(provider=SANDBOX, verification_id=adult_vid)
    )
    secrets.add(adult_done.verification_token)
    adult_email, adult_password = "sunwoo.record-k2@example.com", "lantern orbit velvet canyon 48"
    secrets.add(adult_email, "sunwoo.record-k2", adult_password)
    d = adult.phone_digits
    adult_signed = client.accounts.SignUp(
        account_pb2.SignUpRequest(
            email=adult_email,
            password=adult_password,
            name=adult.name,
            birth_date=adult.birth_date,
            phone_number=f"{d[:3]} {d[3:7]} {d[7:]}",
            verification_token=adult_done.verification_token,
            consents=client.consents(),
        )
    )
    account_ids.append(adult_signed.account.id)
    record_session(adult_signed.session)
    client.identity.CheckAge(
        identity_pb2.CheckAgeRequest(
            policy=identity_pb2.AGE_POLICY_KR_ADULT, account=empty_pb2.Empty()
        ),
        metadata=client.bearer(adult_signed.session.access_token),
    )

    # 3. A child under 14 with the guardian's name and contact (pending consent).
    child, child_seed = sandbox_human("제갈어린", child_birth_date(9))
    guardian_name, guardian_phone = "황보보호", random_phone()
    secrets.add(*child.values(), guardian_name, guardian_phone, "+82" + guardian_phone[1:])
    child_vid = sandbox_id(child, child_seed)
    secrets.add(child_vid)
    child_done = sandbox.identity.CompleteVerification(
        identity_pb2.CompleteVerificationRequest(provider=SANDBOX, verification_id=child_vid)
    )
    secrets.add(child_done.verification_token)
    child_email, child_password = "little.jegal-z5@example.com", "pebble comet willow harbor 36"
    secrets.add(child_email, "little.jegal-z5", child_password)
    pending = client.accounts.SignUp(
        account_pb2.SignUpRequest(
            email=child_email,
            password=child_password,
            verification_token=child_done.verification_token,
            consents=client.consents(),
            guardian=common_pb2.Guardian(name=guardian_name, phone_number=guardian_phone),
        )
    )
    assert pending.account.status == common_pb2.ACCOUNT_STATUS_PENDING_GUARDIAN_CONSENT
    account_ids.append(pending.account.id)

    # 4. A verified person who has not signed up yet (the verification waits, encrypted).
    waiting, waiting_seed = sandbox_human("독고미사", "1995-12-09")
    secrets.add(*waiting.values())
    waiting_vid = sandbox_id(waiting, waiting_seed)
    secrets.add(waiting_vid)
    waiting_done = sandbox.identity.CompleteVerification(
        identity_pb2.CompleteVerificationRequest(provider=SANDBOX, verification_id=waiting_vid)
    )
    secrets.add(waiting_done.verification_token)
    client.identity.CheckAge(
        identity_pb2.CheckAgeRequest(
            policy=identity_pb2.AGE_POLICY_KR_YOUTH_PROTECTION,
            verification_token=waiting_done.verification_token,
        )
    )

    # 5. Error paths: a mismatch, a taken email, the same person again, a declared birth date.
    mismatch_name = "엉뚱다름"
    secrets.add(mismatch_name)
    mismatch = fails(
        lambda: client.accounts.SignUp(
            account_pb2.SignUpRequest(
                email="another.waiting-m4@example.com",
                password="marble thistle ocean piano 22",
                name=mismatch_name,
                verification_token=waiting_done.verification_token,
                consents=client.consents(),
            )
        )
    )
    assert mismatch.reason == "VERIFICATION_MISMATCH"
    taken = fails(
        lambda: client.accounts.SignUp(
            account_pb2.SignUpRequest(
                email=owner_email,
                password="marble thistle ocean piano 22",
                verification_token=waiting_done.verification_token,
                consents=client.consents(),
            )
        )
    )
    assert taken.reason == "EMAIL_TAKEN"
    again_vid = sandbox_id(adult, adult_seed)
    secrets.add(again_vid)
    again = sandbox.identity.CompleteVerification(
        identity_pb2.CompleteVerificationRequest(provider=SANDBOX, verification_id=again_vid)
    )
    secrets.add(again.verification_token)
    assert again.duplicate.exists
    duplicate = fails(
        lambda: client.accounts.SignUp(
            account_pb2.SignUpRequest(
                email="second.try-d8@example.com",
                password="marble thistle ocean piano 22",
                verification_token=again.verification_token,
                consents=client.consents(),
            )
        )
    )
    assert duplicate.reason == "IDENTITY_ALREADY_REGISTERED"
    declared = "1966-02-03"
    secrets.add(declared, "19660203")
    client.identity.CheckAge(
        identity_pb2.CheckAgeRequest(policy=identity_pb2.AGE_POLICY_KR_ADULT, birth_date=declared)
    )
    secrets.add(SECRET)
    return account_ids


def test_no_plaintext_personal_data_or_secrets_at_rest_or_in_logs(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    secrets = Secrets()
    is_sqlite = database_url.startswith("sqlite")
    with PortOneStandIn(secret=SECRET) as portone:
        settings = make_settings(
            tmp_path,
            database_url,
            identity_provider="portone",
            portone_api_secret=SECRET,
            portone_api_base=portone.base_url,
        )
        sandbox_settings = replace(settings, identity_provider="sandbox", portone_api_secret=None)
        app = build_app(settings)
        try:
            running = create_server(app, "127.0.0.1:0")
            try:
                with (
                    serving(sandbox_settings) as (_, sandbox),
                    grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
                ):
                    client = Client(channel, terms_version=settings.terms_version)
                    account_ids = run_flow(client, sandbox, portone, secrets)
            finally:
                running.halt()

            rows, counts = all_rows(app.engine)
            # The dump is real: three accounts, and their (non-secret) ids are in it.
            assert counts["accounts"] == 3
            assert counts["verifications"] >= 5
            assert all(account_id in rows for account_id in account_ids)
            assert secrets.found_in(rows) == []

            if is_sqlite:
                raw = sqlite_files(tmp_path)
                assert account_ids[0].encode() in raw
                assert secrets.found_in_bytes(raw) == []
        finally:
            app.close()
    if is_sqlite:
        # After the last connection closed (WAL checkpointed into the main file).
        assert secrets.found_in_bytes(sqlite_files(tmp_path)) == []

    records = caplog.records
    portone_warnings = [r for r in records if r.name.startswith("idservice.adapters.identity")]
    assert portone_warnings, "the flow should have logged the PortOne retry"
    assert secrets.found_in(log_text(records, caplog.text)) == []


def test_stored_idempotent_response_does_not_open_with_the_data_keys_alone(
    tmp_path: Path, database_url: str
) -> None:
    with serving(make_settings(tmp_path, database_url)) as (app, client):
        request = client.signup_request(new_person(), idempotency_key="sealed-tokens")
        first = client.accounts.SignUp(request)
        with app.engine.connect() as connection:
            (row,) = connection.execute(
                select(tables.idempotency_keys.c.key_hash, tables.idempotency_keys.c.response_ct)
            ).all()
        # Everything the data keys open: the account id, but no token of the session.
        stored = bytes.fromhex(
            app.cipher.decrypt(row.response_ct, context=f"idempotency:{row.key_hash}")
        ).decode()
        assert first.account.id in stored
        for token in (first.session.access_token, first.session.refresh_token):
            assert token not in stored
        # The caller who knows the key and the password still gets the first result back.
        again = client.accounts.SignUp(request)
        assert again.session.refresh_token == first.session.refresh_token
