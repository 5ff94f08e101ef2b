"""The repository contract (see test_repository_contract.py): guardian consent requests (codes,
resends, decisions, wards, the outcomes of destroyed requests) and attempt counters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest

from idservice.domain.accounts import Account, AccountStatus
from idservice.domain.guardian_consent import ConsentRequestStatus
from idservice.service_layer.ports import (
    AttemptGate,
    ConsentOutcome,
    ConsentRequest,
    NewConsentRequest,
    UnitOfWorkFactory,
)
from tests.support.postgres import PostgresCluster
from tests.support.records import NOW, make_account, make_consent_request
from tests.support.repository_backends import BACKENDS, Backend, open_backend

MAX = 3
PAUSE = timedelta(minutes=15)
WINDOW = timedelta(days=5)
METHOD = "mobile_identity_verification"
IN_FLIGHT_RETRY = timedelta(seconds=1)


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> Iterator[Backend]:
    with open_backend(request.param, tmp_path, postgres_cluster) as opened:
        yield opened


def add_child(uow: UnitOfWorkFactory) -> Account:
    child = make_account(status=AccountStatus.PENDING_GUARDIAN_CONSENT)
    with uow() as tx:
        tx.accounts.add(child, email_key=None)
        tx.commit()
    return child


def open_request(
    uow: UnitOfWorkFactory, child: Account | None = None, *, at: timedelta = timedelta(0)
) -> NewConsentRequest:
    """A committed pending request (of a new child unless given) opened at NOW + `at`."""
    child = child or add_child(uow)
    request = make_consent_request(child.id, now=NOW + at, window=WINDOW)
    with uow() as tx:
        tx.guardian_consents.add(request)
        tx.commit()
    return request


def get(uow: UnitOfWorkFactory, request_id: str) -> ConsentRequest | None:
    with uow(readonly=True) as tx:
        return tx.guardian_consents.get(request_id)


def admit(uow: UnitOfWorkFactory, request_id: str, *, at: timedelta = timedelta(0)) -> AttemptGate:
    with uow() as tx:
        gate = tx.guardian_consents.admit_code_attempt(request_id, now=NOW + at, max_attempts=MAX)
        tx.commit()
    return gate


def end(
    uow: UnitOfWorkFactory, request_id: str, *, right: bool, at: timedelta = timedelta(0)
) -> None:
    with uow() as tx:
        tx.guardian_consents.end_code_attempt(
            request_id, right=right, now=NOW + at, max_attempts=MAX, pause=PAUSE
        )
        tx.commit()


def attempt(
    uow: UnitOfWorkFactory, request_id: str, *, right: bool, at: timedelta = timedelta(0)
) -> AttemptGate:
    """Admit a code and, if admitted, end it right or wrong."""
    gate = admit(uow, request_id, at=at)
    if gate.admitted:
        end(uow, request_id, right=right, at=at)
    return gate


def approve(
    uow: UnitOfWorkFactory,
    request_id: str,
    *,
    guardian_ci: str = "ci-guardian",
    at: timedelta = timedelta(0),
) -> bool:
    with uow() as tx:
        approved = tx.guardian_consents.approve(
            request_id,
            guardian_name="김보호",
            guardian_phone="+821011112222",
            guardian_ci=guardian_ci,
            method=METHOD,
            now=NOW + at,
        )
        tx.commit()
    return approved


ADMITTED = AttemptGate(admitted=True)


# -- requests --------------------------------------------------------------------------------
def test_a_request_reads_back_as_it_was_opened(backend: Backend) -> None:
    child = add_child(backend.uow)
    request = make_consent_request(child.id, window=WINDOW)
    with backend.uow() as tx:
        tx.guardian_consents.add(request)
        assert tx.guardian_consents.get(request.id) is not None  # its own writes
    assert get(backend.uow, request.id) is None  # not committed
    with backend.uow() as tx:
        tx.guardian_consents.add(request)
        tx.commit()
    assert get(backend.uow, request.id) == ConsentRequest(
        id=request.id,
        account_id=child.id,
        status=ConsentRequestStatus.PENDING,
        code_hash=request.code_hash,
        guardian_name="홍부모",
        guardian_phone="+821098765432",
        created_at=NOW,
        expires_at=NOW + WINDOW,
        decided_at=None,
        notifications_sent=1,  # the first message counts
        last_notified_at=NOW,
    )
    assert get(backend.uow, "no-such-request") is None


def test_a_duplicate_request_id_is_an_integrity_error(backend: Backend) -> None:
    request = open_request(backend.uow)
    with backend.uow() as tx, pytest.raises(backend.integrity_error):
        tx.guardian_consents.add(request)


def test_an_account_answers_its_latest_request(backend: Backend) -> None:
    child, other = add_child(backend.uow), add_child(backend.uow)
    open_request(backend.uow, child, at=timedelta(hours=1))
    latest = open_request(backend.uow, child, at=timedelta(hours=2))
    open_request(backend.uow, child)  # added last, opened first
    with backend.uow(readonly=True) as tx:
        found = tx.guardian_consents.of_account(child.id)
        assert found is not None and found.id == latest.id
        assert found == tx.guardian_consents.get(latest.id)
        assert tx.guardian_consents.of_account(other.id) is None
        assert tx.guardian_consents.of_account("no-such-account") is None


# -- the consent-code gate -------------------------------------------------------------------
def test_wrong_codes_up_to_the_bound_then_a_pause(backend: Backend) -> None:
    request = open_request(backend.uow)
    for _ in range(MAX - 1):
        assert attempt(backend.uow, request.id, right=False) == ADMITTED
    # The wrong code that reaches the bound pauses codes.
    assert attempt(backend.uow, request.id, right=False) == ADMITTED
    refused = AttemptGate(admitted=False, blocked_until=NOW + PAUSE)
    assert admit(backend.uow, request.id) == refused
    assert admit(backend.uow, request.id, at=PAUSE - timedelta(seconds=1)) == refused
    # After the pause, a full bound again.
    for _ in range(MAX - 1):
        assert attempt(backend.uow, request.id, right=False, at=PAUSE) == ADMITTED
    assert attempt(backend.uow, request.id, right=False, at=PAUSE) == ADMITTED
    assert admit(backend.uow, request.id, at=PAUSE) == AttemptGate(
        admitted=False, blocked_until=NOW + 2 * PAUSE
    )


def test_a_right_code_clears_the_count(backend: Backend) -> None:
    request = open_request(backend.uow)
    for _ in range(MAX - 1):
        attempt(backend.uow, request.id, right=False)
    assert attempt(backend.uow, request.id, right=True) == ADMITTED
    for _ in range(MAX):  # a full bound again before the pause
        assert attempt(backend.uow, request.id, right=False) == ADMITTED
    assert not admit(backend.uow, request.id).admitted


def test_attempts_in_flight_fill_the_bound(backend: Backend) -> None:
    request = open_request(backend.uow)
    assert [admit(backend.uow, request.id).admitted for _ in range(MAX)] == [True] * MAX
    # Not paused: the attempts in flight may yet be right. Retry in a moment.
    busy = AttemptGate(admitted=False, blocked_until=NOW + IN_FLIGHT_RETRY)
    assert admit(backend.uow, request.id) == busy
    # The first of them to end wrong reaches the bound and pauses codes; the others' ends
    # change nothing more.
    end(backend.uow, request.id, right=False)
    for _ in range(MAX - 1):
        end(backend.uow, request.id, right=False, at=timedelta(seconds=1))
    paused = AttemptGate(admitted=False, blocked_until=NOW + PAUSE)
    assert admit(backend.uow, request.id, at=timedelta(seconds=2)) == paused
    assert attempt(backend.uow, request.id, right=False, at=PAUSE) == ADMITTED


def test_a_right_end_frees_the_attempts_in_flight(backend: Backend) -> None:
    request = open_request(backend.uow)
    for _ in range(MAX):
        admit(backend.uow, request.id)
    end(backend.uow, request.id, right=True)
    assert admit(backend.uow, request.id) == ADMITTED


def test_an_unknown_request_admits_no_code(backend: Backend) -> None:
    busy = AttemptGate(admitted=False, blocked_until=NOW + IN_FLIGHT_RETRY)
    assert admit(backend.uow, "no-such-request") == busy
    end(backend.uow, "no-such-request", right=False)  # nothing to record, no error


def test_an_admission_without_commit_is_not_counted(backend: Backend) -> None:
    request = open_request(backend.uow)
    for _ in range(MAX):
        with backend.uow() as tx:
            gate = tx.guardian_consents.admit_code_attempt(request.id, now=NOW, max_attempts=MAX)
            assert gate == ADMITTED
    assert admit(backend.uow, request.id) == ADMITTED


# -- resends ---------------------------------------------------------------------------------
def test_replace_code_swaps_the_code_and_counts_the_send(backend: Backend) -> None:
    request = open_request(backend.uow)
    later = NOW + timedelta(minutes=2)
    with backend.uow() as tx:
        assert tx.guardian_consents.replace_code(request.id, code_hash="d" * 64, now=later)
        assert tx.guardian_consents.replace_code(request.id, code_hash="e" * 64, now=later)
        assert not tx.guardian_consents.replace_code("no-such-request", code_hash="f", now=later)
        tx.commit()
    stored = get(backend.uow, request.id)
    assert stored is not None
    assert (stored.code_hash, stored.notifications_sent, stored.last_notified_at) == (
        "e" * 64,
        3,
        later,
    )
    assert (stored.status, stored.created_at, stored.guardian_name) == (
        ConsentRequestStatus.PENDING,
        NOW,
        "홍부모",
    )


def test_replace_code_leaves_the_attempt_count(backend: Backend) -> None:
    request = open_request(backend.uow)
    for _ in range(MAX - 1):
        attempt(backend.uow, request.id, right=False)
    with backend.uow() as tx:
        assert tx.guardian_consents.replace_code(request.id, code_hash="d" * 64, now=NOW)
        tx.commit()
    assert attempt(backend.uow, request.id, right=False) == ADMITTED  # reaches the bound
    assert not admit(backend.uow, request.id).admitted


def test_replace_code_only_while_pending_and_unexpired(backend: Backend) -> None:
    expiring, approved = open_request(backend.uow), open_request(backend.uow)
    assert approve(backend.uow, approved.id)
    with backend.uow() as tx:
        assert not tx.guardian_consents.replace_code(
            expiring.id, code_hash="d" * 64, now=NOW + WINDOW
        )
        assert not tx.guardian_consents.replace_code(approved.id, code_hash="d" * 64, now=NOW)
        tx.commit()
    for request in (expiring, approved):
        stored = get(backend.uow, request.id)
        assert stored is not None
        assert (stored.code_hash, stored.notifications_sent) == (request.code_hash, 1)
    with backend.uow() as tx:  # a moment before the end of the window it still works
        assert tx.guardian_consents.replace_code(
            expiring.id, code_hash="d" * 64, now=NOW + WINDOW - timedelta(seconds=1)
        )


def test_replace_code_holds_to_the_interval_and_the_total_it_is_given(backend: Backend) -> None:
    """The resend's bounds are part of the write, so resends at once cannot all pass them."""
    request = open_request(backend.uow)  # its first message went out at NOW

    def replace(at: timedelta, max_sent: int = 5) -> bool:
        with backend.uow() as tx:
            replaced = tx.guardian_consents.replace_code(
                request.id,
                code_hash="d" * 64,
                now=NOW + at,
                sent_before=NOW + at - timedelta(minutes=1),
                max_sent=max_sent,
            )
            tx.commit()
        return replaced

    assert not replace(timedelta(seconds=59))  # a minute after the first message, not before
    assert replace(timedelta(minutes=1))
    assert not replace(timedelta(minutes=1, seconds=30))  # a minute after the last one
    assert replace(timedelta(minutes=2))
    assert not replace(timedelta(minutes=4), max_sent=3)  # three went out
    stored = get(backend.uow, request.id)
    assert stored is not None
    assert (stored.notifications_sent, stored.last_notified_at) == (3, NOW + timedelta(minutes=2))


