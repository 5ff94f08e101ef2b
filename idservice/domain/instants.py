"""Instants as text: one RFC 3339 form, in UTC with `Z`, wherever a time leaves as a string."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(instant: datetime) -> str:
    """`2026-03-01T15:30:00.123456Z` (the form protobuf's JSON mapping gives Timestamps)."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
