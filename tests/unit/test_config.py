"""Settings: every IDSERVICE_* value is validated once and a bad one names its variable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from idservice.config import ConfigError, Settings, parse_duration


def test_defaults_match_the_contract() -> None:
    s = Settings.from_env({})
    assert s.env == "development"
    assert s.listen == "127.0.0.1:50051"
    assert s.database_url == "sqlite:///./var/idservice.db"
    assert s.identity_provider == "sandbox"
    assert s.require_identity_verification is True
    assert (s.terms_version, s.privacy_policy_version) == ("2024-05-15", "2024-05-15")
    assert (s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism) == (2, 19456, 1)
    assert s.guardian_consent_window == timedelta(days=5)
    assert s.rejoin_cooldown == timedelta(days=30)
    assert s.connection_log_retention == timedelta(days=90)
    assert (s.lockout_threshold, s.lockout_duration) == (5, timedelta(minutes=15))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("5d", timedelta(days=5))],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IDSERVICE_LOCKOUT_DURATION", "5x"),
        ("IDSERVICE_LOCKOUT_DURATION", "0s"),
        ("IDSERVICE_LOCKOUT_THRESHOLD", "abc"),
        ("IDSERVICE_ENV", "staging"),
        ("IDSERVICE_LISTEN", "nonsense"),
        ("IDSERVICE_REQUIRE_IDENTITY_VERIFICATION", "maybe"),
        ("IDSERVICE_ACCESS_TOKEN_TTL", "1h"),
        ("IDSERVICE_DATABASE_URL", "mysql://x"),
        ("IDSERVICE_TRUSTED_PROXIES", "not-a-cidr"),
        ("IDSERVICE_ARGON2_MEMORY_COST", "8"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value})
    assert info.value.variable == variable
    assert str(info.value).startswith(variable + ": ")


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({}, "IDSERVICE_IDENTITY_PROVIDER"),
        (
            {"IDSERVICE_IDENTITY_PROVIDER": "portone", "IDSERVICE_PORTONE_API_SECRET": "s"},
            "IDSERVICE_DATA_KEYS",
        ),
    ],
)
def test_production_refuses_development_shortcuts(extra: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IDSERVICE_ENV": "production", **extra})
    assert info.value.variable == variable


def test_production_requires_tls(tmp_path: Path) -> None:
    env = {
        "IDSERVICE_ENV": "production",
        "IDSERVICE_IDENTITY_PROVIDER": "portone",
        "IDSERVICE_PORTONE_API_SECRET": "s",
        "IDSERVICE_DATA_KEYS": "k1:" + "A" * 43 + "=",
        "IDSERVICE_SIGNING_KEY_FILE": str(tmp_path / "key.pem"),
    }
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.variable == "IDSERVICE_TLS_CERT_FILE"


def test_dotenv_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("IDSERVICE_LOCKOUT_THRESHOLD=7\nIDSERVICE_ISSUER=from-file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IDSERVICE_ISSUER", "from-env")
    s = Settings.from_env()
    assert s.lockout_threshold == 7
    assert s.issuer == "from-env"


def test_sqlite_in_a_missing_directory_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "idservice.db"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IDSERVICE_DATABASE_URL": f"sqlite:///{missing}"})
    assert info.value.variable == "IDSERVICE_DATABASE_URL"
    assert "no-such-dir" not in str(info.value)
    assert not missing.parent.exists()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///{tmp}/idservice.db",
        "sqlite+pysqlite:///{tmp}/idservice.db",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql+psycopg://u@127.0.0.1:1/x",
    ],
)
def test_sqlite_in_an_existing_directory_or_in_memory_is_fine(tmp_path: Path, url: str) -> None:
    settings = Settings.from_env({"IDSERVICE_DATABASE_URL": url.format(tmp=tmp_path)})
    assert not settings.creates_database_directory


def test_only_the_default_database_directory_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a fresh clone: no ./var yet
    default = Settings.from_env({})
    assert default.creates_database_directory
    # Spelled out, the default is still the default.
    spelled = Settings.from_env({"IDSERVICE_DATABASE_URL": "sqlite:///./var/idservice.db"})
    assert spelled.creates_database_directory
    with pytest.raises(ConfigError):
        Settings.from_env({"IDSERVICE_DATABASE_URL": "sqlite:///./var/other.db"})
    assert not (tmp_path / "var").exists()
