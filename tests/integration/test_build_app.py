"""A start-up that fails part way closes what it had built (no pool, thread or client left)."""

from __future__ import annotations

from collections.abc import Iterable

import argon2
import pytest

from idservice.adapters.hashing import Argon2Parameters, PasswordHasher
from idservice.bootstrap import build_app
from idservice.config import Settings
from tests.conftest import TEST_ARGON2


class FailingHasher(PasswordHasher):
    """A hasher whose calibration (a read of the database at start-up) fails."""

    def __init__(self, closed: list[str]) -> None:
        super().__init__(
            Argon2Parameters(
                time_cost=TEST_ARGON2["argon2_time_cost"],
                memory_cost=TEST_ARGON2["argon2_memory_cost"],
                parallelism=TEST_ARGON2["argon2_parallelism"],
            ),
            workers=1,
        )
        self.closed = closed

    def calibrate_decoy(self, stored_hashes: Iterable[str]) -> argon2.Parameters:
        raise RuntimeError("calibration failed")

    def shutdown(self) -> None:
        self.closed.append("hasher")
        super().shutdown()


def test_a_failed_start_up_closes_what_it_built(settings: Settings) -> None:
    closed: list[str] = []
    with pytest.raises(RuntimeError, match="calibration failed"):
        build_app(settings, hasher=FailingHasher(closed))
    assert closed == ["hasher"]
