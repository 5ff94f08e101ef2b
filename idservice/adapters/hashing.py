"""Argon2id password hashing on a bounded thread pool: logins use every core, bursts fail fast."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, ParamSpec, Protocol, TypeVar

import argon2
from argon2.exceptions import VerificationError

from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.ports import VerifyOutcome

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

# Waiting hashes allowed per worker before SERVER_BUSY. At OWASP parameters a hash takes tens of
# milliseconds, so 64 queued per core is roughly a second or two of backlog: beyond that a caller
# is better served by retrying than by waiting behind the burst.
QUEUE_DEPTH_PER_WORKER = 64
# RetryInfo of SERVER_BUSY (contract.md §3): about the time the backlog above takes to drain.
BUSY_RETRY_AFTER_SECONDS = 1.0
# RFC 9106 §3.1: a 128-bit salt is sufficient; a 256-bit tag (the argon2-cffi default) is ample.
SALT_BYTES = 16
HASH_BYTES = 32
# NIST SP 800-63B §3.1.1.2: normalise Unicode passwords (NFKC or NFKD) before hashing, so the
# same Hangul typed on keyboards that send composed syllables or decomposed jamo still matches.
UNICODE_NORMAL_FORM: Final = "NFKC"
# Stored hashes whose parameters lie outside what the service could have been configured with
# (IDSERVICE_ARGON2_*) are never adopted for the decoy: one odd row must not make every
# unknown-email attempt cost gigabytes.
MAX_DECOY_TIME_COST = 20
MAX_DECOY_MEMORY_COST = 4 * 1024 * 1024  # KiB
MAX_DECOY_PARALLELISM = 16
DECOY_SALT_BYTES_RANGE = range(8, 65)
DECOY_HASH_BYTES_RANGE = range(4, 65)


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """Argon2id cost parameters.

    Defaults are the OWASP Password Storage Cheat Sheet's (m=19 MiB, t=2, p=1). One lane per hash:
    parallelism comes from serving many requests at once, not from splitting one hash.
    """

    time_cost: int = 2
    memory_cost: int = 19456  # KiB
    parallelism: int = 1

    def __post_init__(self) -> None:
        # RFC 9106 §3.1: t ≥ 1, p ≥ 1 and m ≥ 8·p KiB; anything below is a configuration error.
        if self.time_cost < 1 or self.parallelism < 1 or self.memory_cost < 8 * self.parallelism:
            raise ValueError("Argon2 parameters need t >= 1, p >= 1 and m >= 8*p KiB")


def default_worker_count() -> int:
    # The CPUs this process may run on (a cpuset in a container), not the host's count.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class PoolObserver(Protocol):
    """Told what happens in a BoundedExecutor (for metrics): each task admitted is `queued`,
    then `started` with the seconds it waited for a thread (unless cancelled first), then
    `finished`. Called on the submitting and worker threads: keep it cheap and non-raising."""

    def queued(self) -> None: ...

    def started(self, waited_seconds: float) -> None: ...

    def finished(self) -> None: ...


class BoundedExecutor:
    """A thread pool that refuses work with SERVER_BUSY once `workers + max_queue` tasks are in it.

    An unbounded queue would let a login burst pile up waiting requests (and their threads) without
    limit; refusing early keeps latency and memory bounded and tells callers when to retry.
    """

    def __init__(
        self,
        workers: int,
        max_queue: int,
        *,
        thread_name_prefix: str = "argon2",
        observer: PoolObserver | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must not be negative")
        self.workers = workers
        self.max_queue = max_queue
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name_prefix)
        self._slots = threading.BoundedSemaphore(workers + max_queue)
        self._observer = observer

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue `fn`, or raise SERVER_BUSY at once when the pool and its queue are full."""
        if not self._slots.acquire(blocking=False):
            raise DomainError(
                Reason.SERVER_BUSY,
                "too many password checks in progress; retry shortly",
                retry_after_seconds=BUSY_RETRY_AFTER_SECONDS,
            )
        observer = self._observer
        try:
            if observer is None:
                future = self._pool.submit(fn, *args, **kwargs)
            else:
                observer.queued()
                future = self._pool.submit(_timed, observer, time.perf_counter(), fn, args, kwargs)
        except BaseException:
            self._release_slot(None)
            raise
        # A done callback also runs when a queued task is cancelled, so no slot can leak.
        future.add_done_callback(self._release_slot)
        return future

    def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the pool and wait for its result (for synchronous gRPC handler threads)."""
        return self.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        """Stop accepting work, cancel what is still queued and wait for running tasks."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _release_slot(self, _future: Future[T] | None) -> None:
        self._slots.release()
        if self._observer is not None:
            self._observer.finished()


def _timed(
    observer: PoolObserver,
    queued_at: float,
    fn: Callable[..., T],
    args: tuple[object, ...],
    kwargs: dict[str, object],
) -> T:
    """Run `fn` on a pool thread, first telling `observer` how long it waited for one."""
    observer.started(time.perf_counter() - queued_at)
    return fn(*args, **kwargs)


