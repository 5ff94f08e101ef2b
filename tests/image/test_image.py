"""The container image built by scripts/build-image, run with podman as it is deployed.

Read-only root filesystem, uid 10001, the port published on loopback, the image's HEALTHCHECK,
a SignUp through the sandbox identity provider, and SIGTERM ending the service within the stop
grace period (not a SIGKILL at its end).

`scripts/test` starts the build in the background and names its directory in
IDSERVICE_TEST_IMAGE_BUILD (files `status`, `image-id`, `log`); this test waits for it.
Without that variable the test runs scripts/build-image itself (quick once the base image and
the build's layers exist). Skipped where podman is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from idservice.v1 import common_pb2
from tests.support.client import Client, new_person
from tests.support.server_process import free_loopback_port

pytestmark = [pytest.mark.image, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PODMAN_CONFIG = REPO / "deploy" / "podman"
PODMAN_ENV = {
    "CONTAINERS_CONF": str(PODMAN_CONFIG / "containers.conf"),
    "CONTAINERS_STORAGE_CONF": str(PODMAN_CONFIG / "storage.conf"),
    "CONTAINERS_REGISTRIES_CONF": str(PODMAN_CONFIG / "registries.conf"),
}
BUILD_DIR_VARIABLE = "IDSERVICE_TEST_IMAGE_BUILD"
# A cold build (podman install, debootstrap, PyPI) on a loaded 2-core machine.
BUILD_TIMEOUT_SECONDS = 30 * 60.0
PODMAN_TIMEOUT_SECONDS = 120.0
HEALTHY_TIMEOUT_SECONDS = 120.0
RPC_TIMEOUT_SECONDS = 60.0
# The service drains for at most IDSERVICE_SHUTDOWN_GRACE; podman stop waits STOP_GRACE_SECONDS
# before SIGKILL, which would show as exit code 137.
SERVICE_SHUTDOWN_GRACE = "10s"
STOP_GRACE_SECONDS = 30
SERVICE_UID = "10001"
PORT_ATTEMPTS = 3
LOG_TAIL_CHARS = 6000
SERVICE_ENV = {
    # Tiny Argon2 parameters: the test is about the image, not the hash.
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
    "IDSERVICE_SHUTDOWN_GRACE": SERVICE_SHUTDOWN_GRACE,
}


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args],
        env={**os.environ, **PODMAN_ENV},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PODMAN_TIMEOUT_SECONDS,
        check=False,
    )
    if check and result.returncode != 0:
        command = " ".join(args)
        stderr = result.stderr[-LOG_TAIL_CHARS:]
        raise AssertionError(f"podman {command} exited {result.returncode}:\n{stderr}")
    return result


def _inspect(container: str, template: str) -> str:
    return _podman("inspect", "--format", template, container).stdout.strip()


def _logs(container: str) -> str:
    result = _podman("logs", container, check=False)
    return (result.stdout + result.stderr)[-LOG_TAIL_CHARS:]


def _image_from_background_build(build_dir: Path) -> str:
    """Wait for the build scripts/test started; its image id, or fail with its log."""
    status_file = build_dir / "status"
    deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS
    while not status_file.exists():
        if time.monotonic() >= deadline:
            pytest.fail(f"the image build in {build_dir} did not finish in time")
        time.sleep(1.0)
    status = status_file.read_text(encoding="utf-8").strip()
    if status != "0":
        log = (build_dir / "log").read_text(encoding="utf-8", errors="replace")
        pytest.fail(f"scripts/build-image exited {status}:\n{log[-LOG_TAIL_CHARS:]}")
    return (build_dir / "image-id").read_text(encoding="utf-8").split()[-1]


def _image_from_script() -> str:
    result = subprocess.run(
        [str(REPO / "scripts" / "build-image")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"scripts/build-image exited {result.returncode}:\n{result.stderr[-LOG_TAIL_CHARS:]}"
        )
    return result.stdout.split()[-1]


@pytest.fixture(scope="module")
def image() -> str:
    """The id of the image scripts/build-image built for this run."""
    build_dir = os.environ.get(BUILD_DIR_VARIABLE)
    image_id = _image_from_background_build(Path(build_dir)) if build_dir else None
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/build-image installs it)")
    return image_id or _image_from_script()


def _start(image: str, name: str) -> int:
    """Run the image detached, read-only, on a free loopback port; the port."""
    env_args = [arg for key, value in SERVICE_ENV.items() for arg in ("--env", f"{key}={value}")]
    for _ in range(PORT_ATTEMPTS):
        port = free_loopback_port()
        result = _podman(
            "run",
            "--detach",
            "--name",
            name,
            "--read-only",
            # The only writable places: the service's var directory and /tmp, both in memory;
            # U hands /app/var to the image's user.
            "--tmpfs",
            "/app/var:rw,nosuid,nodev,mode=0700,U",
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,mode=1777",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--publish",
            f"127.0.0.1:{port}:50051",
            *env_args,
            image,
            check=False,
        )
        if result.returncode == 0:
            return port
        _podman("rm", "--force", "--volumes", name, check=False)
        if "address already in use" not in result.stderr:
            raise AssertionError(f"podman run exited {result.returncode}:\n{result.stderr}")
    raise AssertionError(f"no free port after {PORT_ATTEMPTS} attempts")


def _wait_healthy(container: str) -> None:
    """Run the image's HEALTHCHECK until it passes (hosts without systemd have no timer)."""
    deadline = time.monotonic() + HEALTHY_TIMEOUT_SECONDS
    while _podman("healthcheck", "run", container, check=False).returncode != 0:
        if _inspect(container, "{{.State.Status}}") != "running":
            raise AssertionError(f"the container stopped:\n{_logs(container)}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"not healthy in time:\n{_logs(container)}")
        time.sleep(1.0)
    assert _inspect(container, "{{.State.Health.Status}}") == "healthy"


@pytest.fixture
def container(image: str) -> Iterator[tuple[str, int]]:
    name = f"idservice-test-{uuid.uuid4().hex[:12]}"
    try:
        port = _start(image, name)
        yield name, port
    finally:
        _podman("rm", "--force", "--volumes", name, check=False)


def test_image_serves_read_only_as_non_root_and_stops_on_sigterm(
    container: tuple[str, int],
) -> None:
    name, port = container
    assert _inspect(name, "{{.HostConfig.ReadonlyRootfs}}") == "true"
    assert _inspect(name, "{{.Config.Healthcheck.Test}}").startswith("[CMD python -c")
    _wait_healthy(name)

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = Client(channel)
        person = new_person()
        token = client.verify(person).verification_token
        request = client.signup_request(person, verification_token=token)
        response = client.accounts.SignUp(request, timeout=RPC_TIMEOUT_SECONDS)
    assert response.account.id
    assert response.account.status == common_pb2.ACCOUNT_STATUS_ACTIVE
    assert response.session.access_token

    # Every process of the container (tini and the server) runs as uid 10001 on the host.
    top = _podman("top", name, "huser", "args").stdout.splitlines()[1:]
    assert any("idservice serve" in line for line in top), top
    assert {line.split()[0] for line in top} == {SERVICE_UID}, top
    # Nothing can be written outside the tmpfs mounts.
    denied = _podman("exec", name, "touch", "/app/written", check=False)
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr

    started = time.monotonic()
    _podman("stop", "--time", str(STOP_GRACE_SECONDS), name)
    elapsed = time.monotonic() - started
    logs = _logs(name)
    # serve drains and returns 0, which tini passes on; a SIGKILL at the grace's end gives 137.
    assert _inspect(name, "{{.State.ExitCode}}") == "0", logs
    assert elapsed < STOP_GRACE_SECONDS, f"stop took {elapsed:.1f}s:\n{logs}"
    assert "received SIGTERM" in logs
