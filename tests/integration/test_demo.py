"""scripts/demo walks the README's "Trying it" journey against a spawned `idservice serve`."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.harness import Argon2Config, spawned_service

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo"
RUN_TIMEOUT_SECONDS = 120
STEPS = (
    "IdentityService/CompleteVerification: a new sandbox person",
    "AccountService/SignUp with the verification token",
    "AuthService/PasswordLogin",
    "AccountService/GetAccount with the access token",
    "AuthService/RefreshSession",
    "AuthService/Logout with the new refresh token",
    "grpc.health.v1.Health/Check",
    "IdentityService/CompleteVerification: the same person again (attempt 2)",
    "AccountService/SignUp of the same person with another email",
)


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEMO), *args],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("IDSERVICE_")},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.fixture
def served(database_url: str) -> Iterator[str]:
    """`idservice serve` in a temporary directory; yields its loopback address."""
    with spawned_service(database_url, argon2=Argon2Config(1, 1024, 1)) as server:
        assert server.address is not None
        yield server.address


def test_demo_walks_every_step_and_passes_the_tokens_along(served: str, tmp_path: Path) -> None:
    first = run_demo("--target", served, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    for number, title in enumerate(STEPS, start=1):
        assert f"\n{number}. {title}" in out, title
    assert '"exists": true' in out  # the same person again is flagged
    assert "refused, as it should be: ALREADY_EXISTS IDENTITY_ALREADY_REGISTERED" in out
    assert "masked_email=" in out and "sign_in_methods=password" in out
    assert '"status": "SERVING"' in out
    assert f"all {len(STEPS)} steps answered as expected" in out
    # Credentials are shown shortened, and the password not at all.
    tokens = re.findall(r'"(?:access|refresh|verification)_token": "([^"]*)"', out)
    assert tokens and all(t.endswith("…") and len(t) <= 13 for t in tokens)
    assert "password=(not shown)" in out

    # A new sandbox person each run: the demo can be repeated as it is.
    second = run_demo("--target", served, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr


def test_demo_refuses_a_target_off_this_machine(tmp_path: Path) -> None:
    result = run_demo("--target", "10.1.2.3:50051", cwd=tmp_path)
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_demo_says_when_no_server_answers(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_demo("--target", f"127.0.0.1:{port}", cwd=tmp_path)
    assert result.returncode == 1
    assert "no idservice answers" in result.stderr
