"""Start-up refuses a data key ring that cannot open the stored data (contract §1)."""

from __future__ import annotations

import base64
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from idservice.adapters.crypto import DEV_RING_FILENAME, DataKey, FieldCipher, KeyRing
from idservice.adapters.db import key_check, migrations
from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import ENCRYPTED_COLUMNS
from idservice.adapters.db.engine import build_engine
from idservice.bootstrap import build_app
from idservice.config import ConfigError, Settings
from tests.conftest import make_settings
from tests.support.client import new_person
from tests.support.serving import serving

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def material() -> bytes:
    return secrets.token_bytes(32)


def ring(*entries: tuple[str, bytes]) -> str:
    return KeyRing([DataKey(key_id, key) for key_id, key in entries]).serialize()


def settings_with(tmp_path: Path, database_url: str, data_keys: str | None) -> Settings:
    return make_settings(tmp_path, database_url, data_keys=data_keys)


def start(settings: Settings) -> None:
    """Build the app (migrations, key checks) and close it again."""
    build_app(settings).close()


def refusal(settings: Settings) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        start(settings)
    assert caught.value.variable == "IDSERVICE_DATA_KEYS"
    return caught.value


def sign_up_someone(settings: Settings) -> str:
    """An account with email, CI/DI and a session, plus an unused verification; its email."""
    with serving(settings) as (_, client):
        person = new_person()
        signed = client.sign_up(person)
        client.verify(new_person())
        return signed.account.email


def can_log_in(settings: Settings, email: str) -> None:
    with serving(settings) as (_, client):
        assert client.login(email).session.account_id