# -- decisions -------------------------------------------------------------------------------
def test_a_request_is_approved_once_with_the_verified_guardian(backend: Backend) -> None:
    request = open_request(backend.uow)
    decided = timedelta(hours=5)
    assert approve(backend.uow, request.id, at=decided)
    assert not approve(backend.uow, request.id, at=decided + timedelta(minutes=1))
    assert not approve(backend.uow, "no-such-request")
    stored = get(backend.uow, request.id)
    assert stored == ConsentRequest(
        id=request.id,
        account_id=request.account_id,
        status=ConsentRequestStatus.APPROVED,
        code_hash=request.code_hash,
        guardian_name="김보호",  # the verified guardian replaces the given contact
        guardian_phone="+821011112222",
        created_at=NOW,
        expires_at=NOW + WINDOW,
        decided_at=NOW + decided,
        notifications_sent=1,
        last_notified_at=NOW,
        method=METHOD,
    )
    with backend.uow(readonly=True) as tx:
        assert tx.guardian_consents.expired_pending(now=NOW + WINDOW, limit=10) == []


def test_an_expired_request_is_not_approved(backend: Backend) -> None:
    request = open_request(backend.uow)
    assert not approve(backend.uow, request.id, at=WINDOW)
    stored = get(backend.uow, request.id)
    assert stored is not None and stored.status is ConsentRequestStatus.PENDING
    with backend.uow(readonly=True) as tx:
        assert not tx.guardian_consents.approved_guardian_is(request.account_id, "ci-guardian")
    assert approve(backend.uow, request.id, at=WINDOW - timedelta(seconds=1))


