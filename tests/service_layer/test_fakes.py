"""The fakes themselves: they are the ports (mypy checks the assignments below), and they keep
the rules use cases rely on. Repository behaviour is pinned by the contract suite in
tests/integration/test_repository_contract*.py, against SQLite and PostgreSQL too."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from idservice.domain.errors import DomainError, Reason
from idservice.domain.lockout import LockoutPolicy
from idservice.service_layer.ports import (
    DeliveryFailed,
    EventSink,
    IdentityProvider,
    PasswordHasher,
    SecretsCipher,
    TokenIssuer,
    TokenPurpose,
    UnitOfWork,
    UnitOfWorkFactory,
)
from tests.fakes.providers import FakeIdentityProvider, RecordingSink, verified_person
from tests.fakes.security import FakeClock, FakePasswordHasher, FakeSecretsCipher, FakeTokenIssuer
from tests.fakes.storage import FakeUnitOfWorkFactory, ReadOnlyWrite
from tests.fakes.storage_state import AccountRow
from tests.support.records import make_account

NOW = datetime(2025, 6, 2, 3, 0, tzinfo=UTC)


def test_the_fakes_implement_the_ports() -> None:
    factory: UnitOfWorkFactory = FakeUnitOfWorkFactory()
    uow: UnitOfWork = factory(readonly=True)
    hasher: PasswordHasher = FakePasswordHasher()
    tokens: TokenIssuer = FakeTokenIssuer()
    cipher: SecretsCipher = FakeSecretsCipher()
    provider: IdentityProvider = FakeIdentityProvider()
    sink: EventSink = RecordingSink()
    assert all((factory, uow, hasher, tokens, cipher, provider, sink))


def test_a_read_only_unit_of_work_may_not_write() -> None:
    uow = FakeUnitOfWorkFactory()
    with uow(readonly=True) as tx, pytest.raises(ReadOnlyWrite):
        tx.accounts.add(make_account(), email_key="a@example.com")


def test_a_nested_write_in_one_thread_is_refused_not_deadlocked() -> None:
    uow = FakeUnitOfWorkFactory()
    with uow(), pytest.raises(RuntimeError, match="already open"), uow():
        pass
    with uow(readonly=True), uow():
        pass  # reads never hold the lock


def test_a_unit_of_work_is_used_inside_its_with_block_only() -> None:
    tx = FakeUnitOfWorkFactory()()
    with pytest.raises(RuntimeError):
        tx.accounts.get("x")


def test_concurrent_writers_never_lose_an_update() -> None:
    uow = FakeUnitOfWorkFactory()
    account = make_account()
    policy = LockoutPolicy(threshold=1000, duration=timedelta(minutes=1))
    with uow() as tx:
        tx.accounts.add(account, email_key=None)
        tx.commit()

    def fail_ten_times() -> None:
        for _ in range(10):
            with uow() as tx:
                tx.accounts.begin_login_attempt(account.id, now=NOW, policy=policy)
                tx.accounts.end_login_attempt(account.id, succeeded=False, now=NOW, policy=policy)
                tx.commit()

    threads = [threading.Thread(target=fail_ten_times) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row: AccountRow = uow.committed().accounts[account.id]
    assert (row.account.failed_logins, row.attempts_in_flight) == (80, 0)


def test_the_hasher_is_salted_normalising_and_counted() -> None:
    hasher = FakePasswordHasher()
    first, second = hasher.hash("비밀번호 123"), hasher.hash("비밀번호 123")
    assert first != second
    assert hasher.verify(first, "비밀번호 123").ok and hasher.verify(second, "비밀번호 123").ok
    # NFKC: the full-width digits are the same password.
    assert hasher.verify(first, "비밀번호 １２３").ok
    assert not hasher.verify(first, "비밀번호 124").ok
    assert not hasher.verify("not a hash", "x").ok
    pending = hasher.verify_later(first, "비밀번호 123")
    assert pending.done() and pending.result(timeout=0).ok
    assert not hasher.burn_later("x").result().ok
    hasher.version = 2
    assert hasher.verify(first, "비밀번호 123").needs_rehash
    assert hasher.calls == {"hash": 2, "verify": 6, "verify_later": 1, "burn_later": 1}


def test_tokens_expire_at_their_whole_second() -> None:
    tokens = FakeTokenIssuer(ttl=timedelta(minutes=15))
    issued = tokens.issue(
        account_id="a", session_id="s", amr=["password"], age_band="adult", now=NOW
    )
    claims = tokens.verify(issued.token, now=NOW + timedelta(minutes=15, microseconds=-1))
    assert (claims.account_id, claims.session_id, claims.amr) == ("a", "s", ("password",))
    with pytest.raises(DomainError) as expired:
        tokens.verify(issued.token, now=issued.expires_at)
    assert expired.value.reason is Reason.TOKEN_EXPIRED
    with pytest.raises(DomainError) as unknown:
        tokens.verify(issued.token + "x", now=NOW)
    assert unknown.value.reason is Reason.TOKEN_INVALID
    with pytest.raises(ValueError, match="age_band"):
        tokens.issue(account_id="a", session_id="s", amr=["pwd"], age_band="old", now=NOW)
    with pytest.raises(ValueError, match="amr"):
        tokens.issue(account_id="a", session_id="s", amr="pwd", age_band="adult", now=NOW)


def test_keyed_hashes_separate_purposes_and_keys() -> None:
    cipher = FakeSecretsCipher()
    refresh = cipher.token_hash("t", purpose=TokenPurpose.REFRESH_TOKEN)
    assert refresh == cipher.token_hash("t", purpose=TokenPurpose.REFRESH_TOKEN)
    assert refresh != cipher.token_hash("t", purpose=TokenPurpose.SIGNUP_KEY)
    assert refresh != FakeSecretsCipher(b"other key").token_hash(
        "t", purpose=TokenPurpose.REFRESH_TOKEN
    )


def test_a_seal_opens_only_with_its_secret_and_context() -> None:
    cipher = FakeSecretsCipher()
    sealed = cipher.seal('{"refresh_token": "r"}', secret="key-1", context="ctx")
    assert "refresh_token" not in sealed
    assert cipher.unseal(sealed, secret="key-1", context="ctx") == '{"refresh_token": "r"}'
    for secret, context in (("key-2", "ctx"), ("key-1", "other")):
        with pytest.raises(ValueError):
            cipher.unseal(sealed, secret=secret, context=context)
    with pytest.raises(ValueError):
        cipher.unseal(sealed[:-2] + "AA", secret="key-1", context="ctx")
    with pytest.raises(ValueError):
        cipher.unseal("!!", secret="key-1", context="ctx")


def test_the_clock_is_aware_and_moves_only_when_told() -> None:
    clock = FakeClock(NOW)
    assert clock() == clock() == NOW
    assert clock.advance(minutes=2) == NOW + timedelta(minutes=2)
    clock.set(NOW)
    assert clock() == NOW
    with pytest.raises(ValueError):
        clock.set(datetime(2025, 1, 1))


def test_the_provider_answers_registered_people_only() -> None:
    provider = FakeIdentityProvider(name="portone")
    person = verified_person()
    verification_id = provider.verify(person)
    assert provider.fetch(verification_id, timeout=1.0) is person
    with pytest.raises(DomainError) as missing:
        provider.fetch("unknown", timeout=1.0)
    assert missing.value.reason is Reason.VERIFICATION_NOT_FOUND
    assert provider.name == "portone" and provider.fetches[0] == (verification_id, 1.0)


def test_the_sink_records_and_fails_when_told() -> None:
    sink = RecordingSink()
    sink.fail_next(1)
    with pytest.raises(DeliveryFailed):
        sink.deliver(event_id="e1", event_type="t", body=b"{}")
    sink.deliver(event_id="e1", event_type="t", body=b'{"a": 1}')
    assert sink.documents() == [{"a": 1}] and sink.attempts == 2
