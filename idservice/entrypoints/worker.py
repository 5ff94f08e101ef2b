"""Background work beside the API: the database probe, the purge, the outbox dispatcher, the
connection log's writer and (with IDSERVICE_METRICS_LISTEN) the refresh of the metrics read from
the database.

`idservice serve` runs them in threads (the dispatcher unless
IDSERVICE_DISPATCH_IN_SERVE=false); `idservice dispatch` runs the dispatcher alone. Each loop
ends when `stop` is set, and survives a failing round (e.g. the database is down) by logging its
type and trying again on the next one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import timedelta

from idservice.bootstrap import App
from idservice.domain.errors import DomainError
from idservice.service_layer.dispatch import BATCH, CLAIM_LEASE, DispatchDue
from idservice.service_layer.retention import Purge

log = logging.getLogger(__name__)

# How often the health service re-checks the database.
DATABASE_PROBE_SECONDS = 2.0
# How long a running dispatcher sleeps when nothing is due.
DISPATCH_POLL_SECONDS = 1.0
# How often the connection log's buffered entries are written: what a kill -9 can lose.
CONNECTION_LOG_FLUSH_SECONDS = 1.0
# How often the gauges read from the database (outbox backlog, consent requests) are refreshed.
METRICS_REFRESH_SECONDS = 5.0


def probe_database(app: App, stop: threading.Event, on_change: Callable[[bool], None]) -> None:
    """Report each change of the database's reachability until `stop` is set."""
    last: bool | None = None
    while not stop.wait(DATABASE_PROBE_SECONDS):
        ok = app.database_reachable()
        if ok != last:
            if not ok:
                log.warning("database unreachable: health NOT_SERVING")
            elif last is not None:
                log.info("database reachable again: health SERVING")
            on_change(ok)
            last = ok


def refresh_metrics(
    app: App, stop: threading.Event, *, interval: float = METRICS_REFRESH_SECONDS
) -> None:
    """Read the database-derived gauges now and every `interval` seconds until `stop` is set
    (a scrape never queries the database). A failed read keeps the previous values and is
    logged once per outage, by its type only."""
    from idservice.entrypoints.grpc.instruments import refresh_storage_gauges

    failing = False
    while True:
        try:
            refresh_storage_gauges(app)
        except Exception as exc:
            if not failing:
                log.warning("metrics refresh failed: %s (previous values kept)", type(exc).__name__)
            failing = True
        else:
            if failing:
                log.info("metrics refresh works again")
            failing = False
        if stop.wait(interval):
            return


def purge_periodically(app: App, stop: threading.Event) -> None:
    """Run the retention jobs every IDSERVICE_PURGE_INTERVAL until `stop` is set (in one
    process per instance: see `supervisor.py`)."""
    interval = app.settings.purge_interval.total_seconds()
    log.info("running the retention jobs every %ds (pid %d)", interval, os.getpid())
    while not stop.wait(interval):
        try:
            counts = app.handle(Purge())
        except Exception as exc:
            log.warning("purge failed: %s", _cause(exc))
            continue
        done = {what: count for what, count in counts.items() if count}
        if done:
            log.info("purge: %s", ", ".join(f"{k}={v}" for k, v in done.items()))


def dispatch_until(app: App, stop: threading.Event, *, lease: timedelta = CLAIM_LEASE) -> None:
    """Deliver outbox events as they fall due until `stop` is set.

    A round that delivered something is followed at once by the next: a delivery may have
    released the next event of its account (one account's events go out in order).
    """
    failing = False
    while not stop.is_set():
        sent = delivered = 0
        try:
            report = app.handle(DispatchDue(should_stop=stop.is_set, lease=lease))
            sent, delivered = report.delivered + report.failed, report.delivered
        except Exception as exc:
            # Once per outage, as the other loops: a round a second would fill the log.
            if not failing:
                log.warning("outbox dispatch failed: %s (retried every round)", _cause(exc))
            failing = True
        else:
            if failing:
                log.info("outbox dispatch works again")
            failing = False
        if not delivered and sent < BATCH:
            stop.wait(DISPATCH_POLL_SECONDS)


def _cause(exc: Exception) -> str:
    """What failed, without any message: the reason of a DomainError (DATABASE_UNAVAILABLE),
    else the exception's type."""
    return exc.reason.value if isinstance(exc, DomainError) else type(exc).__name__


def write_connection_log(app: App, stop: threading.Event) -> None:
    """Write the buffered connection-log entries every second until `stop` is set, then once
    more. A failed write keeps the entries for the next round (logged once per outage)."""
    failing = False
    while True:
        stopping = stop.wait(CONNECTION_LOG_FLUSH_SECONDS)
        try:
            app.connections.flush()
        except Exception as exc:
            if not failing:
                log.warning("connection log write failed: %s (kept for retry)", type(exc).__name__)
            failing = True
        else:
            if failing:
                log.info("connection log written again")
            failing = False
        if stopping:
            return


def start_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
