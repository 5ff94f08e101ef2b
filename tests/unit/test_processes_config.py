"""IDSERVICE_PROCESSES: a positive whole number or `auto`; 1 in development, auto in production."""

from __future__ import annotations

from pathlib import Path

import pytest

from idservice.config import ConfigError, Settings
from idservice.config_values import MAX_PROCESSES
from idservice.cpus import available_cpus as cpu_count
from tests.unit.test_config import production_env


def test_development_runs_one_process_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.processes is None
    assert settings.process_count == 1


def test_production_runs_one_process_per_cpu_by_default(tmp_path: Path) -> None:
    settings = Settings.from_env(production_env(tmp_path))
    assert settings.process_count == cpu_count()


def test_production_may_run_one_process(tmp_path: Path) -> None:
    settings = Settings.from_env(production_env(tmp_path, IDSERVICE_PROCESSES="1"))
    assert settings.process_count == 1


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("2", 2), (" 8 ", 8), ("256", 256)])
def test_a_number_of_processes(text: str, expected: int) -> None:
    settings = Settings.from_env({"IDSERVICE_PROCESSES": text})
    assert settings.processes == expected
    assert settings.process_count == expected


@pytest.mark.parametrize("text", ["auto", "AUTO", " Auto "])
def test_auto_is_one_per_cpu_in_any_environment(text: str) -> None:
    settings = Settings.from_env({"IDSERVICE_PROCESSES": text})
    assert settings.processes == "auto"
    assert settings.process_count == cpu_count() >= 1


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", "auto2", str(MAX_PROCESSES + 1)])
def test_a_bad_value_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IDSERVICE_PROCESSES": text})
    assert info.value.variable == "IDSERVICE_PROCESSES"
    assert str(info.value).startswith("IDSERVICE_PROCESSES: ")
    assert "auto" in info.value.problem


def test_an_empty_value_means_the_default() -> None:
    assert Settings.from_env({"IDSERVICE_PROCESSES": " "}).process_count == 1
