"""Key rotation: after `reencrypt`, every registered encrypted column is under the new key and
the old key can leave the ring with nothing lost."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from idservice.adapters.db.encrypted_columns import ENCRYPTED_COLUMNS
from idservice.bootstrap import App
from idservice.domain.audit import AuditAction
from idservice.domain.sns import SnsProfile, SnsProvider
from idservice.service_layer.audit import VerifyAccessAudit, record_access
from idservice.service_layer.sns_login import new_link
from idservice.v1 import account_pb2, common_pb2
from tests.conftest import make_settings
from tests.support.client import Client, new_person
from tests.support.serving import serving


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _ciphertexts(app: App) -> dict[str, list[str]]:
    """Every stored value of every registered column."""
    found: dict[str, list[str]] = {}
    with app.engine.connect() as connection:
        for entry in ENCRYPTED_COLUMNS:
            column = entry.table.c[entry.column]
            values = connection.execute(select(column).where(column.is_not(None))).scalars()
            found[f"{entry.table.name}.{entry.column}"] = list(values)
    return found


def _fill_every_encrypted_column(app: App, client: Client) -> str:
    """An adult (idempotent signup) with a Kakao link, a child with a guardian, an unused
    verification, an SNS signup ticket, and the connection log of those calls."""
    email = f"rotate-{uuid.uuid4().hex[:8]}@example.com"
    adult = client.sign_up(new_person(), email=email, idempotency_key=str(uuid.uuid4()))
    now = datetime.now(UTC)
    profile = SnsProfile(SnsProvider.KAKAO, "kakao-1", nickname="라이언", picture_url="https://p")
    with app.deps.uow() as tx:
        tx.sns_identities.add(new_link(adult.account.id, profile, now=now))
        tx.signup_tickets.add("f" * 64, profile, now=now, expires_at=now + timedelta(minutes=15))
        # An access-audit record (its client address is encrypted, and hashed into the chain).
        record_access(
            tx,
            actor="claimed:support-tool",
            guardian_ci=None,
            client="192.0.2.1",
            subject_account_id=adult.account.id,
            action=AuditAction.GET_WARD,
            now=now,
        )
        tx.commit()
    child = new_person(birth_date="2018-05-05")
    client.sign_up(
        child,
        guardian=common_pb2.Guardian(name="김보호", phone_number="010-9876-5432"),
    )
    client.verify(new_person())  # a verification waiting to be used
    # The calls' connection-log entries (with the client's address) are written now, not in
    # the background a second later.
    assert app.connections.flush() > 0
    return email


def test_rotation_moves_every_column_and_the_old_key_can_go(
    tmp_path: Path, database_url: str
) -> None:
    old, new, index = _key(), _key(), _key()
    first = make_settings(tmp_path, database_url, data_keys=f"k1:{old},index:{index}")
    with serving(first) as (app, client):
        email = _fill_every_encrypted_column(app, client)
        before = _ciphertexts(app)
    assert all(before.values()), {k: len(v) for k, v in before.items()}

    rotated = make_settings(tmp_path, database_url, data_keys=f"k2:{new},k1:{old},index:{index}")
    with serving(rotated) as (app, _client):
        counts = app.reencrypt()
        after = _ciphertexts(app)
        # Re-encrypted client addresses still hash into the access audit's chain as before.
        assert app.handle(VerifyAccessAudit()).broken is None
    assert set(counts) == set(before)
    assert all(counts[column] == len(values) for column, values in before.items()), counts
    assert all(value.startswith("v1.k2.") for values in after.values() for value in values)

    dropped = make_settings(tmp_path, database_url, data_keys=f"k2:{new},index:{index}")
    with serving(dropped) as (_app, client):
        session = client.login(email).session
        account = client.accounts.GetAccount(
            account_pb2.GetAccountRequest(), metadata=client.bearer(session.access_token)
        ).account
    assert account.email == email and account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
