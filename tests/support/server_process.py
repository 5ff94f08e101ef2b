"""Runs the real `idservice serve` command in a child process on a free loopback port."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = [
    "PORT_ATTEMPTS",
    "STARTUP_TIMEOUT_SECONDS",
    "ServerProcess",
    "ServerProcessError",
    "child_environment",
    "free_loopback_port",
    "run_idservice",
]

LOOPBACK = "127.0.0.1"
ENV_PREFIX = "IDSERVICE_"
# Start-up imports, migrates and generates development keys; on a loaded CI machine with a
# cold PostgreSQL that can take a while, but never a minute.
STARTUP_TIMEOUT_SECONDS = 60.0
# SIGTERM drains for at most IDSERVICE_SHUTDOWN_GRACE (default 10 s) and then closes the app.
STOP_TIMEOUT_SECONDS = 60.0
# A free port is picked, then bound by the child: another process may take it in between,
# which the child reports as an IDSERVICE_LISTEN error; a new port is tried this many times.
PORT_ATTEMPTS = 5
# How long one health probe may take while waiting for start-up.
PROBE_TIMEOUT_SECONDS = 1.0
LOG_TAIL_CHARS = 6000

_instance_counter = itertools.count()


class ServerProcessError(RuntimeError):
    """The server process did not come up, or did not stop when asked (message has its logs)."""


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The test's environment without any IDSERVICE_* variable, plus exactly `env`.

    Dropping inherited IDSERVICE_* variables makes "no configuration" mean no configuration,
    whatever the developer's shell exports.
    """
    base = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}
    base.update(env)
    return base


def run_idservice(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run `python -m idservice <args>` to completion (migrate, reencrypt, failing starts)."""
    return subprocess.run(
        [sys.executable, "-m", "idservice", *args],
        cwd=cwd,
        env=child_environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= LOG_TAIL_CHARS else "[...]\n" + text[-LOG_TAIL_CHARS:]


class ServerProcess:
    """`python -m idservice serve` in `cwd` with `env` (plus IDSERVICE_LISTEN on a free port).

    The constructor starts the process; `wait_until_serving()` blocks until the gRPC health
    check answers SERVING (the constructor calls it unless `wait=False`, which lets a test start
    several processes at once). Use as a context manager: leaving it kills the process if it is
    still running and closes every channel handed out.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        cwd: Path,
        *,
        wait: bool = True,
        log_dir: Path | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self._fixed_listen = "IDSERVICE_LISTEN" in self.env
        self._host = (
            self.env["IDSERVICE_LISTEN"].rpartition(":")[0] if self._fixed_listen else LOOPBACK
        )
        self._log_dir = log_dir if log_dir is not None else cwd
        self._startup_timeout = startup_timeout
        self._name = f"serve-{os.getpid()}-{next(_instance_counter)}"
        self._channels: list[grpc.Channel] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._launches = 0
        self.port = 0
        self._launch()
        if wait:
            try:
                self.wait_until_serving()
            except BaseException:
                self.kill()
                raise

    # ----------------------------------------------------------------- public API

    @property
    def pid(self) -> int:
        return self._require_process().pid

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self._log_dir / f"{self._name}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self._log_dir / f"{self._name}.stderr"

    def returncode(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return self._require_process().poll()

    def channel(self) -> grpc.Channel:
        """A new insecure channel to the server, closed when the context exits."""
        channel = grpc.insecure_channel(self.address)
        self._channels.append(channel)
        return channel

    def wait_until_serving(self) -> None:
        """Block until Health/Check("") answers SERVING; ServerProcessError with logs if not."""
        deadline = time.monotonic() + self._startup_timeout
        while True:
            process = self._require_process()
            if process.poll() is not None:
                if self._lost_port_race() and self._launches < PORT_ATTEMPTS:
                    self._launch()
                    continue
                raise ServerProcessError(
                    f"idservice serve exited with code {process.returncode} before serving"
                    f"{self._log_section()}"
                )
            # The log line proves the SERVING answer came from this child, not from another
            # process that took the port after this class picked it.
            if self._health_says_serving() and self._announced_listening():
                return
            if time.monotonic() >= deadline:
                raise ServerProcessError(
                    f"idservice serve on {self.address} did not answer SERVING within "
                    f"{self._startup_timeout:.0f}s{self._log_section()}"
                )
            time.sleep(0.05)

    def send_signal(self, signum: int) -> None:
        """Deliver `signum` (e.g. SIGTERM) to the process without waiting."""
        self._require_process().send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """Wait for the exit and return its code; kill and raise ServerProcessError on a hang."""
        process = self._require_process()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerProcessError(
                f"idservice serve did not exit within {timeout:.0f}s{self._log_section()}"
            ) from None
        self._close_logs()
        return code

    def terminate(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """Send SIGTERM, wait for the exit and return its code (ServerProcessError on a hang)."""
        if self._require_process().poll() is None:
            self.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the process if it still runs, and reap it."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self._close_logs()

    def logs(self) -> str:
        """Everything the process wrote so far: stderr (its log) and then stdout."""
        parts = []
        for path in (self.stderr_path, self.stdout_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "".join(parts)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ServerProcess {self._name} {self.address} cwd={self.cwd}>"

    # ----------------------------------------------------------------- internals

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ServerProcessError("the server process was not started")
        return self._process

    def _launch(self) -> None:
        self._close_logs()
        env = dict(self.env)
        if self._fixed_listen:
            self.port = int(env["IDSERVICE_LISTEN"].rpartition(":")[2])
        else:
            self.port = free_loopback_port()
            env["IDSERVICE_LISTEN"] = self.address
        self._launches += 1
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._stdout = self.stdout_path.open("wb")
        self._stderr = self.stderr_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "idservice", "serve"],
            cwd=self.cwd,
            env=child_environment(env),
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
        )

    def _lost_port_race(self) -> bool:
        """The child could not bind the port this class picked (someone else took it)."""
        if self._fixed_listen or self.returncode() != 2:
            return False
        return "configuration error: IDSERVICE_LISTEN: cannot listen" in self.logs()

    def _announced_listening(self) -> bool:
        if self.env.get("IDSERVICE_LOG_LEVEL", "INFO").strip().upper() not in {"DEBUG", "INFO"}:
            return True  # the INFO line is not logged; trust the health answer alone
        return f"idservice listening on {self.address} " in self.logs()

    def _health_says_serving(self) -> bool:
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                response = stub.Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_SECONDS
                )
            except grpc.RpcError:
                return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def _close_logs(self) -> None:
        for stream in (self._stdout, self._stderr):
            if stream is not None:
                stream.close()
        self._stdout = self._stderr = None

    def _log_section(self) -> str:
        return (
            f"\n--- {self.stderr_path.name} / {self.stdout_path.name} ---\n"
            f"{_tail(self.logs()) or '(empty)'}"
        )
