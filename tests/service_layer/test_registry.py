"""The command table: every command has a use case, and each use case asks only for ports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from typing import Any

import pytest

import idservice.service_layer
from idservice.service_layer.registry import USE_CASES
from idservice.service_layer.sessions import RefreshSession
from idservice.service_layer.use_cases import Command, Dependencies, UseCases


def command_classes() -> set[type[Command[Any]]]:
    """Every Command subclass defined in a module of idservice.service_layer."""
    found: set[type[Command[Any]]] = set()
    package = idservice.service_layer
    for module_info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(value, Command)
                and value is not Command
                and value.__module__.startswith(package.__name__)
            ):
                found.add(value)
    return found


def test_no_command_shows_its_fields_in_its_repr() -> None:
    """Commands carry tokens, passwords, codes and personal data: a repr that reached a log or
    a traceback would show them. Each keeps `Command`'s, which names only its kind."""
    shown = sorted(c.__qualname__ for c in command_classes() if c.__repr__ is not Command.__repr__)
    assert not shown, f"commands with a repr of their fields: {shown}"
    secret = "rt-secret-refresh-token"
    command = RefreshSession(refresh_token=secret)
    assert secret not in repr(command) and repr(command) == "<RefreshSession>"


def test_every_command_has_a_use_case() -> None:
    commands = command_classes()
    assert len(commands) >= len(USE_CASES) > 0
    missing = sorted(c.__qualname__ for c in commands if c not in USE_CASES)
    assert not missing, f"commands without a use case in USE_CASES: {missing}"


def test_use_cases_are_bound_once_from_the_dependencies(deps: Dependencies) -> None:
    UseCases(deps, USE_CASES)  # raises TypeError for a use case asking for an unknown port

    def asks_for_too_much(cmd: object, *, database: object) -> None: ...

    with pytest.raises(TypeError, match="database"):
        UseCases(deps, {Command: asks_for_too_much})


def test_an_unregistered_command_is_a_lookup_error(use_cases: UseCases) -> None:
    @dataclass(frozen=True)
    class Nothing(Command[None]):
        pass

    with pytest.raises(LookupError, match="Nothing"):
        use_cases.handle(Nothing())
