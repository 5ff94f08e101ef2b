"""Failed logins per end-user address over gRPC: the address is the `x-forwarded-for` of a
trusted proxy; without one nothing is limited per address; several instances on one database
count together."""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc
import pytest

from idservice.adapters.crypto import KeyRing
from idservice.v1 import auth_pb2
from tests.conftest import make_settings
from tests.support.client import STRONG_PASSWORD, Client, decode
from tests.support.postgres import PostgresCluster
from tests.support.server_process import ServerProcess
from tests.support.serving import serving

LOOPBACK_PROXY = (ipaddress.ip_network("127.0.0.1/32"),)
LIMIT = 20  # the default: 20 failed logins per address per minute
ATTACKER = "203.0.113.7"
NEIGHBOUR = "198.51.100.9"


def outcome(call: Callable[[], object]) -> str:
    """ "OK", or the code and reason of the failure."""
    try:
        call()
    except grpc.RpcError as error:
        failure = decode(error)
        return f"{failure.code.name} {failure.reason}"
    return "OK"


def login(
    client: Client, email: str, password: str = STRONG_PASSWORD, *, address: str
) -> auth_pb2.PasswordLoginResponse:
    response: auth_pb2.PasswordLoginResponse = client.auth.PasswordLogin(
        auth_pb2.PasswordLoginRequest(email=email, password=password),
        metadata=(("x-forwarded-for", address),),
    )
    return response


def unknown_email() -> str:
    return f"nobody-{uuid.uuid4().hex[:10]}@example.com"


def test_the_21st_failed_login_from_an_address_is_refused(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url, trusted_proxies=LOOPBACK_PROXY)
    with serving(settings) as (_, client):
        email = client.sign_up().account.email
        failures = [
            outcome(lambda: login(client, unknown_email(), address=ATTACKER)) for _ in range(LIMIT)
        ]
        assert failures == ["UNAUTHENTICATED INVALID_CREDENTIALS"] * LIMIT
        with pytest.raises(grpc.RpcError) as info:
            login(client, unknown_email(), address=ATTACKER)
        refused = decode(info.value)
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
        )
        assert refused.retry_seconds is not None and 0 < refused.retry_seconds <= 60
        # The right password from that address waits for the window too; a neighbour signs in.
        assert outcome(lambda: login(client, email, address=ATTACKER)) == (
            "RESOURCE_EXHAUSTED RATE_LIMITED"
        )
        assert outcome(lambda: login(client, email, address=NEIGHBOUR)) == "OK"


def test_without_a_trusted_proxy_nothing_is_limited_per_address(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url)
    with serving(settings) as (_, client):
        email = client.sign_up().account.email
        failures = {
            outcome(lambda: login(client, unknown_email(), address=ATTACKER))
            for _ in range(LIMIT + 5)
        }
        assert failures == {"UNAUTHENTICATED INVALID_CREDENTIALS"}
        assert outcome(lambda: login(client, email, address=ATTACKER)) == "OK"


@pytest.mark.slow
def test_two_instances_on_one_database_count_failures_together(
    tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> None:
    if postgres_cluster is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")
    url = postgres_cluster.create_database(f"rl_{uuid.uuid4().hex[:10]}")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {
        "IDSERVICE_DATABASE_URL": url,
        "IDSERVICE_DATA_KEYS": KeyRing.generate("k1").serialize(),
        "IDSERVICE_TRUSTED_PROXIES": "127.0.0.1/32",
        "IDSERVICE_ARGON2_TIME_COST": "1",
        "IDSERVICE_ARGON2_MEMORY_COST": "1024",
        "IDSERVICE_ARGON2_PARALLELISM": "1",
    }
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(ServerProcess(env, workdir, wait=False, log_dir=tmp_path))
            for _ in range(2)
        ]
        for server in servers:
            server.wait_until_serving()
        clients = [Client(server.channel()) for server in servers]
        email = clients[0].sign_up().account.email

        # Failures spread over both instances: each sees only half of them.
        def fail_on(client: Client) -> str:
            return outcome(lambda: login(client, unknown_email(), address=ATTACKER))

        failures = [fail_on(clients[i % 2]) for i in range(LIMIT)]
        assert failures == ["UNAUTHENTICATED INVALID_CREDENTIALS"] * LIMIT
        for client in clients:
            assert fail_on(client) == "RESOURCE_EXHAUSTED RATE_LIMITED"
            assert outcome(partial(login, client, email, address=NEIGHBOUR)) == "OK"
        for server in servers:
            logs = server.logs()
            assert "unhandled" not in logs, logs
            assert server.terminate() == 0, logs
