"""A real Argon2id hasher that can hold one result back, to force interleavings in tests."""

from __future__ import annotations

import threading
from concurrent.futures import Future

from idservice.adapters.hashing import (
    Argon2Parameters,
    BoundedExecutor,
    PasswordHasher,
)
from idservice.service_layer.ports import VerifyOutcome

WAIT_SECONDS = 30.0


class PausingHasher(PasswordHasher):
    """Argon2id as usual, but the first hash or verification after `arm()` waits for `release()`.

    The work itself is done by the real hasher; only its result is held back, so another use
    case can commit in between. `reached` is set once the held call is waiting.
    """

    def __init__(self, parameters: Argon2Parameters | None = None) -> None:
        super().__init__(
            parameters or Argon2Parameters(time_cost=1, memory_cost=1024, parallelism=1),
            executor=BoundedExecutor(2, 8),
        )
        self._armed = False
        self._lock = threading.Lock()
        self.reached = threading.Event()
        self._gate = threading.Event()

    def arm(self) -> None:
        with self._lock:
            self._armed = True

    def release(self) -> None:
        self._gate.set()

    def _take(self) -> bool:
        with self._lock:
            armed, self._armed = self._armed, False
            return armed

    def hash(self, password: str) -> str:
        encoded = super().hash(password)
        if self._take():
            self.reached.set()
            self._gate.wait(WAIT_SECONDS)
        return encoded

    def verify_later(self, encoded: str, password: str) -> Future[VerifyOutcome]:
        real = super().verify_later(encoded, password)
        if not self._take():
            return real
        held: Future[VerifyOutcome] = Future()

        def relay() -> None:
            self.reached.set()
            self._gate.wait(WAIT_SECONDS)
            held.set_result(real.result())

        threading.Thread(target=relay, daemon=True).start()
        return held
