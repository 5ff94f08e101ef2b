"""Argon2id hashing: PHC output checked by a second implementation, rehash, bad input, load."""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import argon2
import pytest
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from idservice.adapters.hashing import (
    BUSY_RETRY_AFTER_SECONDS,
    Argon2Parameters,
    BoundedExecutor,
    PasswordHasher,
)
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.ports import VerifyOutcome
from tests.support.recording import RecordingExecutor

# Small parameters keep the suite fast; the behaviour under test does not depend on the cost.
FAST = Argon2Parameters(time_cost=1, memory_cost=1024, parallelism=1)
FAST_BUT_DIFFERENT = Argon2Parameters(time_cost=2, memory_cost=1024, parallelism=1)
# A safety net so a broken pool fails the test instead of hanging it; never a timing assertion.
HANG_GUARD_SECONDS = 30

PHC = re.compile(r"\$argon2id\$v=19\$m=1024,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}")


@pytest.fixture
def hasher() -> Iterator[PasswordHasher]:
    h = PasswordHasher(FAST, workers=2)
    yield h
    h.shutdown()


def test_hash_is_a_standard_phc_string(hasher: PasswordHasher) -> None:
    assert PHC.fullmatch(hasher.hash("correct horse battery staple"))


def test_hash_verifies_with_cryptography_argon2id(hasher: PasswordHasher) -> None:
    encoded = hasher.hash("correct horse battery staple")
    Argon2id.verify_phc_encoded(b"correct horse battery staple", encoded)
    with pytest.raises(InvalidKey):
        Argon2id.verify_phc_encoded(b"correct horse battery stapler", encoded)


def test_hash_from_cryptography_argon2id_verifies_here(hasher: PasswordHasher) -> None:
    kdf = Argon2id(salt=b"0123456789abcdef", length=32, iterations=1, lanes=1, memory_cost=1024)
    encoded = kdf.derive_phc_encoded(b"hunter2hunter2")
    assert hasher.verify(encoded, "hunter2hunter2") == VerifyOutcome(ok=True, needs_rehash=False)


def test_salt_is_fresh_per_hash(hasher: PasswordHasher) -> None:
    assert hasher.hash("same password") != hasher.hash("same password")


def test_wrong_password_is_not_ok(hasher: PasswordHasher) -> None:
    encoded = hasher.hash("right password")
    assert hasher.verify(encoded, "wrong password") == VerifyOutcome(ok=False, needs_rehash=False)


def test_hangul_in_either_normal_form_matches(hasher: PasswordHasher) -> None:
    composed = unicodedata.normalize("NFC", "비밀번호는한글")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    encoded = hasher.hash(decomposed)
    assert hasher.verify(encoded, composed).ok
    # The stored hash is of the NFKC form, so a standard Argon2id verifier agrees.
    Argon2id.verify_phc_encoded(composed.encode(), encoded)


def test_changed_parameters_ask_for_rehash() -> None:
    old = PasswordHasher(FAST, workers=1)
    new = PasswordHasher(FAST_BUT_DIFFERENT, workers=1)
    try:
        encoded = old.hash("pw-for-rehash")
        assert new.verify(encoded, "pw-for-rehash") == VerifyOutcome(ok=True, needs_rehash=True)
        assert old.verify(encoded, "pw-for-rehash") == VerifyOutcome(ok=True, needs_rehash=False)
        # A wrong password never asks for a rehash: there is nothing to rehash with.
        assert new.verify(encoded, "nope") == VerifyOutcome(ok=False, needs_rehash=False)
    finally:
        old.shutdown()
        new.shutdown()


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=1024,t=1,p=1$!!!$!!!",
        "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2x$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "비밀번호",
    ],
)
def test_malformed_stored_hash_is_not_ok(hasher: PasswordHasher, stored: str) -> None:
    assert hasher.verify(stored, "password") == VerifyOutcome(ok=False, needs_rehash=False)


