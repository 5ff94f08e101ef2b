"""A stop signal reaches the main thread's handler whichever thread the kernel delivers it to
(`entrypoints.signals.wait_for_signal`): run in a child process, its handlers its own."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import signal, threading, time
from idservice.entrypoints.signals import wait_for_signal

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
worker = threading.Thread(target=time.sleep, args=(60,), daemon=True)
worker.start()

def send() -> None:
    time.sleep(0.2)
    signal.pthread_kill(worker.ident, signal.SIGTERM)  # to a thread that is not the main one

threading.Thread(target=send, daemon=True).start()
wait_for_signal(stop)
print("stopped")
"""


def test_a_signal_delivered_to_another_thread_still_stops_the_wait() -> None:
    # A plain `stop.wait()` would wait here for ever: the handler runs in the main thread only
    # when it next runs Python code.
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "stopped"), result.stderr
