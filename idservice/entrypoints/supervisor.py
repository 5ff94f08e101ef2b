"""`idservice serve` on every core: a supervisor and IDSERVICE_PROCESSES server processes.

The supervisor migrates and checks the keys once (`prepare_database`, under the start-up
lock, in a short-lived process of its own so the supervisor stays small), reserves the
listening port with an `SO_REUSEPORT` socket that never listens, and starts
each server process as a fresh interpreter (`idservice serve --server-process ...`: no grpc
state crosses a fork). Every server process builds its own App (database pool, Argon2 pool of
about cpus/N threads) and binds the same port with `grpc.so_reuseport`; the kernel spreads new
connections over them. The supervisor serves no RPC.

- A server process that dies is started again after a short backoff; one that keeps dying
  before it serves (a bad certificate, say) makes the supervisor give up with a non-zero exit.
- A server process that hangs is killed and started again: once serving, each sends a
  heartbeat every second, and none while its RPC pool is stalled (every thread busy, calls
  queued, none finishing for a minute); one silent for 15 s is killed (heartbeat.py, both
  sides). A hung process would otherwise keep its share of new connections.
- SIGTERM/SIGINT: every server process drains (`RunningServer.stop`); the supervisor exits 0
  once all have stopped, and kills any still running IDSERVICE_SHUTDOWN_GRACE plus
  `SHUTDOWN_MARGIN_SECONDS` later.
- A server process asks the kernel for SIGTERM when the supervisor dies (`PR_SET_PDEATHSIG`),
  so none outlives a killed supervisor.
- Metrics: the server processes write prometheus-client's multiprocess files into a private
  directory; the supervisor serves IDSERVICE_METRICS_LISTEN from them.
- IDSERVICE_HEALTH_LISTEN (the health-only plaintext listener) is reserved and shared like the
  API's port: every server process answers on it for itself.
- The retention jobs (the purge) run in server process 1 only, once per instance; its
  replacement takes them up again. Every server process dispatches outbox events (claims
  keep a delivery to one of them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from idservice.config import ConfigError, Settings
from idservice.entrypoints.heartbeat import SUPERVISOR_PAUSED_SECONDS, kill_if_hung, take_messages
from idservice.entrypoints.tls import load_tls

if TYPE_CHECKING:
    from idservice.entrypoints.grpc.metrics import MultiprocessMetrics

log = logging.getLogger("idservice")

# How often the supervisor looks at its server processes.
POLL_SECONDS = 0.1
# A server process that dies is started again after this, doubled for each death in a row (up to
# MAX_RESTART_DELAY_SECONDS); the count resets once a process has served for STABLE_SECONDS.
FIRST_RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 10.0
STABLE_SECONDS = 60.0
# Deaths in a row before serving after which the supervisor gives up (exits non-zero).
MAX_STARTUP_FAILURES = 5
# A server process stops within IDSERVICE_SHUTDOWN_GRACE plus the time its handlers need to
# settle and its app to close (server.py: HANDLER_SETTLE_SECONDS); past this margin it is killed.
SHUTDOWN_MARGIN_SECONDS = 10.0
# prctl(2) option: the signal a process gets when the thread that started it dies.
PR_SET_PDEATHSIG = 1


class SupervisorGaveUp(RuntimeError):
    """A server process kept dying before it served."""

    def __init__(self, exit_code: int) -> None:
        super().__init__("server processes keep failing at start-up")
        self.exit_code = exit_code


# ----------------------------------------------------------------- the supervisor


@dataclass
class Slot:
    """One of the N server processes, across its restarts."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None
    ready: bool = False
    ready_at: float = 0.0
    # When the last heartbeat (or the readiness message) arrived.
    beat_at: float = 0.0
    # Killed for want of a heartbeat (the kill is not repeated while it dies).
    hung: bool = False
    # When the process closed its pipe (it ends its drain then, and exits).
    closed_at: float | None = None
    deaths_in_a_row: int = 0
    startup_failures: int = 0
    restart_at: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close_pipe(self) -> None:
        if self.ready_fd is not None:
            os.close(self.ready_fd)
            self.ready_fd = None


# The server process that runs the retention jobs for the instance (slots count from 1).
PURGING_PROCESS = 1