def test_an_approval_without_commit_is_not_kept(backend: Backend) -> None:
    request = open_request(backend.uow)
    with backend.uow() as tx:
        assert tx.guardian_consents.approve(
            request.id,
            guardian_name="김보호",
            guardian_phone="+821011112222",
            guardian_ci="ci-guardian",
            method=METHOD,
            now=NOW,
        )
        assert tx.guardian_consents.approved_wards("ci-guardian") == [request.account_id]
    stored = get(backend.uow, request.id)
    assert stored is not None and stored.status is ConsentRequestStatus.PENDING
    with backend.uow(readonly=True) as tx:
        assert tx.guardian_consents.approved_wards("ci-guardian") == []


def test_approval_clears_the_attempt_count(backend: Backend) -> None:
    request = open_request(backend.uow)
    for _ in range(MAX - 1):
        attempt(backend.uow, request.id, right=False)
    assert approve(backend.uow, request.id)
    assert [attempt(backend.uow, request.id, right=False).admitted for _ in range(MAX)] == [
        True
    ] * MAX


# -- wards -----------------------------------------------------------------------------------
def test_a_guardian_finds_the_wards_they_approved_by_ci(backend: Backend) -> None:
    first, second, third = (open_request(backend.uow) for _ in range(3))
    other_guardians = open_request(backend.uow)
    pending = open_request(backend.uow)
    assert approve(backend.uow, second.id, guardian_ci="ci-g1", at=timedelta(hours=1))
    assert approve(backend.uow, first.id, guardian_ci="ci-g1", at=timedelta(hours=2))
    assert approve(backend.uow, third.id, guardian_ci="ci-g1", at=timedelta(hours=3))
    assert approve(backend.uow, other_guardians.id, guardian_ci="ci-g2")
    with backend.uow(readonly=True) as tx:
        consents = tx.guardian_consents
        # In the order they were approved.
        assert consents.approved_wards("ci-g1") == [
            second.account_id,
            first.account_id,
            third.account_id,
        ]
        assert consents.approved_wards("ci-g2") == [other_guardians.account_id]
        assert consents.approved_wards("ci-unknown") == []
        assert consents.approved_guardian_is(first.account_id, "ci-g1")
        assert not consents.approved_guardian_is(first.account_id, "ci-g2")
        assert not consents.approved_guardian_is(other_guardians.account_id, "ci-g1")
        assert not consents.approved_guardian_is(pending.account_id, "ci-g1")
        assert not consents.approved_guardian_is("no-such-account", "ci-g1")