def registered(database_url: str) -> dict[str, str]:
    engine = build_engine(database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            c = t.key_checks.c
            rows = connection.execute(select(c.name, c.check_value)).all()
            return {name: value for name, value in rows}
    finally:
        engine.dispose()


def forget_all_checks(database_url: str) -> None:
    """As a database written before the key checks existed."""
    engine = build_engine(database_url, pool_size=1)
    try:
        with engine.begin() as connection:
            connection.execute(delete(t.key_checks))
    finally:
        engine.dispose()


def assert_no_key_material(error: Exception, *keys: bytes) -> None:
    text = str(error)
    for key in keys:
        assert base64.b64encode(key).decode() not in text
        assert key.hex() not in text


# -- the ring the data was stored under -------------------------------------------------------


def test_the_same_ring_starts_again_and_registers_the_index_and_current_key(
    tmp_path: Path, database_url: str
) -> None:
    k1 = material()
    settings = settings_with(tmp_path, database_url, ring(("k1", k1)))
    email = sign_up_someone(settings)
    start(settings)
    can_log_in(settings, email)
    assert set(registered(database_url)) == {"index", "data:k1"}


def test_an_unrelated_ring_on_an_existing_database_is_refused(
    tmp_path: Path, database_url: str
) -> None:
    old, new = material(), material()
    sign_up_someone(settings_with(tmp_path, database_url, ring(("k1", old))))

    error = refusal(settings_with(tmp_path, database_url, ring(("k9", new))))

    assert "blind-index key" in error.problem
    assert_no_key_material(error, old, new)


def test_the_same_key_id_with_other_material_is_refused(tmp_path: Path, database_url: str) -> None:
    index, k1, other = material(), material(), material()
    sign_up_someone(settings_with(tmp_path, database_url, ring(("k1", k1), ("index", index))))

    error = refusal(settings_with(tmp_path, database_url, ring(("k1", other), ("index", index))))

    assert "data key k1" in error.problem
    assert_no_key_material(error, k1, other, index)


def test_an_unrelated_ring_is_refused_even_before_anything_was_stored(
    tmp_path: Path, database_url: str
) -> None:
    start(settings_with(tmp_path, database_url, ring(("k1", material()))))
    refusal(settings_with(tmp_path, database_url, ring(("k1", material()))))


# -- rotation ---------------------------------------------------------------------------------


def test_a_key_still_encrypting_data_cannot_be_dropped_until_reencrypt(
    tmp_path: Path, database_url: str
) -> None:
    index, k1, k2 = material(), material(), material()
    first = settings_with(tmp_path, database_url, ring(("k1", k1), ("index", index)))
    rotated = settings_with(tmp_path, database_url, ring(("k2", k2), ("k1", k1), ("index", index)))
    dropped = settings_with(tmp_path, database_url, ring(("k2", k2), ("index", index)))
    email = sign_up_someone(first)
    start(rotated)  # the new key goes in front: it is registered as it starts encrypting
    assert set(registered(database_url)) == {"index", "data:k1", "data:k2"}

    error = refusal(dropped)
    assert "data key k1 is missing" in error.problem
    assert "idservice reencrypt" in error.problem

    app = build_app(rotated)
    try:
        counts = app.reencrypt()
    finally:
        app.close()
    assert counts["accounts.email_ct"] == 1
    assert set(registered(database_url)) == {"index", "data:k2"}

    start(dropped)
    can_log_in(dropped, email)
    # Going back to a ring without the key that now encrypts everything is refused too.
    assert "data key k2 is missing" in refusal(first).problem


def test_retiring_the_oldest_key_needs_its_material_as_the_index_entry(
    tmp_path: Path, database_url: str
) -> None:
    k1, k2 = material(), material()
    email = sign_up_someone(settings_with(tmp_path, database_url, ring(("k1", k1))))
    rotated = settings_with(tmp_path, database_url, ring(("k2", k2), ("k1", k1)))
    app = build_app(rotated)
    try:
        app.reencrypt()
    finally:
        app.close()

    # Without k1 the blind indexes (rooted in the last key) would change: refused.
    assert (
        "blind-index key"
        in refusal(settings_with(tmp_path, database_url, ring(("k2", k2)))).problem
    )
    retired = settings_with(tmp_path, database_url, ring(("k2", k2), ("index", k1)))
    can_log_in(retired, email)


def test_reencrypt_keeps_a_key_that_data_still_uses(tmp_path: Path, database_url: str) -> None:
    index, k1, k2 = material(), material(), material()
    sign_up_someone(settings_with(tmp_path, database_url, ring(("k1", k1), ("index", index))))
    app = build_app(
        settings_with(tmp_path, database_url, ring(("k2", k2), ("k1", k1), ("index", index)))
    )
    try:
        # Without re-encrypting, k1 still encrypts the account: it stays registered.
        cipher = app.cipher
        assert key_check.forget_unused_data_keys(app.engine, cipher, ENCRYPTED_COLUMNS) == []
    finally:
        app.close()
    assert "data:k1" in registered(database_url)


# -- development keys -------------------------------------------------------------------------


def test_a_lost_development_ring_is_refused_and_not_regenerated(
    tmp_path: Path, database_url: str
) -> None:
    settings = settings_with(tmp_path, database_url, None)
    sign_up_someone(settings)
    ring_file = settings.keys_dir / DEV_RING_FILENAME
    assert ring_file.is_file()
    ring_file.unlink()

    error = refusal(settings)

    assert "development key ring" in error.problem and "missing" in error.problem
    assert str(ring_file) in error.problem
    assert not ring_file.exists()


def test_a_development_ring_is_generated_for_an_empty_database(
    tmp_path: Path, database_url: str
) -> None:
    settings = settings_with(tmp_path, database_url, None)
    start(settings)
    start(settings)
    assert (settings.keys_dir / DEV_RING_FILENAME).is_file()
    assert set(registered(database_url)) == {"index", "data:dev1"}


# -- databases written before the checks existed ----------------------------------------------


def test_a_database_without_checks_is_probed_before_its_ring_is_registered(
    tmp_path: Path, database_url: str
) -> None:
    k1 = material()
    good = settings_with(tmp_path, database_url, ring(("k1", k1)))
    email = sign_up_someone(good)
    forget_all_checks(database_url)

    # Another key under the same id cannot open the data; another id does not hold it.
    assert (
        "data key k1 cannot open"
        in refusal(settings_with(tmp_path, database_url, ring(("k1", material())))).problem
    )
    assert (
        "encrypted under data key k1, which the ring does not hold"
        in refusal(settings_with(tmp_path, database_url, ring(("k2", material())))).problem
    )
    assert registered(database_url) == {}

    can_log_in(good, email)
    assert set(registered(database_url)) == {"index", "data:k1"}


def test_a_database_without_checks_refuses_another_index_root(
    tmp_path: Path, database_url: str
) -> None:
    k1 = material()
    sign_up_someone(settings_with(tmp_path, database_url, ring(("k1", k1), ("index", material()))))
    forget_all_checks(database_url)

    error = refusal(settings_with(tmp_path, database_url, ring(("k1", k1), ("index", material()))))

    assert "blind-index key" in error.problem


# -- two processes starting at once -----------------------------------------------------------


def _race(database_url: str, rings: list[KeyRing]) -> list[BaseException | None]:
    engine = build_engine(database_url, pool_size=2)
    try:
        migrations.upgrade(engine)
        barrier = threading.Barrier(len(rings))
        outcomes: list[BaseException | None] = [None] * len(rings)

        def run(position: int) -> None:
            barrier.wait()
            try:
                key_check.check_key_ring(
                    engine, FieldCipher(rings[position]), ENCRYPTED_COLUMNS, now=NOW
                )
            except BaseException as exc:
                outcomes[position] = exc

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(rings))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return outcomes
    finally:
        engine.dispose()


def test_first_starts_at_once_with_one_ring_both_succeed(database_url: str) -> None:
    shared = KeyRing.generate("k1")
    assert _race(database_url, [shared, shared]) == [None, None]
    assert set(registered(database_url)) == {"index", "data:k1"}


def test_first_starts_at_once_with_unrelated_rings_let_exactly_one_win(database_url: str) -> None:
    for round_ in range(3):
        if round_:
            forget_all_checks(database_url)
        rings = [KeyRing.generate("k1"), KeyRing.generate("k1")]
        outcomes = _race(database_url, rings)
        failed = [o for o in outcomes if o is not None]
        assert len(failed) == 1, outcomes
        assert isinstance(failed[0], key_check.KeyRingMismatchError), failed[0]
        winner = rings[outcomes.index(None)]
        assert registered(database_url) == {
            "index": key_check.check_value(winner.index_root.material, "index"),
            "data:k1": key_check.check_value(winner.current.material, "data"),
        }
