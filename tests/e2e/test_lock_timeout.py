"""With the role's `lock_timeout` docs/deploy.md recommends, a call that waits on a row lock held
by someone else gives up and answers UNAVAILABLE DATABASE_UNAVAILABLE (retryable), writes
nothing, and the same call succeeds once the lock is gone (PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.conftest import make_settings
from tests.support.client import STRONG_PASSWORD, failure_of
from tests.support.postgres import PostgresCluster
from tests.support.serving import serving


def test_a_call_behind_a_held_row_lock_answers_database_unavailable(
    tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> None:
    if postgres_cluster is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")
    url = postgres_cluster.create_database("lock_timeout")
    name = make_url(url).database
    assert name is not None
    with psycopg.connect(postgres_cluster.conninfo(), autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET lock_timeout = '1s'").format(sql.Identifier(name))
        )
    with serving(make_settings(tmp_path, url)) as (_app, client):
        email = client.sign_up().account.email
        account_id = client.login(email).session.account_id
        with psycopg.connect(postgres_cluster.conninfo(name)) as holder:
            # Someone else's transaction holds the account's row (a DBA's session, say).
            holder.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (account_id,))
            failure = failure_of(lambda: client.login(email))
            assert (failure.code, failure.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
            )
            holder.rollback()
        # Nothing was half-written: the failed attempt counted nothing, and logging in works.
        with psycopg.connect(postgres_cluster.conninfo(name)) as reader:
            row = reader.execute(
                "SELECT failed_logins, locked_until FROM accounts WHERE id = %s", (account_id,)
            ).fetchone()
        assert row == (0, None)
        assert client.login(email, STRONG_PASSWORD).session.account_id == account_id
