"""IDSERVICE_ACCESS_AUDIT_RETENTION: 2 years by default, never less (안전성 확보조치 기준 제8조)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from idservice.bootstrap import policy_from
from idservice.config import ConfigError, Settings
from idservice.service_layer.policy import Policy

VARIABLE = "IDSERVICE_ACCESS_AUDIT_RETENTION"


def test_access_audit_records_are_kept_two_years_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.access_audit_retention == timedelta(days=730)
    assert policy_from(settings).access_audit_retention == timedelta(days=730)
    assert Policy().access_audit_retention == timedelta(days=730)


@pytest.mark.parametrize(("text", "days"), [("730d", 730), ("1095d", 1095), ("17520h", 730)])
def test_a_longer_retention_is_taken(text: str, days: int) -> None:
    settings = Settings.from_env({VARIABLE: text})
    assert policy_from(settings).access_audit_retention == timedelta(days=days)


@pytest.mark.parametrize("text", ["729d", "90d", "0s", "2y"])
def test_less_than_two_years_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({VARIABLE: text})
    assert info.value.variable == VARIABLE
