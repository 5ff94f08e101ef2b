"""What every servicer shares: the app it serves."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import grpc

from idservice.bootstrap import App
from idservice.domain.errors import DomainError
from idservice.entrypoints.grpc.addresses import end_user_address
from idservice.service_layer.use_cases import Command

R = TypeVar("R")


class Servicer:
    """Proto request → command → proto response, and nothing else."""

    def __init__(self, app: App) -> None:
        self.app = app

    def handle(self, cmd: Command[R]) -> R:
        return self.app.handle(cmd)

    def end_user(self, context: grpc.ServicerContext) -> str:
        """The end user's address as a trusted proxy names it, else "" (no per-address limit)."""
        return end_user_address(context, self.app.settings.trusted_proxies)

    def now(self) -> datetime:
        return self.app.deps.clock()

    def storage_error(self, exc: BaseException) -> DomainError | None:
        return self.app.storage_error(exc)
