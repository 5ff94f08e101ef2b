"""IDSERVICE_RATE_LIMIT_*: limits per end-user address, `<count>/<window>`, into the Policy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from idservice.bootstrap import policy_from
from idservice.config import ConfigError, Settings
from idservice.service_layer.policy import Policy
from idservice.service_layer.rate_limits import RateLimit, RateLimits


def test_the_defaults_are_the_policy_defaults() -> None:
    limits = policy_from(Settings.from_env({})).rate_limits
    assert limits == Policy().rate_limits == RateLimits()
    assert limits.failed_logins == RateLimit(20, timedelta(minutes=1))


def test_each_limit_is_read_from_its_variable() -> None:
    settings = Settings.from_env(
        {
            "IDSERVICE_RATE_LIMIT_FAILED_LOGINS": "50/5m",
            "IDSERVICE_RATE_LIMIT_VERIFICATIONS": " 7 / 30s ",
            "IDSERVICE_RATE_LIMIT_CONSENT_CODES": "3/1h",
            "IDSERVICE_RATE_LIMIT_CONSENT_RESENDS": "1000000/1d",
        }
    )
    assert policy_from(settings).rate_limits == RateLimits(
        failed_logins=RateLimit(50, timedelta(minutes=5)),
        verifications=RateLimit(7, timedelta(seconds=30)),
        consent_codes=RateLimit(3, timedelta(hours=1)),
        consent_resends=RateLimit(1_000_000, timedelta(days=1)),
    )


@pytest.mark.parametrize(
    "text", ["20", "20/", "/1m", "x/1m", "-1/1m", "0/1m", "1000001/1m", "20/0s", "20/2d", "20/1y"]
)
def test_a_bad_limit_stops_start_up_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IDSERVICE_RATE_LIMIT_FAILED_LOGINS": text})
    assert info.value.variable == "IDSERVICE_RATE_LIMIT_FAILED_LOGINS"
    assert info.value.problem