def test_truncated_stored_hash_is_not_ok(hasher: PasswordHasher) -> None:
    encoded = hasher.hash("password")
    assert not hasher.verify(encoded[:-4], "password").ok


def test_burn_accepts_any_password(hasher: PasswordHasher) -> None:
    hasher.burn("whatever the caller typed")
    hasher.burn("")


def test_sixteen_threads_hash_concurrently_and_all_verify(hasher: PasswordHasher) -> None:
    passwords = [f"password-{i}" for i in range(16)]
    with ThreadPoolExecutor(max_workers=16) as callers:
        hashes = list(callers.map(hasher.hash, passwords))
        outcomes = list(callers.map(hasher.verify, hashes, passwords))
        crossed = list(callers.map(hasher.verify, hashes, reversed(passwords)))
    assert all(o == VerifyOutcome(ok=True, needs_rehash=False) for o in outcomes)
    assert not any(o.ok for o in crossed)
    assert len(set(hashes)) == 16
    for encoded, password in zip(hashes, passwords, strict=True):
        Argon2id.verify_phc_encoded(password.encode(), encoded)


def test_full_queue_raises_server_busy_then_recovers() -> None:
    pool = BoundedExecutor(workers=1, max_queue=1)
    hasher = PasswordHasher(FAST, executor=pool)
    started = threading.Event()
    release = threading.Event()

    def hold_the_worker() -> None:
        started.set()
        release.wait(HANG_GUARD_SECONDS)

    try:
        running = pool.submit(hold_the_worker)
        assert started.wait(HANG_GUARD_SECONDS)
        queued = pool.submit(release.wait, HANG_GUARD_SECONDS)

        with pytest.raises(DomainError) as busy:
            hasher.hash("one too many")
        assert busy.value.reason is Reason.SERVER_BUSY
        assert busy.value.retry_after_seconds == BUSY_RETRY_AFTER_SECONDS
        with pytest.raises(DomainError):
            hasher.burn("also refused")

        release.set()
        running.result(HANG_GUARD_SECONDS)
        queued.result(HANG_GUARD_SECONDS)
        # The running task's slot is returned before the worker takes the queued one.
        assert hasher.verify(hasher.hash("room again"), "room again").ok
    finally:
        release.set()
        hasher.shutdown()
        pool.shutdown()


def test_shutdown_leaves_a_shared_executor_running() -> None:
    pool = BoundedExecutor(workers=1, max_queue=4)
    try:
        PasswordHasher(FAST, executor=pool).shutdown()
        assert pool.run(sum, [1, 2, 3]) == 6
    finally:
        pool.shutdown()


def test_executor_and_pool_sizes_are_exclusive() -> None:
    pool = BoundedExecutor(workers=1, max_queue=1)
    try:
        with pytest.raises(ValueError):
            PasswordHasher(FAST, workers=2, executor=pool)
    finally:
        pool.shutdown()


def test_parameters_below_rfc_9106_minimums_are_refused() -> None:
    with pytest.raises(ValueError):
        Argon2Parameters(time_cost=0)
    with pytest.raises(ValueError):
        Argon2Parameters(memory_cost=4, parallelism=1)


def test_defaults_are_owasp() -> None:
    assert Argon2Parameters() == Argon2Parameters(time_cost=2, memory_cost=19456, parallelism=1)


# --- the unknown-email decoy ------------------------------------------------------------------

OLD_PARAMETERS = Argon2Parameters(time_cost=1, memory_cost=1024, parallelism=1)
NEW_PARAMETERS = Argon2Parameters(time_cost=2, memory_cost=2048, parallelism=1)


def cost(params: argon2.Parameters) -> tuple[int, int, int]:
    return (params.time_cost, params.memory_cost, params.parallelism)


def costs(params: Argon2Parameters) -> tuple[int, int, int]:
    return (params.time_cost, params.memory_cost, params.parallelism)


