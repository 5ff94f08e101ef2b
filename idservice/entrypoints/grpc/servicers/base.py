"""What every servicer shares: the app it serves, and the answer for RPCs not built yet."""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn, TypeVar

import grpc

from idservice.bootstrap import App
from idservice.domain.errors import DomainError
from idservice.entrypoints.grpc.errors import unimplemented_status
from idservice.service_layer.use_cases import Command

R = TypeVar("R")


class Servicer:
    """Proto request → command → proto response, and nothing else."""

    def __init__(self, app: App) -> None:
        self.app = app

    def handle(self, cmd: Command[R]) -> R:
        return self.app.handle(cmd)

    def now(self) -> datetime:
        return self.app.deps.clock()

    def storage_error(self, exc: BaseException) -> DomainError | None:
        return self.app.storage_error(exc)


def unimplemented(context: grpc.ServicerContext) -> NoReturn:
    """An RPC of the contract whose capability has not landed yet."""
    context.abort_with_status(unimplemented_status())
    raise AssertionError("abort returned")  # pragma: no cover
