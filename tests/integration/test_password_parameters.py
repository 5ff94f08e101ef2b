"""After IDSERVICE_ARGON2_* is raised, an unknown email costs what a typical stored hash costs.

Both databases; the real Argon2 hasher, whose worker pool records the stored hash each
verification ran against, so the test asserts the parameters spent, never wall-clock time.
"""

from __future__ import annotations

from pathlib import Path

import argon2
import pytest
from sqlalchemy import select

from idservice.adapters.db.password_parameters import sample_password_hashes
from idservice.adapters.db.tables import accounts
from idservice.adapters.hashing import Argon2Parameters, PasswordHasher
from idservice.bootstrap import App, build_app
from idservice.config import Settings
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.signup import SignUp
from tests.conftest import TEST_ARGON2, make_settings
from tests.support.client import STRONG_PASSWORD, new_person
from tests.support.recording import RecordingExecutor

# The accounts were made under the test suite's (cheap) parameters; the operator then raised
# them. Both stay cheap enough for a test.
OLD = Argon2Parameters(
    time_cost=TEST_ARGON2["argon2_time_cost"],
    memory_cost=TEST_ARGON2["argon2_memory_cost"],
    parallelism=TEST_ARGON2["argon2_parallelism"],
)
NEW = Argon2Parameters(time_cost=2, memory_cost=4096, parallelism=1)


def cost(params: argon2.Parameters) -> tuple[int, int, int]:
    return (params.time_cost, params.memory_cost, params.parallelism)


def sign_up(app: App, email: str) -> None:
    person = new_person()
    app.handle(
        SignUp(
            email=email,
            password=STRONG_PASSWORD,
            name=person.name,
            phone_number=person.phone,
            birth_date=person.birth_date,
            consents_given=True,
            terms_version=app.settings.terms_version,
            privacy_policy_version=app.settings.privacy_policy_version,
        ),
    )


def refused_login(app: App, email: str, password: str) -> Reason:
    with pytest.raises(DomainError) as caught:
        app.handle(PasswordLogin(email=email, password=password))
    return caught.value.reason


def stored_hashes(app: App) -> list[str]:
    with app.engine.connect() as connection:
        return [str(h) for h in connection.execute(select(accounts.c.password_hash)).scalars()]


@pytest.fixture
def old_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url, require_identity_verification=False)


def test_unknown_email_costs_the_parameters_of_the_stored_old_hashes(
    old_settings: Settings,
) -> None:
    old_app = build_app(old_settings)
    try:
        for i in range(3):
            sign_up(old_app, f"old-{i}@example.com")
        (stored, *_) = stored_hashes(old_app)
    finally:
        old_app.close()
    assert cost(argon2.extract_parameters(stored)) == (1, 1024, 1)

    recorder = RecordingExecutor()
    hasher = PasswordHasher(NEW, executor=recorder)
    app = build_app(old_settings, hasher=hasher)
    try:
        assert refused_login(app, "old-0@example.com", "not the password") is (
            Reason.INVALID_CREDENTIALS
        )
        assert refused_login(app, "nobody@example.com", "not the password") is (
            Reason.INVALID_CREDENTIALS
        )
        assert refused_login(app, "not an email", "not the password") is (
            Reason.INVALID_CREDENTIALS
        )
        wrong_password, unknown_email, bad_email = recorder.verified_parameters()
        assert cost(unknown_email) == cost(wrong_password) == cost(bad_email) == (1, 1024, 1)
        assert unknown_email == argon2.extract_parameters(stored)
        # New hashes still use the raised parameters (a right password re-hashes).
        app.handle(PasswordLogin(email="old-1@example.com", password=STRONG_PASSWORD))
        rehashed = {cost(argon2.extract_parameters(h)) for h in stored_hashes(app)}
        assert rehashed == {(1, 1024, 1), (2, 4096, 1)}
    finally:
        app.close()
        recorder.shutdown()


def test_without_stored_hashes_the_decoy_uses_the_configured_parameters(
    old_settings: Settings,
) -> None:
    recorder = RecordingExecutor()
    app = build_app(old_settings, hasher=PasswordHasher(NEW, executor=recorder))
    try:
        assert refused_login(app, "nobody@example.com", "not the password") is (
            Reason.INVALID_CREDENTIALS
        )
        assert [cost(p) for p in recorder.verified_parameters()] == [(2, 4096, 1)]
    finally:
        app.close()
        recorder.shutdown()


def test_the_sample_reads_each_password_hash_once_and_wraps_round(old_settings: Settings) -> None:
    app = build_app(old_settings)
    try:
        for i in range(4):
            sign_up(app, f"sample-{i}@example.com")
        everything = sorted(stored_hashes(app))
        for _ in range(5):  # random starting points; every one must wrap round to the rest
            assert sorted(sample_password_hashes(app.engine)) == everything
            part = sample_password_hashes(app.engine, limit=2)
            assert len(set(part)) == 2 and set(part) <= set(everything)
    finally:
        app.close()
