"""Settings: every IDSERVICE_* value is validated once and a bad one names its variable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from idservice.config import ConfigError, Settings, misspelt_variables
from idservice.config_values import parse_duration


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
        # Past a century a date computed from now leaves what datetime holds: refused here,
        # not at the first purge or call.
        ("IDSERVICE_CONNECTION_LOG_RETENTION", "3000000d"),
        ("IDSERVICE_ACCESS_AUDIT_RETENTION", "36501d"),
        ("IDSERVICE_REFRESH_TOKEN_TTL", "999999999d"),
        ("IDSERVICE_GUARDIAN_CONSENT_WINDOW", "3000000d"),
        ("IDSERVICE_LOCKOUT_DURATION", "3000000d"),
        ("IDSERVICE_REJOIN_COOLDOWN", "3000000d"),
        ("IDSERVICE_KAKAO_APP_ID", "abc"),
        ("IDSERVICE_KAKAO_APP_ID", "12 34"),
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


# -- production hardening (contract §1: refusals named by variable) ---------------------------


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A production configuration that passes every check; `extra` changes one thing."""
    env = {
        "IDSERVICE_ENV": "production",
        "IDSERVICE_IDENTITY_PROVIDER": "portone",
        "IDSERVICE_PORTONE_API_SECRET": "s",
        "IDSERVICE_DATA_KEYS": "k1:" + "A" * 43 + "=",
        "IDSERVICE_VAR_DIR": str(tmp_path / "var"),
        "IDSERVICE_SIGNING_KEY_FILE": str(tmp_path / "secrets" / "signing.pem"),
        "IDSERVICE_TLS_CERT_FILE": str(tmp_path / "tls" / "server.crt"),
        "IDSERVICE_TLS_KEY_FILE": str(tmp_path / "tls" / "server.key"),
    }
    env.update(extra)
    return env


def refused_variable(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert str(info.value).startswith(info.value.variable + ": ")
    return info.value.variable


def test_the_production_baseline_is_accepted(tmp_path: Path) -> None:
    assert Settings.from_env(production_env(tmp_path)).production


UPSTREAM_URL_VARIABLES = (
    "IDSERVICE_PORTONE_API_BASE",
    "IDSERVICE_GOOGLE_DISCOVERY_URL",
    "IDSERVICE_KAKAO_DISCOVERY_URL",
    "IDSERVICE_KAKAO_API_BASE",
    "IDSERVICE_NOTIFY_WEBHOOK_URL",
)


@pytest.mark.parametrize("variable", UPSTREAM_URL_VARIABLES)
@pytest.mark.parametrize(
    "url",
    [
        "http://api.portone.io",
        "http://example.com:8080/hook",
        "http://10.0.0.5/hook",
        "http://[2001:db8::1]/x",
        "http://127.0.0.1.example.com/x",
        "http://localhost.example.com/x",
        "http://127.0.0.1@example.com/x",
        "http://[::ffff:10.0.0.1]/x",
        "HTTP://example.com/x",
    ],
)
def test_production_refuses_plaintext_upstreams(tmp_path: Path, variable: str, url: str) -> None:
    env = production_env(tmp_path, **{variable: url, "IDSERVICE_NOTIFY_WEBHOOK_SECRET": "w"})
    assert refused_variable(env) == variable


@pytest.mark.parametrize("variable", UPSTREAM_URL_VARIABLES)
@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/x",
        "HTTPS://example.com/x",
        "http://127.0.0.1:8080/x",
        "http://127.9.8.7/x",
        "http://localhost:9000/x",
        "http://LOCALHOST/x",
        "http://[::1]:9000/x",
        "http://[::ffff:127.0.0.1]/x",
    ],
)
def test_production_allows_https_and_loopback(tmp_path: Path, variable: str, url: str) -> None:
    env = production_env(tmp_path, **{variable: url, "IDSERVICE_NOTIFY_WEBHOOK_SECRET": "w"})
    Settings.from_env(env)


