"""The access audit over gRPC: a guardian's calls write hash-chained records (who, when, from
where, whose data, what), `idservice audit verify` passes on them, and names the seq where one
record was altered, deleted or inserted directly in the database; with mutual TLS the calling
service is the subject of its client certificate."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import delete, insert, select, update

from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import AUDIT_CLIENT_IP
from idservice.bootstrap import App, build_app
from idservice.domain import audit
from idservice.domain.audit import ChainLink
from idservice.entrypoints.grpc.server import create_server
from idservice.v1 import guardian_consent_pb2 as pb
from tests.conftest import TEST_DATA_KEYS, make_settings
from tests.e2e.test_guardian_consent import Journey
from tests.fakes.webhook import WebhookStandIn
from tests.support.client import Client, new_mobile_number
from tests.support.server_process import run_idservice
from tests.support.serving import serving
from tests.support.tls import TestAuthority

CALLER = (("x-caller-service", "app-backend"),)
ACTIONS = [
    "guardian.list_wards",
    "guardian.get_ward",
    "guardian.update_ward",
    "guardian.export_ward_data",
    "guardian.withdraw_ward",
]


@pytest.fixture
def hook() -> Iterator[WebhookStandIn]:
    with WebhookStandIn() as stand_in:
        yield stand_in


def guardian_calls(client: Client, journey: Journey, *, metadata: Any = CALLER) -> None:
    """Every guardian call on the approved ward, in ACTIONS order."""
    g, token = client.guardian, journey.token()
    ward = {"guardian_verification_token": token, "ward_account_id": journey.account_id}
    g.ListWards(pb.ListWardsRequest(guardian_verification_token=token), metadata=metadata)
    g.GetWard(pb.GetWardRequest(**ward), metadata=metadata)
    g.UpdateWard(pb.UpdateWardRequest(**ward, phone_number=new_mobile_number()), metadata=metadata)
    g.ExportWardData(pb.ExportWardDataRequest(**ward), metadata=metadata)
    g.WithdrawWard(pb.WithdrawWardRequest(**ward), metadata=metadata)


def audit_rows(app: App) -> list[Any]:
    with app.engine.connect() as connection:
        return list(connection.execute(select(t.access_audit).order_by(t.access_audit.c.seq)).all())


def guardian_index(app: App, journey: Journey) -> str:
    c = t.guardian_consent_requests.c
    with app.engine.connect() as connection:
        found = connection.execute(
            select(c.guardian_ci_index).where(c.account_id == journey.account_id)
        ).scalar_one()
    assert isinstance(found, str)
    return found


@pytest.fixture
def audited(
    tmp_path: Path, database_url: str, hook: WebhookStandIn
) -> Iterator[tuple[App, Journey]]:
    """A served app on which a guardian made every call on their ward."""
    settings = make_settings(tmp_path, database_url, notify_webhook_url=hook.url)
    with serving(settings) as (app, client):
        journey = Journey(client, hook)
        journey.approve(journey.code())
        index = guardian_index(app, journey)
        guardian_calls(client, journey)
        rows = audit_rows(app)
        assert [row.action for row in rows] == ACTIONS
        for row in rows:
            assert (row.actor, row.actor_guardian_index) == ("claimed:app-backend", index)
            assert row.subject_account_id == journey.account_id
            client_ip = AUDIT_CLIENT_IP.decrypt(app.cipher, str(row.seq), row.client_ip_ct)
            assert client_ip == "127.0.0.1"
        yield app, journey


def verify_command(tmp_path: Path, database_url: str, journey: Journey) -> tuple[int, str]:
    done = run_idservice(
        "audit",
        "verify",
        env={"IDSERVICE_DATABASE_URL": database_url, "IDSERVICE_DATA_KEYS": TEST_DATA_KEYS},
        cwd=tmp_path,
    )
    # Seqs and kinds only: nothing about the ward, the guardian or the caller's address.
    for personal in (journey.account_id, journey.child.name, journey.guardian.phone, "127.0.0"):
        assert personal not in done.stdout + done.stderr
    return done.returncode, done.stdout


def test_guardian_calls_are_audited_and_the_chain_verifies(
    audited: tuple[App, Journey], tmp_path: Path, database_url: str
) -> None:
    _app, journey = audited
    code, out = verify_command(tmp_path, database_url, journey)
    assert code == 0, out
    assert out.splitlines()[0] == "records checked: 5"
    assert out.splitlines()[1].startswith("ok (last seq 5, hash ")


def _insert_after_tail(connection: Any, last: Any) -> None:
    """A record well chained after the newest, as a forger without the tail row would add it."""
    record = audit.next_record(
        ChainLink(last.seq, last.row_hash),
        occurred_at=last.occurred_at,
        actor=last.actor,
        actor_guardian_index=last.actor_guardian_index,
        client_digest="",
        subject_account_id=str(uuid.uuid4()),
        action="guardian.get_ward",
    )
    connection.execute(
        insert(t.access_audit).values(
            seq=record.seq,
            occurred_at=record.occurred_at,
            actor=record.actor,
            actor_guardian_index=record.actor_guardian_index,
            client_ip_ct=None,
            subject_account_id=record.subject_account_id,
            action=record.action,
            prev_hash=record.prev_hash,
            row_hash=record.row_hash,
        )
    )


@pytest.mark.parametrize(
    ("tampering", "broken"),
    [
        ("altered", "seq 2: its content does not match"),
        ("deleted", "seq 3: the record is missing from the chain (deleted)"),
        ("inserted", "seq 6: the record is no part of the chain (inserted)"),
    ],
)
def test_audit_verify_names_a_tampered_record(
    audited: tuple[App, Journey], tmp_path: Path, database_url: str, tampering: str, broken: str
) -> None:
    app, journey = audited
    a = t.access_audit.c
    newest = audit_rows(app)[-1]
    with app.engine.begin() as connection:
        if tampering == "altered":
            connection.execute(
                update(t.access_audit).where(a.seq == 2).values(action="guardian.list_wards")
            )
        elif tampering == "deleted":
            connection.execute(delete(t.access_audit).where(a.seq == 3))
        else:
            _insert_after_tail(connection, newest)
    code, out = verify_command(tmp_path, database_url, journey)
    assert code == 1, out
    assert out.splitlines()[-1].startswith(f"broken at {broken}"), out


def test_with_mutual_tls_the_caller_is_its_certificate(
    tmp_path: Path, hook: WebhookStandIn
) -> None:
    authority = TestAuthority()
    tls = authority.write_server_files(tmp_path)
    caller = authority.issue("app-backend", "Example Corp", server=False)
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'mtls.db'}", notify_webhook_url=hook.url, **tls
    )
    app = build_app(settings)
    running = create_server(app, "127.0.0.1:0")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=authority.pem,
        private_key=caller.key,
        certificate_chain=caller.certificate,
    )
    try:
        with grpc.secure_channel(f"127.0.0.1:{running.port}", credentials) as channel:
            client = Client(channel, terms_version=settings.terms_version)
            journey = Journey(client, hook)
            journey.approve(journey.code())
            # A name claimed in metadata does not override the certificate.
            guardian_calls(client, journey, metadata=(("x-caller-service", "impostor"),))
        actors = {row.actor for row in audit_rows(app)}
    finally:
        running.halt()
        app.close()
    [actor] = actors
    assert actor.startswith("cert:") and "CN=app-backend" in actor and "O=Example Corp" in actor


def test_audit_verify_help_says_what_it_does(tmp_path: Path) -> None:
    done = run_idservice("audit", "verify", "--help", env={}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _usage, description, *rest = done.stdout.split("\n\n")
    assert "hash chain" in description and "exits 1" in description.replace("\n", " ")
    assert "IDSERVICE_*" in " ".join(rest).replace("\n", " ")
    assert list(tmp_path.iterdir()) == []
