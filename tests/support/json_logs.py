"""Reading the JSON log lines `idservice` writes on stderr."""

from __future__ import annotations

import json
from typing import Any


def log_lines(text: str) -> list[dict[str, Any]]:
    """Each line of `text` as a JSON object (AssertionError naming the first line that is not)."""
    parsed: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"log line {number} is not JSON: {line!r}") from None
        assert isinstance(value, dict), f"log line {number} is not a JSON object: {line!r}"
        parsed.append(value)
    return parsed


def logged(text: str, event: str, *, level: str | None = None, logger: str | None = None) -> bool:
    """Some JSON line whose event contains `event` (at `level`, from `logger`, when given)."""
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if not isinstance(value, dict) or event not in str(value.get("event", "")):
            continue
        if level is not None and value.get("level") != level:
            continue
        if logger is not None and value.get("logger") != logger:
            continue
        return True
    return False
