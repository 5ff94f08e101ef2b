"""Password lockout (안전성 확보조치 기준 제5조⑥; korea-rules Storage 2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# An admitted password attempt that never reports back (a crashed process) stops counting
# after this long; real attempts finish in well under a second.
ATTEMPT_IN_FLIGHT_TTL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """Consecutive password failures before a lock, and its length (configuration)."""

    threshold: int
    duration: timedelta

    def admits(self, *, failures: int, in_flight: int) -> bool:
        """An attempt may be checked while failures plus attempts in flight stay under the bar.

        Counting the attempts still in flight means no burst of concurrent guesses can check
        more passwords than the lock allows.
        """
        return failures + in_flight < self.threshold

    def reaches_lock(self, failures_before: int) -> bool:
        """True when one more failure places the lock."""
        return failures_before + 1 >= self.threshold

    def lock_until(self, now: datetime) -> datetime:
        return now + self.duration


@dataclass(frozen=True, slots=True)
class LoginGate:
    """Whether a password attempt may be checked now; if not, whether a lock is the reason."""

    admitted: bool
    locked_until: datetime | None = None