def test_an_upper_case_scheme_is_read_in_its_canonical_lower_case() -> None:
    settings = Settings.from_env({"IDSERVICE_PORTONE_API_BASE": "HTTPS://API.example.com/V2/"})
    assert settings.portone_api_base == "https://API.example.com/V2"


def test_development_allows_plaintext_upstreams() -> None:
    env = {variable: "http://example.com/x" for variable in UPSTREAM_URL_VARIABLES}
    settings = Settings.from_env(env)
    assert settings.notify_webhook_url == "http://example.com/x"


@pytest.mark.parametrize(
    ("memory", "time"),
    # One below each OWASP pair, and each pair's memory at one pass less.
    [
        (47103, 1),
        (19455, 2),
        (12287, 3),
        (9215, 4),
        (7167, 5),
        (7167, 20),
        (19456, 1),
        (12288, 2),
        (9216, 3),
        (7168, 4),
        (1024, 20),
    ],
)
def test_production_refuses_argon2_below_the_owasp_minimum(
    tmp_path: Path, memory: int, time: int
) -> None:
    env = production_env(
        tmp_path,
        IDSERVICE_ARGON2_MEMORY_COST=str(memory),
        IDSERVICE_ARGON2_TIME_COST=str(time),
    )
    assert refused_variable(env) == "IDSERVICE_ARGON2_MEMORY_COST"


@pytest.mark.parametrize(
    ("memory", "time"),
    [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5), (7168, 20), (65536, 1), (19456, 3)],
)
def test_production_accepts_argon2_at_or_above_an_owasp_pair(
    tmp_path: Path, memory: int, time: int
) -> None:
    env = production_env(
        tmp_path,
        IDSERVICE_ARGON2_MEMORY_COST=str(memory),
        IDSERVICE_ARGON2_TIME_COST=str(time),
        IDSERVICE_ARGON2_PARALLELISM="2",
    )
    settings = Settings.from_env(env)
    assert (settings.argon2_memory_cost, settings.argon2_time_cost) == (memory, time)


def test_development_allows_small_argon2_parameters() -> None:
    Settings.from_env({"IDSERVICE_ARGON2_MEMORY_COST": "1024", "IDSERVICE_ARGON2_TIME_COST": "1"})


@pytest.mark.parametrize(
    "inside",
    ["var/keys/signing_key.pem", "var/keys/prod/signing.pem", "other/../var/keys/signing.pem"],
)
def test_production_refuses_a_signing_key_in_the_development_keys_directory(
    tmp_path: Path, inside: str
) -> None:
    env = production_env(tmp_path, IDSERVICE_SIGNING_KEY_FILE=str(tmp_path / inside))
    assert refused_variable(env) == "IDSERVICE_SIGNING_KEY_FILE"


def test_production_refuses_a_signing_key_linked_into_the_development_keys_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "var" / "keys").mkdir(parents=True)
    link = tmp_path / "signing.pem"
    link.symlink_to(tmp_path / "var" / "keys" / "signing_key.pem")
    env = production_env(tmp_path, IDSERVICE_SIGNING_KEY_FILE=str(link))
    assert refused_variable(env) == "IDSERVICE_SIGNING_KEY_FILE"


def test_production_refuses_the_default_keys_directory_given_relatively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = production_env(tmp_path, IDSERVICE_SIGNING_KEY_FILE="./var/keys/signing_key.pem")
    del env["IDSERVICE_VAR_DIR"]  # the default ./var
    assert refused_variable(env) == "IDSERVICE_SIGNING_KEY_FILE"


@pytest.mark.parametrize("outside", ["var/signing.pem", "var/keys-prod/signing.pem", "keys.pem"])
def test_production_accepts_a_signing_key_outside_the_development_keys_directory(
    tmp_path: Path, outside: str
) -> None:
    Settings.from_env(production_env(tmp_path, IDSERVICE_SIGNING_KEY_FILE=str(tmp_path / outside)))