def test_a_wards_guardian_goes_with_the_deleted_account(backend: Backend) -> None:
    request = open_request(backend.uow)
    assert approve(backend.uow, request.id, guardian_ci="ci-g1")
    with backend.uow() as tx:
        assert tx.accounts.delete(request.account_id)
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.guardian_consents.approved_wards("ci-g1") == []
        assert not tx.guardian_consents.approved_guardian_is(request.account_id, "ci-g1")


# -- outcomes of destroyed requests ----------------------------------------------------------
def test_the_outcome_of_a_destroyed_request_stays_until_purged(backend: Backend) -> None:
    request = open_request(backend.uow)
    with backend.uow() as tx:
        assert tx.accounts.delete_pending(request.account_id)
        tx.guardian_consents.add_outcome(
            request.id,
            status=ConsentRequestStatus.REJECTED,
            expires_at=request.expires_at,
            now=NOW + timedelta(hours=1),
        )
        tx.guardian_consents.add_outcome(
            "expired-1",
            status=ConsentRequestStatus.EXPIRED,
            expires_at=NOW,
            now=NOW + timedelta(hours=3),
        )
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.guardian_consents.get(request.id) is None
        assert tx.guardian_consents.outcome(request.id) == ConsentOutcome(
            status=ConsentRequestStatus.REJECTED, expires_at=NOW + WINDOW
        )
        assert tx.guardian_consents.outcome("expired-1") == ConsentOutcome(
            status=ConsentRequestStatus.EXPIRED, expires_at=NOW
        )
        assert tx.guardian_consents.outcome("no-such-request") is None
    with backend.uow() as tx:
        # Strictly before: the outcome decided at NOW + 1 h is kept at `before` = NOW + 1 h.
        assert tx.guardian_consents.purge_outcomes(before=NOW + timedelta(hours=1)) == 0
        assert tx.guardian_consents.purge_outcomes(before=NOW + timedelta(hours=2)) == 1
        assert tx.guardian_consents.purge_outcomes(before=NOW + timedelta(hours=2)) == 0
        tx.commit()
    with backend.uow(readonly=True) as tx:
        assert tx.guardian_consents.outcome(request.id) is None
        assert tx.guardian_consents.outcome("expired-1") is not None


