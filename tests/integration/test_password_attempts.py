"""Password attempts: a refused (busy) attempt never counts; replays count like logins."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import column, select, table

from idservice.adapters.hashing import Argon2Parameters, BoundedExecutor, PasswordHasher
from idservice.bootstrap import build_app
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.signup import SignUp
from tests.conftest import make_settings
from tests.support.client import STRONG_PASSWORD, new_person

accounts_table = table("accounts", column("failed_logins"), column("locked_until"))


def failed_logins(app: object) -> int:
    with app.engine.connect() as connection:  # type: ignore[attr-defined]
        return int(connection.execute(select(accounts_table.c.failed_logins)).scalar_one())


def test_server_busy_attempts_do_not_count_toward_the_lock(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", require_identity_verification=False
    )
    executor = BoundedExecutor(1, 0)
    hasher = PasswordHasher(Argon2Parameters(time_cost=1, memory_cost=1024), executor=executor)
    app = build_app(settings, hasher=hasher)
    try:
        person = new_person()
        app.handle(
            SignUp(
                email="busy@example.com",
                password=STRONG_PASSWORD,
                name=person.name,
                phone_number=person.phone,
                birth_date=person.birth_date,
                consents_given=True,
                terms_version=settings.terms_version,
                privacy_policy_version=settings.privacy_policy_version,
            ),
        )
        gate = threading.Event()
        holder = executor.submit(gate.wait, 30)  # the only worker is taken
        try:
            for _ in range(settings.lockout_threshold + 2):
                with pytest.raises(DomainError) as info:
                    app.handle(PasswordLogin(email="busy@example.com", password=STRONG_PASSWORD))
                assert info.value.reason is Reason.SERVER_BUSY
        finally:
            gate.set()
            holder.result()
        assert failed_logins(app) == 0
        issued = app.handle(PasswordLogin(email="busy@example.com", password=STRONG_PASSWORD))
        assert issued.access_token
    finally:
        app.close()
        executor.shutdown()