class PasswordHasher:
    """Argon2id hashing and verification, run on a bounded pool sized to the available CPUs.

    argon2-cffi releases the GIL while hashing, so concurrent logins really use every core.
    Passwords are NFKC-normalised first (see UNICODE_NORMAL_FORM).
    """

    def __init__(
        self,
        params: Argon2Parameters,
        *,
        workers: int | None = None,
        max_queue: int | None = None,
        executor: BoundedExecutor | None = None,
        observer: PoolObserver | None = None,
    ) -> None:
        """`observer` (for metrics) is told of every hash queued, started and finished on the
        pool this hasher creates; an `executor` passed in brings its own."""
        self.params = params
        self._argon2 = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            hash_len=HASH_BYTES,
            salt_len=SALT_BYTES,
            type=argon2.Type.ID,
        )
        if executor is not None:
            if workers is not None or max_queue is not None or observer is not None:
                raise ValueError("pass either an executor or workers/max_queue/observer, not both")
            self._executor = executor
            self._owns_executor = False
        else:
            pool_size = workers if workers is not None else default_worker_count()
            queue = max_queue if max_queue is not None else pool_size * QUEUE_DEPTH_PER_WORKER
            self._executor = BoundedExecutor(pool_size, queue, observer=observer)
            self._owns_executor = True
        # burn() verifies against this decoy, so an unknown email costs what a known one does.
        # It starts at the configured parameters; calibrate_decoy() moves it to those of the
        # most common stored hash (after a parameter change most accounts keep the old ones
        # until their next login).
        self._decoy_hash = self._argon2.hash(secrets.token_urlsafe(32))
        self._configured = argon2.extract_parameters(self._decoy_hash)

    def hash(self, password: str) -> str:
        """The PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash` of `password`."""
        return self._executor.run(self._argon2.hash, _normalize(password))

    def verify(self, encoded: str, password: str) -> VerifyOutcome:
        """Check `password` against a stored PHC string; never raises for a mismatch or bad hash."""
        return self._executor.run(self._verify_now, encoded, _normalize(password))

    def verify_later(self, encoded: str, password: str) -> Future[VerifyOutcome]:
        """Queue a verification now (SERVER_BUSY is decided here) and collect it later."""
        return self._executor.submit(self._verify_now, encoded, _normalize(password))

    def burn_later(self, password: str) -> Future[VerifyOutcome]:
        """`burn`, queued now and collected later (see verify_later)."""
        return self._executor.submit(self._verify_now, self._decoy_hash, _normalize(password))

    def burn(self, password: str) -> None:
        """Spend a real verification's work for an email that has no account (timing parity)."""
        self._executor.run(self._verify_now, self._decoy_hash, _normalize(password))

    @property
    def decoy_parameters(self) -> argon2.Parameters:
        """The Argon2 parameters `burn` spends: what an unknown email costs."""
        return argon2.extract_parameters(self._decoy_hash)

    def calibrate_decoy(self, stored_hashes: Iterable[str]) -> argon2.Parameters:
        """Set the decoy to the parameters most of `stored_hashes` use, and return them.

        `stored_hashes` is a sample of the accounts' PHC strings. A wrong password costs what
        the account's own hash costs, so after IDSERVICE_ARGON2_* is raised an unknown email
        hashed at the new parameters would stand out against the many accounts still at the
        old ones; the most common parameters make it look like a typical account. Hashes that
        are not Argon2id or whose parameters are out of range are ignored; with none left the
        decoy stays as it is. Ties go to the configured parameters, then to
        the more expensive.
        """
        counts: Counter[_CostKey] = Counter()
        examples: dict[_CostKey, argon2.Parameters] = {}
        for encoded in stored_hashes:
            params = _decoy_candidate(encoded)
            if params is not None:
                key = _cost_key(params)
                counts[key] += 1
                examples.setdefault(key, params)
        if not counts:
            return self.decoy_parameters
        configured = _cost_key(self._configured)
        key, count = max(
            counts.items(),
            key=lambda item: (item[1], item[0] == configured, item[0][0] * item[0][1], item[0]),
        )
        if key != _cost_key(self.decoy_parameters):
            decoy = argon2.PasswordHasher.from_parameters(examples[key])
            self._decoy_hash = decoy.hash(secrets.token_urlsafe(32))
        if key != configured:
            log.info(
                "unknown emails cost the most common stored Argon2 parameters "
                "(m=%d,t=%d,p=%d; %d of %d sampled hashes), not the configured ones",
                key[1],
                key[0],
                key[2],
                count,
                sum(counts.values()),
            )
        return self.decoy_parameters

    def shutdown(self) -> None:
        """Close the worker pool if this hasher created it."""
        if self._owns_executor:
            self._executor.shutdown()

    def _verify_now(self, encoded: str, password: str) -> VerifyOutcome:
        try:
            self._argon2.verify(encoded, password)
        except (VerificationError, ValueError):
            # VerifyMismatchError is a VerificationError; a malformed or non-ASCII stored hash
            # raises InvalidHashError/UnicodeError (both ValueError). All mean "no match".
            return VerifyOutcome(ok=False, needs_rehash=False)
        return VerifyOutcome(ok=True, needs_rehash=self._argon2.check_needs_rehash(encoded))


def _normalize(password: str) -> str:
    return unicodedata.normalize(UNICODE_NORMAL_FORM, password)


# (time_cost, memory_cost, parallelism, salt_len, hash_len)
_CostKey = tuple[int, int, int, int, int]


def _cost_key(params: argon2.Parameters) -> _CostKey:
    """What the work of verifying a hash depends on: t, m, p and the salt and tag lengths."""
    return (
        params.time_cost,
        params.memory_cost,
        params.parallelism,
        params.salt_len,
        params.hash_len,
    )


def _decoy_candidate(encoded: str) -> argon2.Parameters | None:
    """The parameters of a stored Argon2id PHC string, or None if unusable for the decoy."""
    try:
        params = argon2.extract_parameters(encoded)
    except (ValueError, TypeError):
        return None
    usable = (
        params.type is argon2.Type.ID
        and 1 <= params.time_cost <= MAX_DECOY_TIME_COST
        and 1 <= params.parallelism <= MAX_DECOY_PARALLELISM
        and 8 * params.parallelism <= params.memory_cost <= MAX_DECOY_MEMORY_COST
        and params.salt_len in DECOY_SALT_BYTES_RANGE
        and params.hash_len in DECOY_HASH_BYTES_RANGE
    )
    return params if usable else None
