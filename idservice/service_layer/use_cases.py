"""Commands and the one place that runs them: each use case is a function `(cmd, *, deps…)`.

A use case names in its signature the ports it uses (`uow`, `hasher`, `tokens`, `cipher`,
`providers`, `sns`, `sink`, `clock`, `policy`); `UseCases` fills them in from `Dependencies`
once, when the application is built, as cosmicpython's bootstrap does. Entrypoints build a
command from a request and call `handle`; tests can call a use case directly with fakes of the
ports.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, cast

from idservice.domain.sns import SnsProvider
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import (
    Clock,
    EventSink,
    IdentityProvider,
    PasswordHasher,
    SecretsCipher,
    SnsIdentityProvider,
    TokenIssuer,
    UnitOfWorkFactory,
)

R = TypeVar("R")


class Command(Generic[R]):
    """A request to the service layer whose use case answers an `R`.

    Commands carry tokens, passwords, codes and personal data, so a command's repr names only
    its kind: each is a dataclass with `repr=False`, which keeps this one.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Dependencies:
    """Every port a use case may ask for, by the parameter name it uses."""

    uow: UnitOfWorkFactory
    hasher: PasswordHasher
    tokens: TokenIssuer
    cipher: SecretsCipher
    providers: Mapping[str, IdentityProvider]
    sink: EventSink
    policy: Policy
    # Google and Kakao, when configured.
    sns: Mapping[SnsProvider, SnsIdentityProvider] = field(default_factory=dict)
    clock: Clock = utc_now


UseCase = Callable[..., Any]


def _bind(use_case: UseCase, deps: Dependencies) -> Callable[[Any], Any]:
    """`use_case` with every keyword-only parameter filled from `deps` (by name)."""
    available = {f.name: getattr(deps, f.name) for f in fields(deps)}
    wanted = {}
    for name, parameter in inspect.signature(use_case).parameters.items():
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if name not in available:
            raise TypeError(f"{use_case.__qualname__} asks for an unknown dependency {name!r}")
        wanted[name] = available[name]

    def bound(cmd: Any) -> Any:
        return use_case(cmd, **wanted)

    return bound


class UseCases:
    """Runs commands: `handle(cmd)` calls the command's use case with its dependencies."""

    def __init__(self, deps: Dependencies, registry: Mapping[type[Command[Any]], UseCase]) -> None:
        self.deps = deps
        self._handlers = {kind: _bind(use_case, deps) for kind, use_case in registry.items()}

    def handle(self, cmd: Command[R]) -> R:
        handler = self._handlers.get(type(cmd))
        if handler is None:
            raise LookupError(f"no use case handles {type(cmd).__name__}")
        return cast(R, handler(cmd))
