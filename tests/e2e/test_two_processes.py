"""One person racing 100 SignUps over two `idservice serve` processes on one database."""

from __future__ import annotations

import collections
import contextlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import sqlalchemy

from idservice.adapters.crypto import KeyRing
from idservice.adapters.db import tables
from idservice.v1 import account_pb2
from tests.support.client import Client, RpcFailure, decode, new_person
from tests.support.server_process import ServerProcess

pytestmark = pytest.mark.slow

SIGNUPS = 100
SERVERS = 2
FAST_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
}
# Bounds on every wait; nothing here asserts how long anything takes.
BARRIER_TIMEOUT = 60.0
RPC_TIMEOUT = 120.0

Outcome = account_pb2.SignUpResponse | RpcFailure


def _masked(email: str) -> str:
    """Contract §2: the first two characters of the local part, `***`, then `@domain`."""
    local, _, domain = email.rpartition("@")
    return f"{local[:2]}***@{domain}"


def _account_count(url: str) -> int:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            count = connection.execute(
                sqlalchemy.select(sqlalchemy.func.count()).select_from(tables.accounts)
            ).scalar_one()
    finally:
        engine.dispose()
    return int(count)


def test_one_person_racing_signups_over_two_processes_gets_one_account(
    database_url: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {
        **FAST_ARGON2,
        "IDSERVICE_DATABASE_URL": database_url,
        # Both processes must share the ring: the CI/DI blind indexes decide uniqueness.
        "IDSERVICE_DATA_KEYS": KeyRing.generate("k1").serialize(),
    }
    with contextlib.ExitStack() as stack:
        # Started together, so both also migrate the empty database at the same moment.
        servers = [
            stack.enter_context(ServerProcess(env, workdir, wait=False, log_dir=tmp_path))
            for _ in range(SERVERS)
        ]
        for server in servers:
            server.wait_until_serving()
        clients = [Client(server.channel()) for server in servers]

        person = new_person()
        # Same seed (same CI/DI), a new attempt each: 100 distinct single-use tokens.
        tokens = [
            clients[i % SERVERS].verify(person, attempt=i).verification_token
            for i in range(SIGNUPS)
        ]
        assert len(set(tokens)) == SIGNUPS
        requests = [
            clients[i % SERVERS].signup_request(
                person,
                email=f"{uuid.uuid4().hex[:8]}-racer{i:03d}@example.com",
                verification_token=tokens[i],
            )
            for i in range(SIGNUPS)
        ]
        start = threading.Barrier(SIGNUPS)

        def sign_up(i: int) -> Outcome:
            start.wait(timeout=BARRIER_TIMEOUT)
            try:
                response: account_pb2.SignUpResponse = clients[i % SERVERS].accounts.SignUp(
                    requests[i], timeout=RPC_TIMEOUT
                )
            except grpc.RpcError as error:
                return decode(error)
            return response

        with ThreadPoolExecutor(max_workers=SIGNUPS) as pool:
            outcomes = list(pool.map(sign_up, range(SIGNUPS)))

        winners = [o for o in outcomes if isinstance(o, account_pb2.SignUpResponse)]
        failures = [o for o in outcomes if isinstance(o, RpcFailure)]
        tally = collections.Counter(
            "OK" if isinstance(o, account_pb2.SignUpResponse) else f"{o.code.name} {o.reason}"
            for o in outcomes
        )
        assert len(winners) == 1, tally
        assert tally == {
            "OK": 1,
            "ALREADY_EXISTS IDENTITY_ALREADY_REGISTERED": SIGNUPS - 1,
        }, tally
        winner = winners[0].account
        assert winner.identity_verified
        for failure in failures:
            assert failure.domain == "idservice.v1"
            # Contract §3: the losers learn how the existing account signs in, masked.
            assert failure.metadata.get("sign_in_methods") == "password", failure
            assert failure.metadata.get("masked_email") == _masked(winner.email), failure

        assert _account_count(database_url) == 1
        for server in servers:
            logs = server.logs()
            assert "unhandled" not in logs, logs
            assert server.terminate() == 0, logs
