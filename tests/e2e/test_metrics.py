"""`idservice serve` with IDSERVICE_METRICS_LISTEN: beside the RPC counts, the Argon2 pool, the
database pool, the outbox's backlog, consent requests by state and rate-limit refusals, scraped
from /metrics after real calls (no dispatcher, so every event is still pending)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from idservice.adapters.crypto import KeyRing
from idservice.v1 import common_pb2
from idservice.v1 import guardian_consent_pb2 as pb
from tests.support.client import Client, failure_of, new_person
from tests.support.server_process import ServerProcess, free_loopback_port

pytestmark = pytest.mark.slow

FAST_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
}
# The refresh runs every few seconds: a few rounds of it at most.
REFRESH_WAIT_SECONDS = 20.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of /metrics, by name and sorted labels."""
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} missing from /metrics"
    return samples[key]


def test_metrics_beyond_calls(database_url: str, tmp_path: Path) -> None:
    metrics_port = free_loopback_port()
    env = {
        **FAST_ARGON2,
        "IDSERVICE_DATABASE_URL": database_url,
        "IDSERVICE_DATA_KEYS": KeyRing.generate("k1").serialize(),
        "IDSERVICE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        # Nothing is delivered: the events stay in the outbox.
        "IDSERVICE_DISPATCH_IN_SERVE": "false",
    }
    workdir = tmp_path / "work"
    workdir.mkdir()
    with ServerProcess(env, workdir, log_dir=tmp_path) as server, server.channel() as channel:
        client = Client(channel)
        email = "metrics-adult@example.com"
        client.sign_up(new_person(), email=email)
        client.login(email)
        guardian = new_person(birth_date="1985-03-03", name="정보호")
        child = client.sign_up(
            new_person(birth_date="2016-05-05", name="정아이"),
            guardian=common_pb2.Guardian(name=guardian.name, phone_number=guardian.phone),
        )
        # A notification was just sent: resending at once is refused.
        resend = pb.ResendConsentNotificationRequest(id=child.guardian_consent_request.id)
        limited = failure_of(lambda: client.guardian.ResendConsentNotification(resend))
        assert (limited.code, limited.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
        )

        deadline = time.monotonic() + REFRESH_WAIT_SECONDS
        samples = scrape(metrics_port)
        while time.monotonic() < deadline and not (
            samples.get(("idservice_outbox_pending", ()), 0) >= 3
            and samples.get(("idservice_consent_requests", (("state", "pending"),))) == 1
        ):
            time.sleep(0.5)
            samples = scrape(metrics_port)
        assert server.terminate() == 0, server.logs()

    # Three hashes (two signups and a login) went through the Argon2 pool; none is left in it.
    assert value(samples, "idservice_argon2_wait_seconds_count") >= 3
    assert value(samples, "idservice_argon2_wait_seconds_sum") >= 0
    assert value(samples, "idservice_argon2_queue_depth") == 0
    # Every call and background round checked connections out, and returned them (at the
    # scrape only the background threads may hold one: probe, connection log, purge, refresh).
    assert value(samples, "idservice_db_pool_wait_seconds_count") >= 5
    assert 0 <= value(samples, "idservice_db_pool_in_use") <= 4
    # Two account.created and a guardian_consent.requested, none dispatched.
    assert value(samples, "idservice_outbox_pending") >= 3
    assert 0 < value(samples, "idservice_outbox_oldest_pending_seconds") < 120
    assert value(samples, "idservice_outbox_dead_letters") == 0
    assert value(samples, "idservice_consent_requests", state="pending") == 1
    for state in ("approved", "rejected", "expired"):
        assert value(samples, "idservice_consent_requests", state=state) == 0
    assert value(samples, "idservice_rate_limited_total", method="ResendConsentNotification") == 1
    # A method never refused has its series all the same, at 0 from the start.
    assert value(samples, "idservice_rate_limited_total", method="PasswordLogin") == 0
    assert (
        value(
            samples,
            "idservice_rpcs_total",
            method="ResendConsentNotification",
            code="RESOURCE_EXHAUSTED",
            reason="RATE_LIMITED",
        )
        == 1
    )
