"""A real Argon2 worker pool that remembers which stored hashes it was asked to verify against."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import ParamSpec, TypeVar

import argon2

from idservice.adapters.hashing import BoundedExecutor

P = ParamSpec("P")
T = TypeVar("T")


class RecordingExecutor(BoundedExecutor):
    """`BoundedExecutor` as used in production, plus a log of the PHC strings verified against.

    A verification (`verify`, `verify_later`, `burn`, `burn_later`) submits the stored hash as
    its first argument; hashing a new password submits the password instead, which is never a
    PHC string, so only verifications are recorded. The work itself runs unchanged.
    """

    def __init__(self, workers: int = 2, max_queue: int = 16) -> None:
        super().__init__(workers, max_queue)
        self._lock = threading.Lock()
        self._verified: list[str] = []

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        first = args[0] if args else None
        if isinstance(first, str) and first.startswith("$argon2"):
            with self._lock:
                self._verified.append(first)
        return super().submit(fn, *args, **kwargs)

    def verified_parameters(self) -> list[argon2.Parameters]:
        """The Argon2 parameters of each verification so far, in order."""
        with self._lock:
            return [argon2.extract_parameters(encoded) for encoded in self._verified]

    def clear(self) -> None:
        with self._lock:
            self._verified.clear()