def test_an_outcome_is_recorded_once(backend: Backend) -> None:
    with backend.uow() as tx:
        tx.guardian_consents.add_outcome(
            "r-1", status=ConsentRequestStatus.EXPIRED, expires_at=NOW, now=NOW
        )
        tx.commit()
    with backend.uow() as tx, pytest.raises(backend.integrity_error):
        tx.guardian_consents.add_outcome(
            "r-1", status=ConsentRequestStatus.REJECTED, expires_at=NOW, now=NOW
        )


def test_an_outcome_without_commit_is_not_kept(backend: Backend) -> None:
    with backend.uow() as tx:
        tx.guardian_consents.add_outcome(
            "r-1", status=ConsentRequestStatus.EXPIRED, expires_at=NOW, now=NOW
        )
        assert tx.guardian_consents.outcome("r-1") is not None
    with backend.uow(readonly=True) as tx:
        assert tx.guardian_consents.outcome("r-1") is None


# -- attempt counters ------------------------------------------------------------------------
LIMIT = 3
COUNTER_WINDOW = timedelta(minutes=10)
BLOCK = timedelta(minutes=10)


def hit(
    uow: UnitOfWorkFactory,
    key: str = "k-1",
    *,
    at: timedelta = timedelta(0),
    scope: str = "consent-code",
    block_for: timedelta | None = BLOCK,
) -> AttemptGate:
    with uow() as tx:
        gate = tx.attempt_counters.hit(
            scope,
            key,
            now=NOW + at,
            window=COUNTER_WINDOW,
            limit=LIMIT,
            block_for=block_for,
        )
        tx.commit()
    return gate


def test_hits_past_the_limit_block_the_caller(backend: Backend) -> None:
    assert [hit(backend.uow, at=timedelta(minutes=m)) for m in range(LIMIT)] == [ADMITTED] * LIMIT
    blocked = AttemptGate(admitted=False, blocked_until=NOW + timedelta(minutes=2) + BLOCK)
    assert hit(backend.uow, at=timedelta(minutes=2)) == blocked
    # While blocked, hits are refused with the same end (they do not extend it).
    assert hit(backend.uow, at=timedelta(minutes=5)) == blocked
    assert hit(backend.uow, at=timedelta(minutes=12) - timedelta(seconds=1)) == blocked
    # Once the block ended (and with it the window), a new window starts.
    at = timedelta(minutes=12)
    assert [hit(backend.uow, at=at) for _ in range(LIMIT)] == [ADMITTED] * LIMIT
    assert not hit(backend.uow, at=at).admitted


def test_a_new_window_starts_the_count_again(backend: Backend) -> None:
    assert [hit(backend.uow) for _ in range(LIMIT)] == [ADMITTED] * LIMIT
    # The window runs from its first hit: at its end, the count starts again.
    assert [hit(backend.uow, at=COUNTER_WINDOW) for _ in range(LIMIT)] == [ADMITTED] * LIMIT
    assert hit(backend.uow, at=COUNTER_WINDOW) == AttemptGate(
        admitted=False, blocked_until=NOW + COUNTER_WINDOW + BLOCK
    )


