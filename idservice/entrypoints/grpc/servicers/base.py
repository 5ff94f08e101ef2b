"""What every servicer shares: the app it serves."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from idservice.bootstrap import App
from idservice.domain.errors import DomainError
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
