"""The load scripts' own rules (scripts/harness.py, benchmark.py, statement_counts.py): load
never leaves this machine, and the reports name what they measured."""

from __future__ import annotations

import argparse
import base64
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from idservice.v1 import common_pb2
from scripts.benchmark import SERVICE_PHASES, connection_kind, judge
from scripts.harness import Argon2Config, Credentials, check_database_url, service_env
from scripts.statement_counts import Counts, verb


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/x.db",
        "postgresql+psycopg://u@127.0.0.1:5432/x",
        "postgresql+psycopg://u@[::1]:5432/x",
        "postgresql+psycopg://u@localhost/x",
        "postgresql+psycopg://u@/x",  # libpq's default socket
        "postgresql+psycopg://u@/x?host=/tmp/a%20b%2Bc&port=5432",
        "postgresql+psycopg://u@/x?host=127.0.0.1,localhost",
        "postgresql+psycopg://u@/x?host=localhost:5432&host=127.0.0.1:5433",
    ],
)
def test_local_databases_are_accepted(url: str) -> None:
    assert check_database_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql+psycopg://u@db.example.com/x", "loopback"),
        ("postgresql+psycopg://u@/x?host=db.example.com", "loopback"),
        # libpq tries every host of a list, and dials hostaddr instead of host
        ("postgresql+psycopg://u@/x?host=/tmp,192.0.2.1", "loopback"),
        ("postgresql+psycopg://u@/x?host=/tmp&hostaddr=192.0.2.1", "loopback"),
        ("postgresql+psycopg://u@127.0.0.1/x?hostaddr=192.0.2.1", "loopback"),
        # a service file decides where a service name goes
        ("postgresql+psycopg://u@/x?service=prod", "service"),
        ("mysql://u@127.0.0.1/x", "expected a sqlite"),
        # the spawned server runs in a temporary directory: a relative file would go with it
        ("sqlite:///./keep.db", "absolute path"),
        ("sqlite:///keep.db", "absolute path"),
        ("sqlite:///file:keep.db?uri=true", "absolute path"),
        ("not a url", "not a SQLAlchemy"),
    ],
)
def test_remote_or_unknown_databases_are_refused(url: str, why: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=why):
        check_database_url(url)


def test_a_spawned_server_gets_no_libpq_location_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("PGHOST", "PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE", "IDSERVICE_LISTEN"):
        monkeypatch.setenv(name, "db.example.com")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "3")
    env = service_env("postgresql+psycopg://u@/x", tmp_path, None)
    assert not {"PGHOST", "PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE"} & env.keys()
    assert env["IDSERVICE_LISTEN"] == "127.0.0.1:0"
    assert env["PGCONNECT_TIMEOUT"] == "3"


@pytest.mark.parametrize(
    ("kind", "url", "over", "expected"),
    [
        ("sqlite", None, "socket", "file"),
        ("postgres", None, "socket", "unix socket"),
        ("postgres", None, "tcp", "tcp"),
        ("postgresql", "postgresql+psycopg://u@127.0.0.1:5/x", "socket", "tcp"),
        ("postgresql", "postgresql+psycopg://u@/x?host=/tmp&port=5", "socket", "unix socket"),
        ("postgresql", "postgresql+psycopg://u@/x?host=/tmp&host=/run", "socket", "unix socket"),
        ("postgresql", "postgresql+psycopg://u@/x?host=/tmp&hostaddr=127.0.0.1", "socket", "tcp"),
    ],
)
def test_the_report_names_how_the_server_reaches_its_database(
    kind: str, url: str | None, over: str, expected: str
) -> None:
    assert connection_kind(kind, url, over) == expected


def test_a_copy_into_a_table_counts_as_a_write() -> None:
    assert verb("COPY connection_log (id, method) FROM STDIN") == "INSERT"
    assert verb("COPY (SELECT 1) TO STDOUT") == "SELECT"
    counts = Counts()
    counts.add("COPY connection_log (id) FROM STDIN")
    assert (counts.reads, counts.writes, counts.other) == (0, 1, 0)


def _report(login_ratio: float) -> dict[str, object]:
    phases = {name: {"ratio": 0.6} for name, _floor, _least in SERVICE_PHASES}
    phases["PasswordLogin"] = {"ratio": login_ratio}
    return {
        "phases": phases,
        "latency": {"alone": {"p99_ms": 2.0}, "beside_logins": {"p99_ms": 4.0}},
        "memory": {"in_flight": 256, "cpus": 2, "peak_mib": 300.0, "limit_mib": 338.0},
    }


def test_a_password_ratio_above_one_is_no_measurement() -> None:
    """A call that hashes cannot outrun bare hashing: a starved floor is not a met target."""
    params = Argon2Config(2, 19456, 1)
    (ok,) = [t for t in judge(_report(0.95), params, 16) if "PasswordLogin" in t["target"]]
    assert ok["met"] and "note" not in ok
    (starved,) = [t for t in judge(_report(2.83), params, 16) if "PasswordLogin" in t["target"]]
    assert not starved["met"] and "starved" in starved["note"]


@pytest.mark.parametrize("lifetime", [timedelta(minutes=15), timedelta(minutes=2)])
def test_load_accounts_refresh_half_way_through_the_token_lifetime_the_server_gave(
    lifetime: timedelta,
) -> None:
    """A server with short-lived tokens (IDSERVICE_ACCESS_TOKEN_TTL) gets no expired ones."""
    expires = Timestamp()
    expires.FromDatetime(datetime.now(UTC) + lifetime)
    session = common_pb2.Session(
        account_id="a", access_token="at", refresh_token="rt", access_token_expires_at=expires
    )
    before = time.monotonic()
    creds = Credentials.of("a", "e@example.com", "pw", session)
    half = lifetime.total_seconds() / 2
    assert (creds.access_token, creds.refresh_token) == ("at", "rt")
    assert before + half - 1 <= creds.refresh_due <= time.monotonic() + half


def test_an_expired_access_token_is_due_for_refresh_at_once() -> None:
    expires = Timestamp()
    expires.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
    creds = Credentials.of("a", "e", "p", common_pb2.Session(access_token_expires_at=expires))
    assert creds.refresh_due <= time.monotonic()


def test_the_lifetime_is_the_jwts_own_when_the_clocks_disagree() -> None:
    """exp - iat (both by the server's clock), not the expiry against this machine's clock."""

    def b64(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    jwt = f"{b64({'alg': 'EdDSA'})}.{b64({'iat': 1000, 'exp': 1120})}.c2ln"
    skewed = Timestamp()
    skewed.FromDatetime(datetime.now(UTC) + timedelta(hours=3))  # the server's clock runs ahead
    before = time.monotonic()
    creds = Credentials.of(
        "a", "e", "p", common_pb2.Session(access_token=jwt, access_token_expires_at=skewed)
    )
    assert before + 60 - 1 <= creds.refresh_due <= time.monotonic() + 60