def test_a_block_shorter_than_the_window_ends_into_the_same_window(backend: Backend) -> None:
    short = timedelta(minutes=1)
    for _ in range(LIMIT):
        hit(backend.uow, block_for=short)
    assert hit(backend.uow, block_for=short) == AttemptGate(
        admitted=False, blocked_until=NOW + short
    )
    # The window still runs and its count is past the limit: the next hit blocks again.
    later = timedelta(minutes=2)
    assert hit(backend.uow, at=later, block_for=short) == AttemptGate(
        admitted=False, blocked_until=NOW + later + short
    )


def test_a_fixed_window_refuses_at_its_limit_and_a_release_admits_again(
    backend: Backend,
) -> None:
    """Attempts counted before their outcome (a login, released when it turned out right): a
    burst of them at the limit refuses the rest for the moment, but neither counts the refusals
    nor blocks the caller for the window, so the released ones admit again."""
    fixed = partial(hit, backend.uow, scope="login-address", block_for=None)
    assert [fixed() for _ in range(LIMIT)] == [ADMITTED] * LIMIT
    refused = AttemptGate(admitted=False, blocked_until=NOW + COUNTER_WINDOW)
    assert [fixed(at=timedelta(seconds=s)) for s in range(5)] == [refused] * 5
    for _ in range(2):
        with backend.uow() as tx:
            tx.attempt_counters.release("login-address", "k-1", counted_at=NOW)
            tx.commit()
    assert [fixed(at=timedelta(minutes=1)) for _ in range(3)] == [ADMITTED, ADMITTED, refused]
    # The window's end admits a full count again.
    assert [fixed(at=COUNTER_WINDOW) for _ in range(LIMIT)] == [ADMITTED] * LIMIT


def test_a_refusal_at_the_limit_is_a_read_that_waits_for_no_lock(backend: Backend) -> None:
    """A flood from one address must not queue on its counter's row: at the limit a hit is
    refused on what it reads, even while another transaction holds the row (PostgreSQL; SQLite
    has one writer at a time, the fakes no locks)."""
    if backend.name != "postgres":
        pytest.skip("row locks are PostgreSQL's")
    fixed = partial(hit, backend.uow, scope="login-address", block_for=None)
    assert [fixed() for _ in range(LIMIT)] == [ADMITTED] * LIMIT
    answers: list[AttemptGate] = []
    with backend.uow() as holder:  # a release in flight holds the row
        holder.attempt_counters.release("login-address", "k-1", counted_at=NOW)
        refused = threading.Thread(target=lambda: answers.append(fixed()))
        refused.start()
        refused.join(5)
        assert not refused.is_alive(), "the refusal waited for the row's lock"
    assert answers == [AttemptGate(admitted=False, blocked_until=NOW + COUNTER_WINDOW)]


def test_counters_are_per_scope_and_key(backend: Backend) -> None:
    for _ in range(LIMIT + 1):
        hit(backend.uow, "k-1")
    assert not hit(backend.uow, "k-1").admitted
    assert hit(backend.uow, "k-2") == ADMITTED
    assert hit(backend.uow, "k-1", scope="other-scope") == ADMITTED


def test_a_hit_without_commit_is_not_counted(backend: Backend) -> None:
    for _ in range(LIMIT + 1):
        with backend.uow() as tx:
            gate = tx.attempt_counters.hit(
                "consent-code",
                "k-1",
                now=NOW,
                window=COUNTER_WINDOW,
                limit=LIMIT,
                block_for=BLOCK,
            )
            assert gate == ADMITTED
    assert [hit(backend.uow) for _ in range(LIMIT)] == [ADMITTED] * LIMIT


def test_purge_forgets_old_windows_that_block_nobody(backend: Backend) -> None:
    hit(backend.uow, "old")  # window from NOW
    for _ in range(LIMIT + 1):
        hit(backend.uow, "blocked")  # window from NOW, blocked until NOW + BLOCK
    recent = BLOCK + timedelta(minutes=1)
    hit(backend.uow, "recent", at=recent)
    with backend.uow() as tx:
        assert tx.attempt_counters.purge_expired(before=NOW) == 0  # strictly before
        assert tx.attempt_counters.purge_expired(before=NOW + timedelta(minutes=1)) == 1
        assert tx.attempt_counters.purge_expired(before=NOW + BLOCK) == 0  # still blocking
        assert tx.attempt_counters.purge_expired(before=NOW + BLOCK + timedelta(seconds=1)) == 1
        tx.commit()
    # A purged counter starts from nothing (kept, "blocked" would refuse until NOW + BLOCK).
    at = timedelta(minutes=6)
    assert [hit(backend.uow, "blocked", at=at) for _ in range(LIMIT)] == [ADMITTED] * LIMIT
    assert not hit(backend.uow, "blocked", at=at).admitted
    # The recent one kept its count.
    kept = [hit(backend.uow, "recent", at=recent) for _ in range(LIMIT - 1)]
    assert kept == [ADMITTED] * (LIMIT - 1)
    assert not hit(backend.uow, "recent", at=recent).admitted


