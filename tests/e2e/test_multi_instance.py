"""Two `idservice serve` instances, two server processes each, on one PostgreSQL database: the
service behaves as one instance does (issue: several instances as one service).

Every call goes through one of several channels, each with its own TCP connection, so calls land
on both instances and, behind `SO_REUSEPORT`, on both processes of each.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import grpc
import pytest
import sqlalchemy

from idservice.adapters.crypto import KeyRing
from idservice.adapters.db import tables
from idservice.v1 import account_pb2, auth_pb2, common_pb2
from tests.support.client import (
    STRONG_PASSWORD,
    Client,
    RpcFailure,
    decode,
    new_person,
)
from tests.support.postgres import PostgresCluster
from tests.support.server_process import ServerProcess

pytestmark = pytest.mark.slow

C = grpc.StatusCode
INSTANCES = 2
PROCESSES_EACH = 2
# Channels per instance: separate connections, so SO_REUSEPORT spreads them over the processes.
CHANNELS_EACH = 4
RPC_TIMEOUT = 60.0
WRONG_PASSWORD = "not-the-password-at-all"
T = TypeVar("T")
FAST_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
}


@dataclass
class Fleet:
    """Clients over every channel of both instances, and the database they share."""

    url: str
    clients: list[Client]

    def each(self) -> Iterator[Client]:
        """Every client once, alternating between the instances."""
        return iter(self.clients)

    def round_robin(self) -> Iterator[Client]:
        return itertools.cycle(self.clients)

    def count_accounts(self) -> int:
        engine = sqlalchemy.create_engine(self.url)
        try:
            with engine.connect() as connection:
                return int(
                    connection.execute(
                        sqlalchemy.select(sqlalchemy.func.count()).select_from(tables.accounts)
                    ).scalar_one()
                )
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def fleet(
    postgres_cluster: PostgresCluster | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    if postgres_cluster is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")
    url = postgres_cluster.create_database(f"fleet_{uuid.uuid4().hex[:10]}")
    root = tmp_path_factory.mktemp("fleet")
    workdir = root / "cwd"
    workdir.mkdir()
    env = {
        **FAST_ARGON2,
        "IDSERVICE_DATABASE_URL": url,
        "IDSERVICE_PROCESSES": str(PROCESSES_EACH),
        # One key ring and (from the shared working directory) one signing key for all.
        "IDSERVICE_DATA_KEYS": KeyRing.generate("k1").serialize(),
    }
    with contextlib.ExitStack() as stack:
        servers = []
        for _ in range(INSTANCES):
            servers.append(stack.enter_context(ServerProcess(env, workdir, log_dir=root)))
        channels: list[grpc.Channel] = []
        for _ in range(CHANNELS_EACH):
            for server in servers:
                channel = grpc.insecure_channel(
                    server.address, options=[("grpc.use_local_subchannel_pool", 1)]
                )
                stack.callback(channel.close)
                channels.append(channel)
        yield Fleet(url=url, clients=[Client(channel) for channel in channels])


def _refresh(client: Client, token: str) -> common_pb2.Session:
    return client.auth.RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=token), timeout=RPC_TIMEOUT
    ).session


def _account(client: Client, access_token: str) -> common_pb2.Account:
    return client.accounts.GetAccount(
        account_pb2.GetAccountRequest(), metadata=client.bearer(access_token), timeout=RPC_TIMEOUT
    ).account


def _active(client: Client, access_token: str) -> bool:
    return client.auth.IntrospectToken(
        auth_pb2.IntrospectTokenRequest(access_token=access_token), timeout=RPC_TIMEOUT
    ).active


def _outcome(call: Callable[[], T]) -> T | RpcFailure:
    """The answer, or the failure it ended with (each call made once)."""
    try:
        return call()
    except grpc.RpcError as error:
        return decode(error)


def _login(client: Client, email: str, password: str) -> object:
    return client.login(email, password)


def _refused(
    call: Callable[..., object],
    client: Client,
    argument: str,
    code: grpc.StatusCode,
    reason: str,
    *more: str,
) -> None:
    outcome = _outcome(lambda: call(client, argument, *more))
    assert isinstance(outcome, RpcFailure), outcome
    _is(outcome, code, reason)


def _is(failure: RpcFailure, code: grpc.StatusCode, reason: str) -> None:
    assert (failure.code, failure.reason) == (code, reason), failure


def test_a_session_is_seen_by_every_instance_and_its_end_at_once(fleet: Fleet) -> None:
    first, *others = fleet.clients
    signed = first.sign_up()
    session = signed.session
    for client in others:
        assert _account(client, session.access_token).id == signed.account.id
        assert _active(client, session.access_token)

    # Ended through one instance: every process of every instance refuses it on the next call.
    others[0].auth.Logout(
        auth_pb2.LogoutRequest(refresh_token=session.refresh_token), timeout=RPC_TIMEOUT
    )
    for client in fleet.each():
        assert not _active(client, session.access_token)
        _refused(_account, client, session.access_token, C.UNAUTHENTICATED, "TOKEN_INVALID")
        _refused(_refresh, client, session.refresh_token, C.UNAUTHENTICATED, "TOKEN_INVALID")


def test_refresh_reuse_is_detected_whichever_instance_sees_the_replay(fleet: Fleet) -> None:
    clients = fleet.round_robin()
    signed = next(clients).sign_up()
    first = signed.session
    second = _refresh(next(clients), first.refresh_token)
    third = _refresh(next(clients), second.refresh_token)

    # The replay of a rotated token on another instance kills the whole session everywhere.
    _refused(_refresh, next(clients), first.refresh_token, C.UNAUTHENTICATED, "TOKEN_INVALID")
    for client in fleet.each():
        _refused(_refresh, client, third.refresh_token, C.UNAUTHENTICATED, "TOKEN_INVALID")
        assert not _active(client, third.access_token)


def test_racing_refreshes_of_one_token_over_instances_rotate_it_once(fleet: Fleet) -> None:
    session = fleet.clients[0].sign_up().session
    barrier = threading.Barrier(len(fleet.clients))

    def race(client: Client) -> common_pb2.Session | RpcFailure:
        barrier.wait(timeout=RPC_TIMEOUT)
        return _outcome(lambda: _refresh(client, session.refresh_token))

    with ThreadPoolExecutor(len(fleet.clients)) as pool:
        outcomes = list(pool.map(race, fleet.each()))
    rotated = [o for o in outcomes if isinstance(o, common_pb2.Session)]
    # At most one caller gets the next token: a concurrent second use is a replay, which ends
    # the session (so even the one rotation may be revoked by then).
    assert len(rotated) <= 1
    for outcome in outcomes:
        if isinstance(outcome, RpcFailure):
            _is(outcome, C.UNAUTHENTICATED, "TOKEN_INVALID")
    for rotation in rotated:
        for client in fleet.each():
            assert not _active(client, rotation.access_token)


def test_a_lockout_counts_failures_on_every_instance(fleet: Fleet) -> None:
    clients = fleet.round_robin()
    email = next(clients).sign_up().account.email
    threshold = 5  # IDSERVICE_LOCKOUT_THRESHOLD's default
    for _ in range(threshold):
        _refused(
            _login, next(clients), email, C.UNAUTHENTICATED, "INVALID_CREDENTIALS", WRONG_PASSWORD
        )
    for client in fleet.each():
        _refused(_login, client, email, C.PERMISSION_DENIED, "ACCOUNT_LOCKED", STRONG_PASSWORD)


def test_one_idempotency_key_over_every_instance_makes_one_account(fleet: Fleet) -> None:
    before = fleet.count_accounts()
    request = fleet.clients[0].signup_request(
        new_person(), idempotency_key=f"fleet-{uuid.uuid4().hex}"
    )
    barrier = threading.Barrier(len(fleet.clients))

    def sign_up(client: Client) -> account_pb2.SignUpResponse:
        barrier.wait(timeout=RPC_TIMEOUT)
        return client.accounts.SignUp(request, timeout=RPC_TIMEOUT)

    with ThreadPoolExecutor(len(fleet.clients)) as pool:
        answers = list(pool.map(sign_up, fleet.each()))
    assert len({answer.account.id for answer in answers}) == 1
    assert fleet.count_accounts() == before + 1


def test_one_person_racing_over_every_instance_gets_one_account(fleet: Fleet) -> None:
    person = new_person()
    clients = fleet.clients
    before = fleet.count_accounts()
    tokens = [
        clients[i % len(clients)].verify(person, attempt=i).verification_token
        for i in range(len(clients) * 3)
    ]
    barrier = threading.Barrier(len(tokens))

    def sign_up(i: int) -> account_pb2.SignUpResponse | RpcFailure:
        client = clients[i % len(clients)]
        request = client.signup_request(person, verification_token=tokens[i])
        barrier.wait(timeout=RPC_TIMEOUT)
        return _outcome(lambda: client.accounts.SignUp(request, timeout=RPC_TIMEOUT))

    with ThreadPoolExecutor(len(tokens)) as pool:
        outcomes = list(pool.map(sign_up, range(len(tokens))))
    accepted = [o for o in outcomes if isinstance(o, account_pb2.SignUpResponse)]
    assert len(accepted) == 1
    for outcome in outcomes:
        if isinstance(outcome, RpcFailure):
            _is(outcome, C.ALREADY_EXISTS, "IDENTITY_ALREADY_REGISTERED")
    assert fleet.count_accounts() == before + 1
