"""The metrics' view into the adapters: observers of the Argon2 pool and the database pool (given
to `build_app`), and the gauges read from the database by the background refresh."""

from __future__ import annotations

from idservice.bootstrap import App, Observers
from idservice.entrypoints.grpc import metrics


class Argon2PoolMetrics:
    """idservice_argon2_queue_depth and idservice_argon2_wait_seconds."""

    def queued(self) -> None:
        metrics.ARGON2_QUEUE_DEPTH.inc()

    def started(self, waited_seconds: float) -> None:
        metrics.ARGON2_WAIT.observe(waited_seconds)

    def finished(self) -> None:
        metrics.ARGON2_QUEUE_DEPTH.dec()


class DatabasePoolMetrics:
    """idservice_db_pool_in_use and idservice_db_pool_wait_seconds."""

    def checked_out(self) -> None:
        metrics.DB_POOL_IN_USE.inc()

    def checked_in(self) -> None:
        metrics.DB_POOL_IN_USE.dec()

    def waited(self, seconds: float) -> None:
        metrics.DB_POOL_WAIT.observe(seconds)


def observers() -> Observers:
    """What `build_app` is given by `serve`."""
    return Observers(hashing=Argon2PoolMetrics(), db_pool=DatabasePoolMetrics())


def refresh_storage_gauges(app: App) -> None:
    """Read the outbox's backlog and the consent requests by state, and publish them (raises
    what the read raises, leaving the previous values in place)."""
    gauges = app.storage_gauges()
    metrics.OUTBOX_PENDING.set(gauges.outbox_pending)
    metrics.OUTBOX_OLDEST_PENDING.set(gauges.outbox_oldest_pending_seconds)
    metrics.OUTBOX_DEAD_LETTERS.set(gauges.outbox_dead_letters)
    for state, count in gauges.consent_requests.items():
        metrics.CONSENT_REQUESTS.labels(state).set(count)