def test_a_block_without_a_length_lasts_until_the_window_ends(backend: Backend) -> None:
    assert [hit(backend.uow, at=timedelta(minutes=m)) for m in range(LIMIT)] == [ADMITTED] * LIMIT
    until_window_end = AttemptGate(admitted=False, blocked_until=NOW + COUNTER_WINDOW)
    assert hit(backend.uow, at=timedelta(minutes=3), block_for=None) == until_window_end
    assert hit(backend.uow, at=COUNTER_WINDOW - timedelta(seconds=1), block_for=None) == (
        until_window_end
    )
    assert hit(backend.uow, at=COUNTER_WINDOW, block_for=None) == ADMITTED


def release(uow: UnitOfWorkFactory, key: str = "k-1", *, at: timedelta = timedelta(0)) -> None:
    with uow() as tx:
        tx.attempt_counters.release("consent-code", key, counted_at=NOW + at)
        tx.commit()


def test_a_released_hit_no_longer_counts(backend: Backend) -> None:
    for _ in range(LIMIT):
        hit(backend.uow)
        release(backend.uow)
    assert [hit(backend.uow) for _ in range(LIMIT)] == [ADMITTED] * LIMIT
    assert not hit(backend.uow).admitted
    # A release never takes the count below nothing, nor touches another key.
    release(backend.uow, "k-2")
    for _ in range(3):
        release(backend.uow, "k-3")
        hit(backend.uow, "k-3")
    assert [hit(backend.uow, "k-3") for _ in range(LIMIT - 1)] == [ADMITTED] * (LIMIT - 1)
    assert not hit(backend.uow, "k-3").admitted


def test_a_release_of_an_earlier_window_leaves_the_new_one_alone(backend: Backend) -> None:
    hit(backend.uow)
    assert [hit(backend.uow, at=COUNTER_WINDOW) for _ in range(LIMIT)] == [ADMITTED] * LIMIT
    release(backend.uow)  # counted at NOW, in the window that ended
    assert not hit(backend.uow, at=COUNTER_WINDOW).admitted


@pytest.mark.parametrize("at", [timedelta(0), COUNTER_WINDOW], ids=["first", "next-window"])
def test_concurrent_hits_never_admit_more_than_the_limit(backend: Backend, at: timedelta) -> None:
    """Many threads hit one key at once (on a new key, or just as the last window ended, where
    each may try to start the new window): exactly `limit` are admitted."""
    if at:
        for _ in range(LIMIT):
            hit(backend.uow, "shared")
    threads, limit = 16, 5
    start = threading.Barrier(threads)

    def one(_: int) -> bool:
        start.wait(timeout=30)
        with backend.uow() as tx:
            gate = tx.attempt_counters.hit(
                "consent-code",
                "shared",
                now=NOW + at,
                window=COUNTER_WINDOW,
                limit=limit,
                block_for=None,
            )
            tx.commit()
        return gate.admitted

    with ThreadPoolExecutor(max_workers=threads) as pool:
        admitted = list(pool.map(one, range(threads)))
    assert admitted.count(True) == limit


def test_concurrent_code_attempts_on_one_request_never_pass_its_bound(backend: Backend) -> None:
    """The bound of codes per request lives on its row: writers on any instance share it."""
    request = open_request(backend.uow)
    threads = 16
    start = threading.Barrier(threads)

    def one(_: int) -> bool:
        start.wait(timeout=30)
        gate = attempt(backend.uow, request.id, right=False)
        return gate.admitted

    with ThreadPoolExecutor(max_workers=threads) as pool:
        admitted = list(pool.map(one, range(threads)))
    assert admitted.count(True) == MAX
    assert not admit(backend.uow, request.id).admitted