@pytest.fixture
def recorder() -> Iterator[RecordingExecutor]:
    executor = RecordingExecutor()
    yield executor
    executor.shutdown()


@pytest.fixture
def old_hashes() -> list[str]:
    old = PasswordHasher(OLD_PARAMETERS, workers=1)
    try:
        return [old.hash(f"old password {i}") for i in range(3)]
    finally:
        old.shutdown()


def test_decoy_starts_at_the_configured_parameters(recorder: RecordingExecutor) -> None:
    hasher = PasswordHasher(NEW_PARAMETERS, executor=recorder)
    assert cost(hasher.decoy_parameters) == costs(NEW_PARAMETERS)
    hasher.burn("nobody's password")
    assert [cost(p) for p in recorder.verified_parameters()] == [costs(NEW_PARAMETERS)]


def test_burn_costs_the_most_common_stored_parameters(
    recorder: RecordingExecutor, old_hashes: list[str]
) -> None:
    hasher = PasswordHasher(NEW_PARAMETERS, executor=recorder)
    new_hash = hasher.hash("a new account's password")
    chosen = hasher.calibrate_decoy([*old_hashes, new_hash])
    assert cost(chosen) == costs(OLD_PARAMETERS) == cost(hasher.decoy_parameters)
    # The work really spent: a wrong password on an old account and an unknown email, alike.
    hasher.verify(old_hashes[0], "wrong password")
    hasher.burn("unknown email's password")
    assert hasher.burn_later("again").result(timeout=HANG_GUARD_SECONDS).ok is False
    verified = [cost(p) for p in recorder.verified_parameters()]
    assert verified == [costs(OLD_PARAMETERS)] * 3
    # New hashes keep the configured parameters; only the decoy follows the stored ones.
    assert cost(argon2.extract_parameters(hasher.hash("another"))) == costs(NEW_PARAMETERS)


def test_decoy_follows_the_majority_back(old_hashes: list[str]) -> None:
    hasher = PasswordHasher(NEW_PARAMETERS, workers=1)
    try:
        hasher.calibrate_decoy(old_hashes)
        new_hashes = [hasher.hash(f"rehashed {i}") for i in range(4)]
        assert cost(hasher.calibrate_decoy([*old_hashes, *new_hashes])) == costs(NEW_PARAMETERS)
    finally:
        hasher.shutdown()


def test_a_tie_goes_to_the_configured_parameters(old_hashes: list[str]) -> None:
    hasher = PasswordHasher(NEW_PARAMETERS, workers=1)
    try:
        new_hash = hasher.hash("one new")
        assert cost(hasher.calibrate_decoy([old_hashes[0], new_hash])) == costs(NEW_PARAMETERS)
    finally:
        hasher.shutdown()


@pytest.mark.parametrize(
    "stored",
    [
        [],
        ["", "not a hash", "$2b$12$" + "a" * 53],  # garbage and bcrypt
        # Argon2i, not Argon2id
        ["$argon2i$v=19$m=1024,t=1,p=1$c29tZXNhbHQxMjM0NTY3OA$" + "A" * 43],
        # Out of range: zero cost, or more memory than the configuration allows
        ["$argon2id$v=19$m=0,t=0,p=0$c29tZXNhbHQxMjM0NTY3OA$" + "A" * 43],
        ["$argon2id$v=19$m=8388608,t=1,p=1$c29tZXNhbHQxMjM0NTY3OA$" + "A" * 43],
        ["$argon2id$v=19$m=1024,t=99,p=1$c29tZXNhbHQxMjM0NTY3OA$" + "A" * 43],
    ],
)
def test_unusable_stored_hashes_leave_the_decoy_alone(stored: list[str]) -> None:
    hasher = PasswordHasher(NEW_PARAMETERS, workers=1)
    try:
        assert cost(hasher.calibrate_decoy(stored)) == costs(NEW_PARAMETERS)
    finally:
        hasher.shutdown()