def test_production_accepts_tls_files_in_the_development_keys_directory(tmp_path: Path) -> None:
    keys = tmp_path / "var" / "keys"
    env = production_env(
        tmp_path,
        IDSERVICE_TLS_CERT_FILE=str(keys / "server.crt"),
        IDSERVICE_TLS_KEY_FILE=str(keys / "server.key"),
    )
    Settings.from_env(env)


def test_development_allows_a_signing_key_in_the_keys_directory(tmp_path: Path) -> None:
    keys = tmp_path / "var" / "keys"
    env = {
        "IDSERVICE_VAR_DIR": str(tmp_path / "var"),
        "IDSERVICE_SIGNING_KEY_FILE": str(keys / "signing_key.pem"),
    }
    Settings.from_env(env)


def test_a_misspelt_variable_is_named_with_the_setting_it_nearly_is() -> None:
    """A misspelt variable would otherwise be silently without effect (every command warns);
    the build and test scripts' own IDSERVICE_* names are not settings and not typos."""
    env = {
        "IDSERVICE_LOCKOUT_THRESHHOLD": "3",
        "IDSERVICE_LOCKOUT_THRESHOLD": "3",
        "IDSERVICE_REFRESH_TOKEN_TLL": "1d",
        "IDSERVICE_IMAGE": "idservice:dev",
        "IDSERVICE_TEST_REQUIRE_POSTGRES": "1",
        "PATH": "/usr/bin",
    }
    assert misspelt_variables(env) == [
        ("IDSERVICE_LOCKOUT_THRESHHOLD", "IDSERVICE_LOCKOUT_THRESHOLD"),
        ("IDSERVICE_REFRESH_TOKEN_TLL", "IDSERVICE_REFRESH_TOKEN_TTL"),
    ]


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("IDSERVICE_ENVIRONMENT", "IDSERVICE_ENV"),  # else production would run as development
        ("IDSERVICE_DB_URL", "IDSERVICE_DATABASE_URL"),
        ("IDSERVICE_DATABASE", "IDSERVICE_DATABASE_URL"),
        ("IDSERVICE_METRICS", "IDSERVICE_METRICS_LISTEN"),
        ("IDSERVICE_TLS_CA_FILE", "IDSERVICE_TLS_CLIENT_CA_FILE"),
        ("IDSERVICE_LISTEN_ADDRESS", "IDSERVICE_LISTEN"),
        ("IDSERVICE_ISSUER_URL", "IDSERVICE_ISSUER"),
    ],
)
def test_a_variable_named_as_other_services_name_it_is_warned_about(name: str, meant: str) -> None:
    assert misspelt_variables({name: "x"}) == [(name, meant)]


def test_the_build_scripts_and_kubernetes_variables_are_no_misspellings() -> None:
    build = (
        # Kubernetes' service links for a Service named idservice.
        "IDSERVICE_PORT",
        "IDSERVICE_SERVICE_HOST",
        "IDSERVICE_SERVICE_PORT",
        "IDSERVICE_SERVICE_PORT_GRPC",
        "IDSERVICE_PORT_50051_TCP",
        "IDSERVICE_PORT_50051_TCP_ADDR",
        "IDSERVICE_PORT_50051_TCP_PORT",
        "IDSERVICE_PORT_50051_TCP_PROTO",
        "IDSERVICE_IMAGE",
        "IDSERVICE_BASE_IMAGE",
        "IDSERVICE_BUILD_CA_BUNDLE",
        "IDSERVICE_DEBIAN_MIRROR",
        "IDSERVICE_DEBIAN_SECURITY_MIRROR",
        "IDSERVICE_TEST_IMAGE_BUILD",
        "IDSERVICE_TEST_REQUIRE_POSTGRES",
    )
    assert misspelt_variables(dict.fromkeys(build, "x")) == []