def reserve_port(listen: str, variable: str = "IDSERVICE_LISTEN") -> socket.socket:
    """A bound, never listening `SO_REUSEPORT` socket on `listen` (`variable`): it holds the
    port (port 0: a free one) for the server processes, which bind it with the same option."""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(variable, f"cannot listen on {listen}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(variable, f"cannot listen on {listen}: {exc.strerror}") from None
    return sock


def _exit_description(code: int) -> str:
    """`code 2`, `signal SIGKILL` (Popen's negative return codes are signals)."""
    if code >= 0:
        return f"code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def _private_directory(var_dir: Path) -> Path:
    """A new directory only this user may read (mode 0700): under the temporary directory, or
    under IDSERVICE_VAR_DIR where there is none to write to (a read-only root filesystem)."""
    try:
        return Path(tempfile.mkdtemp(prefix="idservice-metrics-"))
    except OSError:
        var_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="metrics-", dir=var_dir))


class Supervisor:
    """Runs `settings.process_count` server processes on one port until told to stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.process_count
        self.stop = threading.Event()
        self.slots = [Slot(index) for index in range(1, self.count + 1)]
        self.address = ""
        self.health_address = ""
        self.metrics_dir: Path | None = None
        self.metrics: MultiprocessMetrics | None = None
        self._last_look = 0.0

    def run(self) -> int:
        # Files every process reads, checked once here: a TLS key that is not the certificate's
        # stops start-up naming the variable, instead of failing each process in turn.
        load_tls(self.settings)
        # In a process of its own: the migrations and the key check need the database layer,
        # which the supervisor, alive as long as the service, then never holds in memory.
        prepared = subprocess.run(
            [sys.executable, "-m", "idservice", "serve", "--prepare-database"], check=False
        )
        if prepared.returncode != 0:
            return prepared.returncode
        with contextlib.ExitStack() as reservations:
            self.address = self._reserve(reservations, self.settings.listen, "IDSERVICE_LISTEN")
            if self.settings.health_listen:
                self.health_address = self._reserve(
                    reservations, self.settings.health_listen, "IDSERVICE_HEALTH_LISTEN"
                )
            try:
                self._serve_metrics()
                return self._supervise()
            finally:
                if self.metrics is not None:
                    self.metrics.close()
                if self.metrics_dir is not None:
                    shutil.rmtree(self.metrics_dir, ignore_errors=True)

    @staticmethod
    def _reserve(reservations: contextlib.ExitStack, listen: str, variable: str) -> str:
        """Hold `listen`'s port until the supervisor ends; its host:port (port 0 resolved)."""
        reservation = reservations.enter_context(reserve_port(listen, variable))
        return f"{listen.rpartition(':')[0]}:{reservation.getsockname()[1]}"

    def _serve_metrics(self) -> None:
        if not self.settings.metrics_listen:
            return
        from idservice.entrypoints.grpc.metrics import MultiprocessMetrics

        self.metrics_dir = _private_directory(self.settings.var_dir)
        try:
            self.metrics = MultiprocessMetrics(self.settings.metrics_listen, self.metrics_dir)
        except OSError as exc:
            raise ConfigError(
                "IDSERVICE_METRICS_LISTEN", f"cannot listen: {exc.strerror}"
            ) from None

    def _supervise(self) -> int:
        self._handle_signals()
        try:
            for slot in self.slots:
                self._start(slot)
            announced = False
            while not self.stop.wait(POLL_SECONDS):
                self._look_after_children()
                if not announced and all(slot.ready for slot in self.slots):
                    announced = True
                    log.info(
                        "idservice listening on %s (env=%s, identity provider=%s, database=%s)",
                        self.address,
                        self.settings.env,
                        self.settings.identity_provider,
                        self.settings.database_kind,
                    )
        except SupervisorGaveUp as exc:
            self._drain()
            return exc.exit_code
        except BaseException:
            self._kill_all()
            raise
        self._drain()
        log.info("stopped")
        return 0

    def _handle_signals(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: draining", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _child_environment(self) -> dict[str, str]:
        from idservice.entrypoints.grpc.metrics import MULTIPROC_DIR_VARIABLE

        env = dict(os.environ)
        env.pop(MULTIPROC_DIR_VARIABLE, None)
        if self.metrics_dir is not None:
            env[MULTIPROC_DIR_VARIABLE] = str(self.metrics_dir)
        return env

    def _start(self, slot: Slot) -> None:
        """Start the slot's server process (from the main thread: the death signal is tied to
        the thread that started it)."""
        read_fd, write_fd = os.pipe()
        try:
            slot.process = subprocess.Popen(  # noqa: S603 - this interpreter, our own arguments
                [
                    sys.executable,
                    "-m",
                    "idservice",
                    "serve",
                    "--server-process",
                    str(slot.index),
                    "--server-address",
                    self.address,
                    "--ready-fd",
                    str(write_fd),
                    "--supervisor-pid",
                    str(os.getpid()),
                    *(["--health-address", self.health_address] if self.health_address else []),
                ],
                env=self._child_environment(),
                stdin=subprocess.DEVNULL,
                pass_fds=(write_fd,),
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        slot.close_pipe()
        slot.ready_fd = read_fd
        slot.ready = False
        slot.hung = False
        slot.closed_at = None
        slot.restart_at = None
        log.info("started server process %d (pid %d)", slot.index, slot.pid)

    def _look_after_children(self) -> None:
        now = time.monotonic()
        if self._last_look and now - self._last_look >= SUPERVISOR_PAUSED_SECONDS:
            for slot in self.slots:
                slot.beat_at = now
        self._last_look = now
        for slot in self.slots:
            if slot.restart_at is not None:
                if now >= slot.restart_at:
                    self._start(slot)
                continue
            take_messages(slot, now)
            if slot.ready and slot.deaths_in_a_row and now - slot.ready_at >= STABLE_SECONDS:
                slot.deaths_in_a_row = 0
            assert slot.process is not None
            code = slot.process.poll()
            if code is not None:
                self._died(slot, code, now)
            elif slot.ready and not slot.hung:
                kill_if_hung(slot, now, exit_margin=SHUTDOWN_MARGIN_SECONDS)

    def _died(self, slot: Slot, code: int, now: float) -> None:
        slot.close_pipe()
        self._forget(slot.pid)
        how = _exit_description(code)
        if not slot.ready:
            slot.startup_failures += 1
            if slot.startup_failures >= MAX_STARTUP_FAILURES:
                log.error(
                    "server process %d (pid %d) exited with %s before serving, %d times in a "
                    "row: giving up",
                    slot.index,
                    slot.pid,
                    how,
                    slot.startup_failures,
                )
                # A configuration error keeps its exit code (2); anything else is 1.
                raise SupervisorGaveUp(2 if code == 2 else 1)
        delay = min(
            FIRST_RESTART_DELAY_SECONDS * 2**slot.deaths_in_a_row, MAX_RESTART_DELAY_SECONDS
        )
        slot.deaths_in_a_row += 1
        slot.ready = False
        slot.restart_at = now + delay
        log.warning(
            "server process %d (pid %d) exited with %s; starting it again in %.1fs",
            slot.index,
            slot.pid,
            how,
            delay,
        )

    def _forget(self, pid: int) -> None:
        """A dead process's live gauges leave the metrics (its counts stay)."""
        if self.metrics is not None:
            self.metrics.process_exited(pid)

    def _drain(self) -> None:
        """SIGTERM every server process; kill those still running after the grace period."""
        running = [slot for slot in self.slots if slot.alive()]
        for slot in running:
            assert slot.process is not None
            with contextlib.suppress(ProcessLookupError):
                slot.process.send_signal(signal.SIGTERM)
        deadline = (
            time.monotonic()
            + self.settings.shutdown_grace.total_seconds()
            + SHUTDOWN_MARGIN_SECONDS
        )
        for slot in running:
            assert slot.process is not None
            try:
                slot.process.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                log.warning(
                    "server process %d (pid %d) still running after the grace period: killed",
                    slot.index,
                    slot.pid,
                )
                slot.process.kill()
                slot.process.wait()
            self._forget(slot.pid)
        for slot in self.slots:
            slot.close_pipe()

    def _kill_all(self) -> None:
        for slot in self.slots:
            if slot.alive():
                assert slot.process is not None
                slot.process.kill()
                slot.process.wait()
            slot.close_pipe()


def supervise(settings: Settings) -> int:
    """`idservice serve` with IDSERVICE_PROCESSES of 2 or more; returns the exit code."""
    return Supervisor(settings).run()
