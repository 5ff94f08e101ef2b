"""The two-year marketing reconfirmation's anniversaries (정보통신망법 제50조⑧)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from idservice.domain.consents import last_reconfirmation_due


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("opted_in", "now", "due"),
    [
        ("2024-05-10T09:00", "2026-05-10T08:59", None),
        ("2024-05-10T09:00", "2026-05-10T09:00", "2026-05-10T09:00"),
        ("2024-05-10T09:00", "2028-05-10T08:59", "2026-05-10T09:00"),
        ("2024-05-10T09:00", "2028-05-10T09:00", "2028-05-10T09:00"),
        ("2024-05-10T09:00", "2031-01-01T00:00", "2030-05-10T09:00"),
        # 29 February: 1 March in a year without one, 29 February in a year with one.
        ("2024-02-29T12:00", "2026-02-28T23:59", None),
        ("2024-02-29T12:00", "2026-03-01T12:00", "2026-03-01T12:00"),
        ("2024-02-29T12:00", "2028-02-29T12:00", "2028-02-29T12:00"),
        ("2024-02-29T12:00", "2028-02-29T11:59", "2026-03-01T12:00"),
        ("2024-05-10T09:00", "2024-06-01T00:00", None),
        # By Seoul's calendar: 20:00 UTC on 29 February is 1 March in Seoul.
        ("2024-02-29T20:00", "2026-02-28T19:59", None),
        ("2024-02-29T20:00", "2026-02-28T20:00", "2026-02-28T20:00"),
        ("2024-12-31T20:00", "2026-12-31T20:00", "2026-12-31T20:00"),
        ("2025-01-01T00:00", "2026-12-31T20:00", None),
    ],
)
def test_the_latest_anniversary_two_four_six_years_on(
    opted_in: str, now: str, due: str | None
) -> None:
    assert last_reconfirmation_due(at(opted_in), at(now)) == (at(due) if due else None)
