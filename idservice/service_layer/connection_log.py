"""The connection log (통신비밀보호법): entries buffered in memory, written in batches.

An RPC must not wait for a database write to be logged, so the transport hands each call's
`ConnectionEntry` to a `ConnectionRecorder` (a list append under a lock) and a background thread
calls `flush()` every second, which writes the batch through `RecordConnections` in a few
transactions. What is still buffered when the process is killed (at most about a second of
calls) is lost; a drain or a clean stop flushes it. `Purge` deletes entries older than
`Policy.connection_log_retention`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from idservice.service_layer.ports import ConnectionEntry, UnitOfWorkFactory
from idservice.service_layer.use_cases import Command

log = logging.getLogger(__name__)

# Entries held while the database cannot take them; past this the oldest are dropped (counted
# and logged) rather than the process running out of memory in a long outage.
MAX_BUFFERED = 100_000
# Entries written per transaction.
FLUSH_CHUNK = 500


@dataclass(frozen=True, slots=True, repr=False)
class RecordConnections(Command[int]):
    entries: tuple[ConnectionEntry, ...]


def record_connections(cmd: RecordConnections, *, uow: UnitOfWorkFactory) -> int:
    """Append a batch of entries in one transaction; returns how many."""
    if not cmd.entries:
        return 0
    with uow() as tx:
        recorded = tx.connection_log.record(cmd.entries)
        tx.commit()
    return recorded


class ConnectionRecorder:
    """An in-memory buffer of connection-log entries that `flush()` writes through `write`.

    `add` never touches the database. `flush` writes in order, one flush at a time; a batch
    that fails to be written goes back to the front of the buffer for the next flush.
    """

    def __init__(
        self,
        write: Callable[[tuple[ConnectionEntry, ...]], object],
        *,
        max_buffered: int = MAX_BUFFERED,
        chunk: int = FLUSH_CHUNK,
    ) -> None:
        self._write = write
        self._max = max_buffered
        self._chunk = chunk
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: deque[ConnectionEntry] = deque()
        self._dropped = 0

    def add(self, entry: ConnectionEntry) -> None:
        with self._lock:
            self._pending.append(entry)
            self._trim()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write everything buffered; returns how many were written (raises what `write` does,
        after putting the unwritten entries back)."""
        with self._flushing:
            with self._lock:
                batch = list(self._pending)
                self._pending.clear()
            written = 0
            try:
                while written < len(batch):
                    chunk = tuple(batch[written : written + self._chunk])
                    self._write(chunk)
                    written += len(chunk)
            except BaseException:
                self._requeue(batch[written:])
                raise
            self._report_dropped()
            return written

    def _requeue(self, entries: list[ConnectionEntry]) -> None:
        with self._lock:
            self._pending.extendleft(reversed(entries))
            self._trim()

    def _trim(self) -> None:
        while len(self._pending) > self._max:
            self._pending.popleft()
            self._dropped += 1

    def _report_dropped(self) -> None:
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning(
                "connection log: %d entries dropped (more than %d waited to be written)",
                dropped,
                self._max,
            )
