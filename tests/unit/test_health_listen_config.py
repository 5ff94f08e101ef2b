"""IDSERVICE_HEALTH_LISTEN: unset by default; host:port like IDSERVICE_LISTEN; a port of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from idservice.config import ConfigError, Settings
from tests.unit.test_config import production_env


def test_off_by_default() -> None:
    assert Settings.from_env({}).health_listen is None
    assert Settings.from_env({"IDSERVICE_HEALTH_LISTEN": " "}).health_listen is None


@pytest.mark.parametrize("value", ["0.0.0.0:8081", "127.0.0.1:0", "[::]:8081"])
def test_a_host_and_port(value: str) -> None:
    assert Settings.from_env({"IDSERVICE_HEALTH_LISTEN": value}).health_listen == value


@pytest.mark.parametrize("value", ["8081", "nonsense", "0.0.0.0:", "0.0.0.0:65536", ":8081"])
def test_a_bad_value_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IDSERVICE_HEALTH_LISTEN": value})
    assert info.value.variable == "IDSERVICE_HEALTH_LISTEN"


@pytest.mark.parametrize(
    ("other", "value"),
    [
        ("IDSERVICE_LISTEN", "0.0.0.0:50051"),
        ("IDSERVICE_METRICS_LISTEN", "0.0.0.0:9464"),
    ],
)
def test_the_port_of_another_listener_is_refused(other: str, value: str) -> None:
    port = value.rpartition(":")[2]
    with pytest.raises(ConfigError) as info:
        Settings.from_env({other: value, "IDSERVICE_HEALTH_LISTEN": f"127.0.0.1:{port}"})
    assert info.value.variable == "IDSERVICE_HEALTH_LISTEN"
    assert other in info.value.problem


def test_the_default_api_port_is_refused_too() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IDSERVICE_HEALTH_LISTEN": "0.0.0.0:50051"})
    assert info.value.variable == "IDSERVICE_HEALTH_LISTEN"


def test_production_with_tls_accepts_a_plaintext_health_listener(tmp_path: Path) -> None:
    settings = Settings.from_env(production_env(tmp_path, IDSERVICE_HEALTH_LISTEN="0.0.0.0:8081"))
    assert settings.tls_cert_file is not None
    assert settings.health_listen == "0.0.0.0:8081"
