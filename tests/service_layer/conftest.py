"""Fixtures of the service-layer tier: the use cases over fakes of every port (no database)."""

from __future__ import annotations

import pytest

from idservice.service_layer.use_cases import Dependencies, UseCases
from tests.service_layer.harness import Harness


@pytest.fixture
def svc() -> Harness:
    """Fresh fakes and the use cases over them, with the default Policy."""
    return Harness.build()


@pytest.fixture
def deps(svc: Harness) -> Dependencies:
    return svc.deps


@pytest.fixture
def use_cases(svc: Harness) -> UseCases:
    return svc.use_cases
